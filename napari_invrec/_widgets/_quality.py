"""Ground-truth-free choices in the docks: Auto and Best for this data (Reconstruct), Rank
(Compare runs).

Thin: the searches are :func:`~napari_invrec.engine.autotune.autotune_steps` and
:func:`~napari_invrec.engine.ranking.best_steps`, the ranking of finished runs
:func:`~napari_invrec.engine.quality_runs.rank_runs_steps`; this module starts them in the
docks' workers, shows their progress and writes what they chose into the forms, the
provenance (``"autotune"``, ``"ranking"``, ``"quality"``) and the table.

* :class:`QualityRow` sits under the Reconstruct dock's method form. It runs one job at a time
  on the dock's :class:`~._runs.RunController` (Pause and Cancel act on it as on a run); when
  the search ends it fills the form with the chosen values (and the method, for Best) and
  starts the ordinary run with them, whose result layer records the search.
* :class:`RankPanel` sits under the Compare dock's table: it estimates the selected runs (all
  runs when none is selected) in a worker of its own, stores each estimate in its run's
  provenance (a second Rank reuses it), orders the table best first and says how sure the
  order is.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
from magicgui.widgets import Container, Label, PushButton, SpinBox
from qtpy.QtCore import QEvent, QObject

from ..core.errors import InputError
from ..engine.autotune import autotune_steps, tunable_fields
from ..engine.device import gui_thread_budget
from ..engine.quality_runs import (
    FOLDS,
    PROBES,
    quality_record,
    rank_runs_steps,
    ranking_line,
    short_label,
    stored_estimate,
    threaded_steps,
    winner_line,
)
from ..engine.ranking import best_steps
from ._meta import checked_meta, layer_meta
from ._notify import guarded, notify_info, report_error
from ._runs import RunController, dock_alive

__all__ = ["QualityRow", "RankPanel", "DEFAULT_TRIALS"]

#: default budget of Auto and of the tuning stage of Best for this data
DEFAULT_TRIALS = 8
_NO_GT = ("scored by the error estimated from the measurement alone (held-out samples or "
          "SURE): no ground truth or reference layer is used")


class _FitHeight(QObject):
    """Keeps a word-wrapped label as tall as its text needs at its width: between stretching
    widgets (the table, the plots) a dock's layout would otherwise squeeze it and cut lines."""

    def eventFilter(self, obj: Any, event: Any) -> bool:  # noqa: N802 - Qt's name
        if event.type() in (QEvent.Resize, QEvent.LayoutRequest):
            fit_label(obj)
        return False


def fit_label(label: Any) -> None:
    """Set the Qt ``label``'s minimum height to what its wrapped text needs now."""
    need = label.heightForWidth(label.width()) if label.text() and label.width() > 0 else 0
    if need != label.minimumHeight():
        label.setMinimumHeight(max(need, 0))


def _values_text(values: dict) -> str:
    return ", ".join(f"{k}={v:.2g}" if isinstance(v, float) else f"{k}={v}"
                     for k, v in values.items())


