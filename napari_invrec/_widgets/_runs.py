"""Worker glue: one background run at a time, with pause/resume and cancel.

:class:`RunController` starts an engine generator in a napari ``GeneratorWorker``
(:func:`napari.qt.threading.create_worker`, so it also shows in napari's activity dock) and
routes its signals to callbacks that run on the main thread. Cancel takes effect between two
steps of the generator: the worker checks its abort flag before every ``send``. Yields that were
already queued when Cancel was pressed are dropped, so no layer is touched after a cancel.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

__all__ = ["RunController", "DisplayThrottle"]


def _noop(*_: Any) -> None:
    return None


class RunController:
    """Owns at most one running worker and remembers how it ended.

    Attributes
    ----------
    worker
        The running ``GeneratorWorker`` or ``None``.
    cancel_time
        ``time.perf_counter()`` when Cancel was requested (``None`` if not).
    """

    def __init__(self) -> None:
        self.worker: Any = None
        self.cancel_time: float | None = None
        self._outcome: str | None = None
        self._callbacks: dict[str, Callable] = {}

    @property
    def running(self) -> bool:
        """Whether a worker is running (or paused)."""
        return self.worker is not None

    @property
    def paused(self) -> bool:
        """Whether the running worker is paused."""
        return self.worker is not None and bool(self.worker.is_paused)

    def start(self, fn: Callable, *args: Any, total: int = 0, desc: str = "",
              on_yield: Callable = _noop, on_return: Callable = _noop,
              on_error: Callable = _noop, on_cancel: Callable = _noop,
              on_finish: Callable = _noop, on_pause: Callable = _noop,
              **kwargs: Any) -> Any:
        """Run the generator function ``fn(*args, **kwargs)`` in a worker thread.

        Exactly one of ``on_return(result)``, ``on_error(exc)`` and ``on_cancel()`` is called
        when it ends, then ``on_finish()``. ``on_pause(paused: bool)`` follows pause/resume.
        """
        from napari.qt.threading import create_worker

        if self.worker is not None:
            raise RuntimeError("a run is already in progress")
        self.cancel_time = None
        self._outcome = None
        self._callbacks = {"yield": on_yield, "return": on_return, "error": on_error,
                           "cancel": on_cancel, "finish": on_finish}
        worker = create_worker(fn, *args, _progress={"total": int(total or 0), "desc": desc},
                               _start_thread=False, **kwargs)
        worker.yielded.connect(self._on_yield)
        worker.returned.connect(self._on_return)
        worker.errored.connect(self._on_error)
        worker.aborted.connect(self._on_abort)
        worker.finished.connect(self._on_finish)
        worker.paused.connect(lambda: on_pause(True))
        worker.resumed.connect(lambda: on_pause(False))
        self.worker = worker
        worker.start()
        return worker

    def toggle_pause(self) -> None:
        """Pause a running worker or resume a paused one (takes effect between two steps)."""
        if self.worker is not None and self.cancel_time is None:
            self.worker.toggle_pause()

    def cancel(self) -> None:
        """Ask the worker to stop before its next step; queued yields are dropped from now on."""
        if self.worker is not None and self.cancel_time is None:
            self.cancel_time = time.perf_counter()
            self.worker.quit()

    # ------------------------------------------------------------------ slots (main thread)
    def _on_yield(self, value: Any) -> None:
        if self.cancel_time is None:
            self._callbacks["yield"](value)

    def _on_return(self, value: Any) -> None:
        if self.cancel_time is None:
            self._outcome = "return"
            self._callbacks["return"](value)

    def _on_error(self, exc: BaseException) -> None:
        self._outcome = "error"
        self._callbacks["error"](exc)

    def _on_abort(self) -> None:
        if self._outcome is None:
            self._outcome = "cancel"
            self._callbacks["cancel"]()

    def _on_finish(self) -> None:
        # a cancel that arrived after the generator's last step: neither returned nor aborted
        if self._outcome is None:
            self._on_abort()
        callbacks = self._callbacks
        self.worker = None
        callbacks["finish"]()


class DisplayThrottle:
    """Rate limit for GUI updates that also bounds the share of GUI time they take.

    A run yields every step; drawing every step would keep the GUI thread (and, through the
    GIL, the solver) busy. After an update that took ``c`` seconds the next one is allowed
    ``max(1 / max_hz, c * (1 - duty) / duty)`` seconds later, so on a slow display (software
    OpenGL, a remote desktop) updates take at most ``duty`` of the GUI thread's time.

    Parameters
    ----------
    max_hz
        Upper bound on the update rate.
    duty
        Largest fraction of GUI time spent in updates.
    """

    def __init__(self, max_hz: float = 30.0, duty: float = 0.25) -> None:
        self.min_interval = 1.0 / max_hz
        self.factor = (1.0 - duty) / duty
        self._next = 0.0

    def ready(self, force: bool = False) -> bool:
        """Whether an update may run now (``force`` for the last step)."""
        return force or time.perf_counter() >= self._next

    def done(self, started: float) -> None:
        """Record an update that began at ``started`` (a ``time.perf_counter()`` value)."""
        end = time.perf_counter()
        self._next = end + max(self.min_interval, (end - started) * self.factor)
