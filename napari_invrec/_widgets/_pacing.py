"""Pacing of GUI updates while a run streams: watching a run must not slow it down.

A run yields after every step (a few milliseconds on small images); the GUI thread shares the
interpreter lock and, on a software-rendered display, the CPU cores with the solver, so every
millisecond it spends drawing is taken from the solver. Measured here (2 cores, Xvfb, llvmpipe,
256 px ``tv-fista``): napari's own progress bar (``create_worker(_progress=...)``) calls
``QApplication.processEvents()`` on every step, repainting the whole window each time; while
any such progress is open napari animates a GIF in its status bar, ~25 window repaints a second
(each 20-40 ms when Qt composites the window with software OpenGL); and the live layer's canvas
repaint costs 2-4x what setting its data does and happens after the slot returns, where a rate
limit that times only the slot does not see it.

* :class:`DisplayThrottle` bounds the rate of an update and the share of GUI time it takes,
  the repaints it causes included (:func:`after_repaint`).
* :class:`ProgressPacer` drives napari's activity-dock progress bar at a few updates a second.
"""

from __future__ import annotations

import time
from typing import Any

__all__ = ["DisplayThrottle", "ProgressPacer", "after_repaint"]


class _RepaintProbe:
    """Calls back once the repaints pending now have run: a low-priority event, posted after
    the update request Qt posted (also at low priority), arrives after it; repainting the canvas
    makes Qt post one more (the window's compositing), hence ``hops`` posts in a row."""

    def __init__(self) -> None:
        from qtpy.QtCore import QEvent, QObject

        kind = QEvent.Type(QEvent.registerEventType())
        queue: list[list] = []  # [hops left, callback], in posting order

        class Receiver(QObject):
            def event(self, ev: Any) -> bool:
                if ev.type() != kind:
                    return super().event(ev)
                item = queue.pop(0)
                item[0] -= 1
                if item[0] > 0:
                    post(item)
                else:
                    item[1]()
                return True

        def post(item: list) -> None:
            from qtpy.QtCore import QCoreApplication, Qt

            queue.append(item)
            low = Qt.EventPriority.LowEventPriority
            QCoreApplication.postEvent(self._receiver, QEvent(kind),
                                       int(getattr(low, "value", low)))

        self._receiver = Receiver()
        self._post = post

    def after(self, callback: Any, hops: int = 2) -> None:
        """Call ``callback()`` after the repaints pending now (and the ones they cause)."""
        self._post([max(1, int(hops)), callback])


_PROBE: list[_RepaintProbe] = []


def after_repaint(callback: Any, hops: int = 2) -> None:
    """Call ``callback()`` on the GUI thread once the repaints pending now have run."""
    if not _PROBE:
        _PROBE.append(_RepaintProbe())
    _PROBE[0].after(callback, hops)


class DisplayThrottle:
    """Rate limit for GUI updates that also bounds the share of GUI time they take.

    A run yields every step; drawing every step would keep the GUI thread (and, through the
    GIL, the solver) busy. After an update that cost ``c`` seconds the next one is allowed
    ``max(1 / max_hz, c / duty)`` seconds after it began, so on a slow display (software
    OpenGL, a remote desktop) updates take at most ``duty`` of the GUI thread's time.

    The cost ``c`` runs from ``started`` to :meth:`done`, or, with ``repaints``, until the
    repaints the update caused have run (:func:`after_repaint`): Qt repaints after the slot
    has returned, and on a software-rendered display the repaint costs 2-4x the slot. Until
    that cost is known no other update is allowed.

    Parameters
    ----------
    max_hz
        Upper bound on the update rate.
    duty
        Largest fraction of GUI time spent in updates.
    repaints
        Count the repaints that follow an update in its cost (needs a running Qt event loop).
    """

    def __init__(self, max_hz: float = 30.0, duty: float = 0.25,
                 repaints: bool = False) -> None:
        self.min_interval = 1.0 / max_hz
        self.duty = float(duty)
        self.repaints = repaints
        self.last_cost: float | None = None
        self._next = 0.0
        self._waiting = False
        self._run = 0  # a reset forgets measurements still under way

    def ready(self, force: bool = False) -> bool:
        """Whether an update may run now (``force`` for the last step)."""
        return force or (not self._waiting and time.perf_counter() >= self._next)

    def done(self, started: float) -> None:
        """Record an update that began at ``started`` (a ``time.perf_counter()`` value)."""
        if not self.repaints:
            self._measured(started)
            return
        self._waiting = True
        run = self._run
        after_repaint(lambda: self._measured(started) if run == self._run else None)

    def _measured(self, started: float) -> None:
        self.last_cost = time.perf_counter() - started
        self._next = started + max(self.min_interval, self.last_cost / self.duty)
        self._waiting = False

    def reset(self) -> None:
        """Forget the last update (a new run starts)."""
        self._run += 1
        self._next, self._waiting, self.last_cost = 0.0, False, None


class ProgressPacer:
    """napari's activity-dock progress bar for a run, updated a few times a second.

    napari's ``create_worker(_progress=...)`` advances its bar on every yield, and each advance
    calls ``QApplication.processEvents()`` (a repaint of the window): on a software-rendered
    display that made a run 3-5x slower than headless. This pacer advances the same bar through
    :class:`DisplayThrottle` (at most ``max_hz``, at most ``duty`` of GUI time).

    Parameters
    ----------
    total
        Number of steps (0: indeterminate).
    desc
        Description shown in the activity dock.
    """

    def __init__(self, total: int = 0, desc: str = "", max_hz: float = 4.0,
                 duty: float = 0.05) -> None:
        from napari.utils import progress

        self.total = max(int(total or 0), 0)
        self.pbar = progress(total=self.total, desc=desc or None)
        self._throttle = DisplayThrottle(max_hz=max_hz, duty=duty)
        self._pending = 0

    def step(self, n: int = 1) -> None:
        """Count ``n`` steps; shown now if the throttle allows it."""
        self._pending += n
        if self.pbar is not None and self._throttle.ready():
            started = time.perf_counter()
            self._flush()
            self._throttle.done(started)

    def _flush(self) -> None:
        k, self._pending = self._pending, 0
        if self.total:
            k = min(k, max(self.total - int(self.pbar.n), 0))  # a bar never passes its total
        if k:
            self.pbar.update(k)

    def close(self) -> None:
        """Remove the bar from the activity dock."""
        pbar, self.pbar = self.pbar, None
        if pbar is not None:
            try:
                pbar.close()
            except RuntimeError:  # its Qt widget went with a closed viewer
                pass
