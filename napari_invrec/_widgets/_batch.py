"""Batch folder: send a folder of measurements from the Reconstruct dock to the batch engine.

The dock's "Batch folder..." button (:func:`choose_and_start`) asks for a folder of
measurements and a folder for the results, then :func:`start_batch` plans the batch
(:func:`napari_invrec.engine.batch.plan_batch`: everything is checked before any work) with the
dock's operator (as Run would build it for the first file's shape), method, parameters, seed,
normalisation and device, and runs :func:`~napari_invrec.engine.batch.run_batch` in the dock's
run controller (a napari generator worker, listed in the activity dock). The progress bar
counts inputs, the status line shows the last one's outcome, Cancel stops the batch (inputs
not started are skipped, the running one stops at its next step), and the summary is a
notification. Results go to files in the output folder (one per input, with its run record):
no layer is added and no layer is touched.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..core.errors import InputError
from ..engine.device import gui_thread_budget
from ._notify import notify_info, report_error

__all__ = ["choose_and_start", "start_batch"]


def choose_and_start(dock: Any) -> Any:
    """Ask for the input and output folders, then :func:`start_batch` (``None`` if the user
    closes a dialog)."""
    from qtpy.QtWidgets import QFileDialog

    folder = QFileDialog.getExistingDirectory(dock.native, "Folder of measurements to "
                                              "reconstruct")
    if not folder:
        return None
    out = QFileDialog.getExistingDirectory(dock.native, "Folder for the results (one file "
                                           "per measurement)")
    if not out:
        return None
    return start_batch(dock, folder, out)


def start_batch(dock: Any, inputs: Any, out: Any) -> Any:
    """Check and start a batch of ``inputs`` (a folder, glob or list of files) into ``out``.

    Returns the started worker, or ``None`` when the batch is refused (the reason is shown).
    """
    try:
        return _start(dock, inputs, out)
    except Exception as exc:  # noqa: BLE001 - a button action: every refusal is one notice
        report_error(exc, dock.status, prefix="batch: ")
        return None


def _start(dock: Any, inputs: Any, out: Any) -> Any:
    from ..engine.batch import first_measurement, plan_batch, run_batch
    from ..formats.batch_files import BatchFiles

    if dock.controller.running:
        raise InputError("a run is already in progress; wait for it or Cancel it first")
    if not dock.method.value:
        raise InputError(f"no method supports the operator {dock.operator_name()!r}")
    io = BatchFiles("tif")
    y0 = first_measurement(inputs, io)
    op = dock._operator(np.shape(y0), y0)
    method = str(dock.method.value)
    plan = plan_batch(inputs, op, method, dock.method_form.params(), out=out, io=io,
                      seed=int(dock.seed.value), normalise=dock.units.mode,
                      device=str(dock.device.value))
    total = len(plan.tasks)
    done = [0]

    def on_item(ev: Any) -> None:
        done[0] = ev.done
        dock.progress.max = ev.total
        dock.progress.value = ev.done
        dock.status.value = f"batch {ev.done}/{ev.total}: {ev.outcome.line()}"

    def on_summary(summary: Any) -> None:
        text = summary.headline()
        if summary.failed:
            text += " · failed: " + "; ".join(o.line() for o in summary.failed[:3])
            text += " ..." if len(summary.failed) > 3 else ""
        notify_info(text, dock.status)

    def on_cancel() -> None:
        notify_info(f"batch cancelled after {done[0]} of {total} inputs; the outputs written "
                    f"so far stay in {plan.out} (run it again to resume)", dock.status)

    dock._set_running(True)
    dock.pause_button.enabled = False  # items run on dask threads: pausing could not hold them
    dock.progress.max = total
    return dock.controller.start(
        run_batch, plan, threads=gui_thread_budget(), total=total,
        desc=f"batch: {method} on {total} inputs", on_yield=on_item, on_return=on_summary,
        on_error=lambda exc: report_error(exc, dock.status, prefix="batch failed: "),
        on_cancel=on_cancel, on_finish=dock._on_finish, cancellable=True)
