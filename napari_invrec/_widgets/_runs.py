"""Worker glue: every background job of the docks starts here.

* :func:`make_worker` is the only place a napari worker is created
  (:func:`napari.qt.threading.create_worker`, so jobs show in napari's activity dock). Its
  workers do not relay errors to napari: the caller's ``errored`` slot reports each error once,
  as one line (see :func:`~napari_invrec._widgets._notify.report_error`), instead of a
  notification plus napari's traceback plus a re-raise in the main thread.
* :class:`RunController` runs an engine generator with pause/resume and cancel and routes its
  signals to callbacks on the main thread. Cancel takes effect between two steps of the
  generator: the worker checks its abort flag before every ``send``. Yields that were already
  queued when Cancel was pressed are dropped, so no layer is touched after a cancel. Its
  progress in napari's activity dock advances a few times a second
  (:class:`~._pacing.ProgressPacer`), not on every step, and a dock that shows its results
  over several event-loop turns keeps the run "running" until they are all shown
  (:meth:`RunController.hold`).
* :func:`run_once` runs a function (a map, a calibration step) with the same error handling.

Both drop every signal once their ``alive`` predicate fails (the viewer was closed or the dock
deleted, see :func:`dock_alive`), and a controller then asks its worker to quit.
"""

from __future__ import annotations

import functools
import inspect
import threading
import time
from collections.abc import Callable
from typing import Any

from napari.qt.threading import FunctionWorker, GeneratorWorker

from ._pacing import ProgressPacer

__all__ = ["RunController", "make_worker", "run_once", "unwrap",
           "viewer_open", "widget_alive", "dock_alive"]


def _noop(*_: Any) -> None:
    return None


def _always() -> bool:
    return True


class _QuietGeneratorWorker(GeneratorWorker):
    """A napari generator worker whose errors reach only the slots connected to ``errored``."""

    def _relay_error(self, exc: BaseException) -> None:  # napari: a traceback notification
        return None


class _QuietFunctionWorker(FunctionWorker):
    """A napari function worker whose errors reach only the slots connected to ``errored``."""

    def _relay_error(self, exc: BaseException) -> None:
        return None


class _CarriedError(Exception):
    """Carries a ``RuntimeError`` out of a generator worker: superqt's generator worker takes
    one for a deleted Qt object, warns and never emits ``errored`` or ``finished`` (a
    :class:`~napari_invrec.core.errors.DivergenceError` would leave the dock "running")."""

    def __init__(self, original: BaseException) -> None:
        super().__init__(str(original))
        self.original = original


def unwrap(exc: BaseException) -> BaseException:
    """The exception the job raised (see :class:`_CarriedError`)."""
    return exc.original if isinstance(exc, _CarriedError) else exc


def _carrying(fn: Callable) -> Callable:
    @functools.wraps(fn)
    def gen(*args: Any, **kwargs: Any) -> Any:
        try:
            return (yield from fn(*args, **kwargs))
        except RuntimeError as exc:
            raise _CarriedError(exc) from exc

    return gen


def make_worker(fn: Callable, *args: Any, progress: dict | None = None, **kwargs: Any) -> Any:
    """A napari worker (not started) for ``fn(*args, **kwargs)``: a generator worker for a
    generator function, else a function worker.

    Errors are neither relayed to napari's notification manager nor re-raised in the main
    thread: connect ``errored``, pass the exception through :func:`unwrap` and report it there
    (once). ``progress`` is napari's ``_progress`` (``{"total": n, "desc": text}``) for the
    activity dock.
    """
    from napari.qt.threading import create_worker

    if inspect.isgeneratorfunction(fn):
        fn, cls = _carrying(fn), _QuietGeneratorWorker
    else:
        cls = _QuietFunctionWorker
    return create_worker(fn, *args, _progress=progress or False, _start_thread=False,
                         _worker_class=cls, _ignore_errors=True, **kwargs)


