"""Cancellation inside a step: a cancel request that long inner loops honour.

Methods are generators, so a run can stop at every ``yield`` (one step). Some steps hold long
inner loops (the image and kernel sub-problems of blind deconvolution, CG solves, TV dual
iterations); those call :func:`cancel_point`, which raises
:class:`~napari_invrec.core.errors.CancelledError` once the ``threading.Event`` that the
engine installed with :func:`cancellable` for the current thread is set. Outside a
:func:`cancellable` block it costs one attribute lookup and does nothing.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

from .errors import CancelledError

_local = threading.local()


@contextlib.contextmanager
def cancellable(event: threading.Event | None) -> Iterator[None]:
    """Make :func:`cancel_point` in this thread raise once ``event`` is set (None: never)."""
    old = getattr(_local, "event", None)
    _local.event = event
    try:
        yield
    finally:
        _local.event = old


def cancel_point() -> None:
    """Raise :class:`CancelledError` if the current thread's run was asked to stop."""
    event = getattr(_local, "event", None)
    if event is not None and event.is_set():
        raise CancelledError("cancelled by the user")
