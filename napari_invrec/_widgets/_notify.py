"""Report errors and outcomes to the user: a napari notification plus the widget's status line."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from ..core.errors import InvRecError

__all__ = ["notify_error", "notify_info", "guarded", "error_message"]


def error_message(exc: BaseException) -> str:
    """What the user reads: the message of our own errors, ``Type: message`` for the others."""
    if isinstance(exc, InvRecError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def _set_status(status: Any, text: str) -> None:
    if status is None:
        return
    try:
        status.value = text
    except RuntimeError:  # widget already deleted
        pass


def notify_error(message: str, status: Any = None) -> None:
    """Show ``message`` as a napari error notification (and in ``status``, a magicgui Label)."""
    from napari.utils.notifications import show_error

    _set_status(status, message)
    show_error(message)


def notify_info(message: str, status: Any = None) -> None:
    """Show ``message`` as a napari info notification (and in ``status``)."""
    from napari.utils.notifications import show_info

    _set_status(status, message)
    show_info(message)


def guarded(method: Callable) -> Callable:
    """Decorate a widget method so that an :class:`InvRecError` becomes a notification.

    The widget's ``status`` attribute (a Label), if any, shows the message too; the method then
    returns ``None``. Other exceptions propagate (they are bugs, napari reports them).
    """

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except InvRecError as exc:
            notify_error(error_message(exc), getattr(self, "status", None))
            return None

    return wrapper