def viewer_open(viewer: Any) -> bool:
    """Whether ``viewer``'s window is still open (a viewer model without a window counts as
    open).

    napari has no public "closed" state or event, and a plugin may not read the window's
    private attributes; a closed ``Window`` has lost its Qt main window, so its public
    :meth:`geometry` fails.
    """
    window = getattr(viewer, "window", None)
    if window is None:
        return True
    try:
        window.geometry()
    except (AttributeError, RuntimeError):  # no Qt window any more / its C++ object deleted
        return False
    return True


def widget_alive(widget: Any) -> bool:
    """Whether the Qt widget (or the one behind a magicgui widget) still exists."""
    try:
        getattr(widget, "native", widget).objectName()
    except RuntimeError:  # wrapped C/C++ object has been deleted
        return False
    return True


def dock_alive(dock: Any, viewer: Any) -> Callable[[], bool]:
    """Predicate: the dock widget exists and its viewer is open (worker slots check it)."""
    return lambda: widget_alive(dock) and viewer_open(viewer)


def run_once(fn: Callable, *args: Any, on_return: Callable, on_error: Callable,
             alive: Callable[[], bool] = _always, **kwargs: Any) -> Any:
    """Start ``fn(*args, **kwargs)`` in a worker; ``on_return(value)`` or ``on_error(exc)`` runs
    on the main thread unless ``alive()`` is false by then. Returns the started worker."""
    worker = make_worker(fn, *args, **kwargs)
    worker.returned.connect(lambda value: on_return(value) if alive() else None)
    worker.errored.connect(lambda exc: on_error(unwrap(exc)) if alive() else None)
    worker.start()
    return worker


