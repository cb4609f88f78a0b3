"""Did a re-run reproduce a saved layer? The comparison behind ``api.rerun_file``.

A saved layer is one output of a run (``metadata["invrec"]["kind"]``): the result, the
iterate history or another stream, the posterior std, the samples, an extra map. The re-run's
:class:`~napari_invrec.engine.runner.Result` holds the same output; :func:`compare_saved`
picks it, compares it with the saved values and reports the largest difference, absolute and
relative to the saved values' range.

Tolerance (:data:`RERUN_RTOL`): a re-run on the same device executes the same float32 kernels
on the same bytes, so it repeats the result to within float32 rounding. Measured on CPU: max
|difference| exactly 0 for tv-fista (blur, MRI with a custom mask), tikhonov (custom kernel),
tv-pdhg, wavelet-fista and langevin-tv (result, iterates, std, samples), at 64 and 256 px, in
the same process and in a new one with 1 or 2 torch threads, and for runs made in the
Reconstruct dock. The margin covers what can legitimately move the last bits: another thread
count or library build reordering floating-point reductions (FFTs, sums), amplified over the
iterations; GPU kernels with atomics are not bit-reproducible. 1e-4 of the saved result's range
is about 800 float32 ulps at the top of that range, and 100x below the change from any
parameter, measurement or operator edit (tests/test_saved_results.py: 3 iterations instead of
15 or 25 moves the result by more than 1e-2 of its range). A re-run on another device
(``device=``) is compared with the same figure; a failure there may only mean that the devices
round differently.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..core.errors import InputError

__all__ = ["RERUN_RTOL", "RerunReport", "compare_saved"]

#: a re-run reproduces a saved layer when its largest difference is at most this fraction of
#: the saved values' range (max - min of the magnitude)
RERUN_RTOL = 1e-4


@dataclass
class RerunReport:
    """What a re-run of a saved layer found.

    Attributes
    ----------
    path
        The saved file.
    result
        The re-run's :class:`~napari_invrec.engine.runner.Result`.
    saved, rerun
        The saved values and the re-run's values compared with them (complex when the run
        was complex; history stacks restricted to the steps both have).
    max_abs_diff
        ``max |rerun - saved|`` (``inf`` when the shapes differ).
    relative_diff
        ``max_abs_diff`` divided by the range of ``|saved|``.
    tolerance
        The relative difference up to which the run counts as reproduced.
    """

    path: Path
    result: Any
    saved: np.ndarray
    rerun: np.ndarray
    max_abs_diff: float
    relative_diff: float
    tolerance: float = RERUN_RTOL

    @property
    def reproduced(self) -> bool:
        """The re-run repeats the saved values within :attr:`tolerance`."""
        return bool(self.relative_diff <= self.tolerance)

    def summary(self) -> str:
        """One line: the figures and the verdict."""
        verdict = "reproduced" if self.reproduced else "NOT reproduced"
        return (f"{self.path}: max |difference| {self.max_abs_diff:.3g} "
                f"({self.relative_diff:.3g} of the saved range; tolerance "
                f"{self.tolerance:.0e}): {verdict}")


def _history(saved: np.ndarray, invrec: dict, new: Any, steps: list[int]
             ) -> tuple[np.ndarray, Any]:
    if new is None:
        return saved, None
    saved_steps = [int(s) for s in invrec.get("steps") or []]
    common = [s for s in saved_steps if s in steps]
    if not common or len(saved_steps) != saved.shape[0]:
        return saved, None
    return (saved[[saved_steps.index(s) for s in common]],
            np.asarray(new)[[steps.index(s) for s in common]])


def counterpart(kind: str | None, invrec: dict, data: Any, result: Any
                ) -> tuple[np.ndarray, np.ndarray | None]:
    """The saved values of a layer and the matching output of ``result`` (``None`` when the
    re-run did not produce it).

    Raises
    ------
    InputError
        The layer's kind is not an output of a run (a measurement, a live preview).
    """
    cplx = invrec.get("complex_data")
    saved = np.asarray(cplx if cplx is not None else data)
    stream = invrec.get("stream")
    if kind == "result":
        return saved, result.x
    if kind == "history":
        new = result.streams.get(stream) if stream else result.iterates
        return _history(saved, invrec, new, list(result.steps))
    if kind == "std":
        return saved, result.std
    if kind == "samples":
        return saved, result.samples
    if kind == "extra":
        return saved, (result.extras or {}).get(stream)
    raise InputError(f"the saved layer is a {kind!r} layer, not an output of a run; re-run "
                     "a saved result, history, std or samples layer")


def compare_saved(path: Path, kind: str | None, invrec: dict, data: Any, result: Any,
                  tolerance: float = RERUN_RTOL) -> RerunReport:
    """Compare a saved layer with the same output of a re-run (see :func:`counterpart`)."""
    saved, new = counterpart(kind, invrec, data, result)
    if new is None:
        raise InputError(f"{path}: the re-run produced no {kind} output to compare with (the "
                         "history or stream was not recorded the same way)")
    new = np.asarray(new)
    if np.iscomplexobj(new) and not np.iscomplexobj(saved):
        new = np.abs(new)  # the saved layer holds only the magnitude
    mag = np.abs(saved).astype(np.float64)
    span = float(mag.max() - mag.min()) if mag.size else 0.0
    span = span if span > 0 else float(mag.max(initial=0.0)) or 1.0
    if new.shape != saved.shape:
        diff = float("inf")
    else:
        diff = float(np.max(np.abs(new.astype(np.complex128 if np.iscomplexobj(new)
                                              else np.float64) - saved), initial=0.0))
    return RerunReport(path=Path(path), result=result, saved=saved, rerun=new,
                       max_abs_diff=diff, relative_diff=diff / span, tolerance=tolerance)