class QualityRow(Container):
    """Auto, its trial budget and Best for this data, for the Reconstruct dock ``dock`` (whose
    ``controller``, ``method``, ``method_form``, ``seed``, ``units``, ``status``,
    ``progress``, :meth:`run` and :meth:`_set_running` it uses).

    Attributes
    ----------
    outcome
        The last finished search: an :class:`~napari_invrec.engine.autotune.AutotuneResult`
        or :class:`~napari_invrec.engine.ranking.Ranking` (``None`` before any).
    """

    def __init__(self, dock: Any) -> None:
        self.dock = dock
        self.auto_button = PushButton(text="Auto", name="auto_button")
        self.trials = SpinBox(value=DEFAULT_TRIALS, min=3, max=64, name="auto_trials",
                              tooltip="trials: candidate settings Auto scores (each costs a "
                                      "few runs of the method)")
        self.best_button = PushButton(
            text="Best for this data", name="best_button",
            tooltip="tune the operator's default method, rank it against the learned methods "
                    f"(every installed network) and the adjoint, then run the winner; {_NO_GT}")
        super().__init__(widgets=[self.auto_button, Label(value="trials"), self.trials,
                                  self.best_button], layout="horizontal", labels=False,
                         name="quality_row")
        self.margins = (0, 0, 0, 0)
        self.outcome: Any = None
        self._job: dict = {}
        self.auto_button.changed.connect(self.auto)
        self.best_button.changed.connect(self.best)
        dock.method.changed.connect(self.sync)
        self.sync()

    @property
    def status(self) -> Any:
        """The dock's status line (where :func:`~._notify.guarded` reports)."""
        return self.dock.status

    def sync(self, *_: Any) -> None:
        """Enable Auto for a method with something to tune; say what it tunes."""
        method = str(self.dock.method.value or "")
        fields = tunable_fields(method)
        self.auto_button.enabled = bool(fields) and not self.dock.controller.running
        self.auto_button.tooltip = (
            f"tune {', '.join(fields)} of {method} on this measurement, then run with the "
            f"chosen values; {_NO_GT}" if fields else
            f"{method or 'this method'} has no hyperparameter to tune; try Best for this data")

    def set_running(self, running: bool) -> None:
        """Disable the buttons while any job of the dock runs."""
        self.best_button.enabled = not running
        self.trials.enabled = not running
        if running:
            self.auto_button.enabled = False
        else:
            self.sync()

    # ------------------------------------------------------------------ jobs
    def _inputs(self) -> tuple[np.ndarray, Any, dict]:
        """``(y, op, meta)``: a copy of the measurement (the plane in view of a stack) and its
        operator, as Run would use them."""
        from ._stack_runs import PLANE

        d = self.dock
        if d.controller.running:
            raise InputError("a job is already running; wait for it or Cancel it first")
        layer = d.measurement.value
        if layer is None:
            raise InputError("no measurement layer: simulate one or open an image")
        meta = checked_meta(layer)
        if d._is_stack() and d.stack_mode.value != PLANE:
            raise InputError(f"Auto and Best choose settings on one plane: set stack mode to "
                             f"{PLANE!r}")
        if d._form_is_stale():
            d._on_method()
        y, op = d._current_plane()
        return np.array(y, copy=True), op, meta

    def _start(self, kind: str, fn: Any, *args: Any, desc: str, **kwargs: Any) -> Any:
        d = self.dock
        self._job = {"kind": kind, "outcome": None, "last": None, "seen": 0, **kwargs.pop(
            "job", {})}
        d._set_running(True)
        return d.controller.start(
            threaded_steps, fn, *args, threads=gui_thread_budget(), seed=int(d.seed.value),
            normalise=d.units.mode, folds=FOLDS, probes=PROBES, desc=desc,
            total=int(self.trials.value) if kind == "auto" else 0,
            on_yield=self._on_trial, on_return=self._on_return, on_error=self._on_error,
            on_cancel=self._on_cancel, on_finish=self._on_finish, on_pause=self._on_pause,
            cancellable=True, **kwargs)

    @guarded
    def auto(self, *_: Any) -> Any:
        """Tune the selected method's main hyperparameters in the background, then run it with
        the chosen values; returns the worker (``None`` if refused)."""
        method = str(self.dock.method.value or "")
        fields = tunable_fields(method)
        if not fields:
            raise InputError(f"{method or 'this method'} has no hyperparameter to tune; try "
                             "Best for this data")
        y, op, meta = self._inputs()
        params = self.dock.method_form.params()
        budget = int(self.trials.value)
        self.status.value = f"auto: tuning {', '.join(fields)} of {method} ({budget} trials)"
        return self._start("auto", autotune_steps, y, op, method, params, budget=budget,
                           noise=meta.get("noise"), desc=f"auto {method}",
                           job={"method": method})

    @guarded
    def best(self, *_: Any) -> Any:
        """Find the best method and settings for this measurement in the background, then run
        the winner; returns the worker (``None`` if refused)."""
        from ..core.methods.registry import default_method

        y, op, meta = self._inputs()
        first = default_method(op.name)
        tuning = bool(first and tunable_fields(first))
        self.status.value = "best: " + (f"tuning {first}, then " if tuning else "") + \
            "ranking the candidates"
        return self._start("best", best_steps, y, op, budget=int(self.trials.value),
                           noise=meta.get("noise"), desc="best for this data",
                           job={"stage": "tuning " if tuning else ""})

    # ------------------------------------------------------------------ worker slots
    def _on_trial(self, t: Any) -> None:
        job = self._job
        if job.get("stage") and t.index == 1 and job["seen"] > 0:
            job["stage"] = ""  # best: the tuning stage is over, the ranking starts
        job["seen"] += 1
        job["last"] = t
        d = self.dock
        d.progress.max = max(int(t.budget), 1)
        d.progress.value = min(int(t.index), d.progress.max)
        if job["kind"] == "auto":
            what = f"auto: trial {t.index}/{t.budget} {_values_text(t.values)}"
        else:
            what = f"best: {job['stage']}{t.index}/{t.budget} {t.label()}"
        d.status.value = f"{what} est. {short_label(t.estimate)}"

    def _on_return(self, outcome: Any) -> None:
        self._job["outcome"] = outcome

    def _on_error(self, exc: BaseException) -> None:
        report_error(exc, self.status, prefix=f"{self._job.get('kind', 'auto')} failed: ")

    def _on_cancel(self) -> None:
        job = self._job
        notify_info(f"{job.get('kind', 'auto')} cancelled after {job.get('seen', 0)} "
                    "trial(s); no run was started and nothing was added", self.status)

    def _on_pause(self, paused: bool) -> None:
        self.dock.pause_button.text = "Resume" if paused else "Pause"
        if paused:
            self.status.value = f"{self._job.get('kind')} paused after trial " \
                                f"{self._job.get('seen', 0)}"

    def _on_finish(self) -> None:
        self.dock._set_running(False)
        outcome, kind = self._job.get("outcome"), self._job.get("kind")
        if outcome is None:
            return
        self.outcome = outcome
        if kind == "auto":
            self._run_tuned(outcome)
        else:
            self._run_best(outcome)

    @guarded
    def _run_tuned(self, tuned: Any) -> Any:
        d = self.dock
        if str(d.method.value) != tuned.method:
            raise InputError(f"the method changed to {d.method.value!r} during Auto; the "
                             f"values found for {tuned.method} were not applied")
        d.method_form.set_values(dict(tuned.values))
        return d.run(provenance={"autotune": tuned.as_dict(),
                                 "quality": quality_record(tuned.estimate)},
                     note=f"auto chose {_values_text(tuned.values)} "
                          f"(est. {short_label(tuned.estimate)})")

    @guarded
    def _run_best(self, ranking: Any) -> Any:
        d = self.dock
        best = ranking.best
        d.method.value = best.method  # rebuilds the form for the winner
        form = d.method_form
        form.set_values({n: getattr(best.params, n) for n in form.field_names
                         if hasattr(best.params, n)})
        return d.run(provenance={"ranking": ranking.as_dict(),
                                 "quality": quality_record(best.estimate)},
                     note=winner_line(ranking))


