"""Run a list of GUI steps one per event-loop turn (results appear without freezing the GUI).

Adding a layer to napari costs tens of milliseconds (its canvas visual, its controls, the
layer list), and removing one runs a full ``gc.collect()``; a run that ends by adding its result,
iterate history, std and samples layers in one slot froze the GUI for half a second. Each step
given to :class:`Turns` runs from its own ``QTimer`` callback, so the event loop repaints and
handles input between two layers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["Turns"]


def _noop(*_: Any) -> None:
    return None


class Turns:
    """Run ``steps`` one per event-loop turn, then ``on_done()``.

    Parameters
    ----------
    steps
        Callables without arguments, run in order.
    alive
        Checked before each step; once false the remaining steps and ``on_done`` are dropped
        (the dock or the viewer was closed).
    on_error
        Called with the exception if a step raises; the remaining steps are dropped and
        ``on_done`` still runs.
    on_done
        Called after the last step (or after an error).
    delay_ms
        Pause before each step: a real timer (not a zero timer, which Qt may run in the same
        pass as the previous step), so input, repaints and timers are served between steps.

    Attributes
    ----------
    turn
        Number of steps run so far (the step running now has index ``turn - 1``).
    """

    def __init__(self, steps: list[Callable[[], Any]], *,
                 alive: Callable[[], bool] = lambda: True,
                 on_error: Callable[[BaseException], Any] = _noop,
                 on_done: Callable[[], Any] = _noop, delay_ms: int = 1) -> None:
        self._steps = list(steps)
        self._alive = alive
        self._on_error = on_error
        self._on_done = on_done
        self.delay_ms = int(delay_ms)
        self.turn = 0
        self.finished = False

    def start(self) -> Turns:
        """Schedule the first step; returns ``self``."""
        self._schedule()
        return self

    def _schedule(self) -> None:
        from qtpy.QtCore import QTimer

        QTimer.singleShot(self.delay_ms, self._next)

    def _next(self) -> None:
        if not self._alive():
            self._steps = []
            return
        if not self._steps:
            self._finish()
            return
        step = self._steps.pop(0)
        self.turn += 1
        try:
            step()
        except Exception as exc:  # noqa: BLE001 - reported by the owner; then finish
            self._steps = []
            self._on_error(exc)
            self._finish()
            return
        if self._steps:
            self._schedule()
        else:
            self._finish()

    def _finish(self) -> None:
        if not self.finished:
            self.finished = True
            self._on_done()