class RunController:
    """Owns at most one running worker and remembers how it ended.

    Attributes
    ----------
    worker
        The running ``GeneratorWorker`` or ``None``.
    cancel_time
        ``time.perf_counter()`` when Cancel was requested (``None`` if not).
    """

    def __init__(self, alive: Callable[[], bool] = _always) -> None:
        self.worker: Any = None
        self.cancel_time: float | None = None
        self._stop = threading.Event()
        self._alive = alive
        self._shut = False
        self._outcome: str | None = None
        self._callbacks: dict[str, Callable] = {}
        self._progress: ProgressPacer | None = None
        self._held = False
        self._finish_pending = False

    @property
    def running(self) -> bool:
        """Whether a worker is running (or paused), or its results are still being shown
        (:meth:`hold`)."""
        return self.worker is not None or self._held

    @property
    def paused(self) -> bool:
        """Whether the running worker is paused."""
        return self.worker is not None and bool(self.worker.is_paused)

    def start(self, fn: Callable, *args: Any, total: int = 0, desc: str = "",
              on_yield: Callable = _noop, on_return: Callable = _noop,
              on_error: Callable = _noop, on_cancel: Callable = _noop,
              on_finish: Callable = _noop, on_pause: Callable = _noop,
              cancellable: bool = False, activity: bool = True, **kwargs: Any) -> Any:
        """Run the generator function ``fn(*args, **kwargs)`` in a worker thread.

        Exactly one of ``on_return(result)``, ``on_error(exc)`` and ``on_cancel()`` is called
        when it ends, then ``on_finish()``. ``on_pause(paused: bool)`` follows pause/resume.
        None of them is called once the controller's ``alive()`` is false or it was shut down.
        With ``cancellable``, ``fn`` also gets ``cancel=`` a ``threading.Event`` that Cancel
        sets, so an engine run stops inside a long step, not only between steps.
        With ``activity`` the run shows in napari's activity dock (:class:`~._pacing.
        ProgressPacer`); a dock with its own progress bar passes ``False``: while any
        activity-dock progress is open napari animates a GIF in the status bar, and each of its
        ~25 frames a second repaints the whole window (measured on a software-rendered
        display: 100 steps of 256 px ``tv-fista`` took 9.9 s with it, 2.9 s without).
        """
        if self.running:
            raise RuntimeError("a run is already in progress")
        if self._shut:
            raise RuntimeError("the dock was closed")
        self.cancel_time = None
        self._stop = threading.Event()
        if cancellable:
            kwargs["cancel"] = self._stop
        self._outcome = None
        self._callbacks = {"yield": on_yield, "return": on_return, "error": on_error,
                           "cancel": on_cancel, "finish": on_finish, "pause": on_pause}
        self._held = self._finish_pending = False
        worker = make_worker(fn, *args, **kwargs)
        self._progress = ProgressPacer(total=int(total or 0), desc=desc) if activity else None
        worker.yielded.connect(self._on_yield)
        worker.returned.connect(self._on_return)
        worker.errored.connect(self._on_error)
        worker.aborted.connect(self._on_abort)
        worker.finished.connect(self._on_finish)
        worker.paused.connect(lambda: self._on_pause(True))
        worker.resumed.connect(lambda: self._on_pause(False))
        self.worker = worker
        worker.start()
        return worker

    def hold(self) -> Callable[[], None]:
        """Keep the run :attr:`running` after its worker has ended, until the returned
        ``release()`` is called: a dock calls this from ``on_return`` when it shows the results
        over several event-loop turns, so that ``on_finish`` (and a new Run) waits for them."""
        self._held = True

        def release() -> None:
            if not self._held:
                return
            self._held = False
            if self._finish_pending:
                self._finish_pending = False
                if self._live():
                    self._callbacks["finish"]()

        return release

    def toggle_pause(self) -> None:
        """Pause a running worker or resume a paused one (takes effect between two steps)."""
        if self.worker is not None and self.cancel_time is None:
            self.worker.toggle_pause()

    def cancel(self) -> None:
        """Ask the worker to stop before its next step; queued yields are dropped from now on."""
        if self.worker is not None and self.cancel_time is None:
            self.cancel_time = time.perf_counter()
            self._stop.set()
            self.worker.quit()

    def shutdown(self, *_: Any) -> None:
        """The dock is going away: quit the worker and call no callback from now on."""
        self._shut = True
        self._stop.set()
        if self.worker is not None:
            self.worker.quit()

    # ------------------------------------------------------------------ slots (main thread)
    def _live(self) -> bool:
        """Whether callbacks may run; quits the worker once the dock or viewer is gone."""
        if not self._shut and self._alive():
            return True
        self._shut = True
        self._stop.set()
        if self.worker is not None and not self.worker.abort_requested:
            self.worker.quit()
        return False

    def _stopping(self) -> bool:
        """Cancel requested (by Cancel, or by napari's activity dock / window close)."""
        return self.cancel_time is not None or bool(
            self.worker is not None and self.worker.abort_requested)

    def _on_yield(self, value: Any) -> None:
        if self._live() and not self._stopping():
            self._callbacks["yield"](value)
            if self._progress is not None:  # last: napari's bar runs processEvents(), which
                self._progress.step()  # delivers later yields before this slot returns

    def _on_pause(self, paused: bool) -> None:
        if self._live():
            self._callbacks["pause"](paused)

    def _on_return(self, value: Any) -> None:
        if self.cancel_time is None:
            self._outcome = "return"
            if self._live():
                self._callbacks["return"](value)

    def _on_error(self, exc: BaseException) -> None:
        from ..core.errors import CancelledError

        if isinstance(unwrap(exc), CancelledError) and self._stopping():
            self._on_abort()  # the engine honoured the cancel inside a step
            return
        self._outcome = "error"
        if self._live():
            self._callbacks["error"](unwrap(exc))

    def _on_abort(self) -> None:
        if self._outcome is None:
            self._outcome = "cancel"
            if self._live():
                self._callbacks["cancel"]()

    def _on_finish(self) -> None:
        # a cancel that arrived after the generator's last step: neither returned nor aborted
        if self._outcome is None:
            self._on_abort()
        callbacks = self._callbacks
        self.worker = None
        if self._progress is not None:
            self._progress.close()
            self._progress = None
        if self._held:  # results still being shown: ``release()`` finishes
            self._finish_pending = True
            return
        if self._live():
            callbacks["finish"]()