class RankPanel(Container):
    """Rank and Cancel buttons and the ranking line, for the Compare dock ``dock`` (whose
    ``runs``, :meth:`selected_runs`, :meth:`refresh` and viewer it uses).

    Attributes
    ----------
    controller
        The :class:`~._runs.RunController` of the ranking.
    order
        Run names in the last ranking's order, best first.
    ranking
        The last :class:`~napari_invrec.engine.quality_runs.RunRanking` (``None`` before any).
    """

    def __init__(self, dock: Any) -> None:
        self.dock = dock
        self.rank_button = PushButton(
            text="Rank (no ground truth)", name="rank_button",
            tooltip="estimate the error of the selected runs (all runs when none is "
                    f"selected) of one measurement and order them, best first; {_NO_GT}")
        self.cancel_button = PushButton(text="Cancel", name="rank_cancel", enabled=False)
        self.line = Label(value="", name="rank_line")
        self.line.native.setWordWrap(True)  # a long order must not widen the dock
        self._fit = _FitHeight(self.line.native)
        self.line.native.installEventFilter(self._fit)
        self.line.changed.connect(lambda *_: fit_label(self.line.native))
        buttons = Container(widgets=[self.rank_button, self.cancel_button],
                            layout="horizontal", labels=False, name="rank_buttons")
        buttons.margins = (0, 0, 0, 0)
        super().__init__(widgets=[buttons, self.line], labels=False, name="rank_panel")
        self.margins = (0, 0, 0, 0)
        self.controller = RunController(alive=dock_alive(dock, dock._viewer))
        self.order: list[str] = []
        self.ranking: Any = None
        self._ranked = False  # the job that is ending returned a ranking
        self.rank_button.changed.connect(self.rank)
        self.cancel_button.changed.connect(self.cancel)

    @property
    def status(self) -> Any:
        """The ranking line (where :func:`~._notify.guarded` reports)."""
        return self.line

    def ordered(self, runs: list) -> list:
        """``runs`` in the last ranking's order (unranked runs after, in layer order)."""
        pos = {n: i for i, n in enumerate(self.order)}
        return sorted(runs, key=lambda r: pos.get(r.name, len(pos)))

    def update_line(self, runs: list) -> None:
        """Re-state the order of the ranked runs still present (from their stored
        estimates)."""
        if self.controller.running or not self.order:
            return
        entries = [(r.name, stored_estimate(r.provenance)) for r in runs if r.name in self.order]
        self.line.value = ranking_line([(n, e) for n, e in entries if e is not None])

    def _snapshot(self, run: Any) -> Any:
        """The run with copies of its result and of the measurement it ran on (the one its
        layer saved, else the layer found by fingerprint): the worker reads no layer."""
        layers = self.dock._viewer.layers
        meta = layer_meta(layers[run.name]) if run.name in layers else None
        y = (meta or {}).get("measurement")
        y = run.measurement if y is None else y
        return dataclasses.replace(run, result=np.array(run.result, copy=True),
                                   measurement=None if y is None else np.array(y, copy=True))

    @guarded
    def rank(self, *_: Any) -> Any:
        """Start ranking the selected runs; returns the worker (``None`` if refused)."""
        if self.controller.running:
            raise InputError("a ranking is running; wait for it or Cancel it first")
        names = set(self.dock.selected_runs())
        runs = [self._snapshot(r) for r in self.dock.runs if r.name in names]
        if not runs:
            raise InputError("no runs to rank: make runs in Reconstruct first")
        self.rank_button.enabled, self.cancel_button.enabled = False, True
        self._ranked = False
        self.line.value = f"rank: estimating {len(runs)} run(s)..."
        return self.controller.start(  # total 0: the activity dock shows it as busy
            rank_runs_steps, runs, threads=gui_thread_budget(), total=0, desc="rank runs",
            on_yield=self._on_tick, on_return=self._on_ranked, on_error=self._on_error,
            on_cancel=self._on_cancel, on_finish=self._on_finish, cancellable=True)

    def cancel(self, *_: Any) -> None:
        """Stop the ranking before its next step (estimates already made are kept)."""
        if self.controller.running:
            self.line.value = "cancelling..."
            self.controller.cancel()

    def _store(self, name: str, record: dict) -> None:
        """Write an estimate into the run's provenance (shared by all the run's layers)."""
        layers = self.dock._viewer.layers
        if name not in layers:
            return
        prov = (layers[name].metadata.get("invrec") or {}).get("provenance")
        if isinstance(prov, dict):
            prov["quality"] = record

    def _on_tick(self, tick: Any) -> None:
        if tick.estimate is None:
            self.line.value = (f"rank: run {tick.run}/{tick.runs} {tick.name}: step "
                               f"{tick.done}/{tick.total}")
            return
        if tick.record is not None:
            self._store(tick.name, tick.record)
            self.dock.refresh()  # the estimate column fills run by run
        self.line.value = f"rank: run {tick.run}/{tick.runs} {tick.name}: " \
                          f"{short_label(tick.estimate)}" + (" (stored)" if tick.reused else "")

    def _on_ranked(self, ranking: Any) -> None:
        self.ranking = ranking
        self.order = list(ranking.names)
        self._ranked = True

    def _on_error(self, exc: BaseException) -> None:
        report_error(exc, self.line, prefix="rank failed: ")

    def _on_cancel(self) -> None:
        notify_info("rank cancelled; the estimates finished so far are kept", self.line)

    def _on_finish(self) -> None:
        self.rank_button.enabled, self.cancel_button.enabled = True, False
        if self._ranked:
            self.dock.refresh()  # rows best first; the line states the order
