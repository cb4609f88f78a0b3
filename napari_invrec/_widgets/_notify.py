"""Report errors and outcomes to the user: a napari notification plus the widget's status line.

Every error a dock meets is reported once, as one line: the package's own errors
(:class:`~napari_invrec.core.errors.InvRecError`) with their message as it is, anything else as
``Type: message`` (its traceback goes to the ``napari_invrec`` logger, not to a dialog).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

from ..core.errors import InvRecError

__all__ = ["notify_error", "notify_info", "guarded", "error_message", "report_error",
           "widget_deleted"]

_log = logging.getLogger("napari_invrec")


def error_message(exc: BaseException) -> str:
    """What the user reads: the message of our own errors, ``Type: message`` (on one line) for
    the others."""
    if isinstance(exc, InvRecError):
        return str(exc)
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def widget_deleted(exc: BaseException) -> bool:
    """Whether ``exc`` is Qt's "wrapped C/C++ object ... has been deleted" (a closed dock)."""
    return isinstance(exc, RuntimeError) and "has been deleted" in str(exc)


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


def notify_warning(message: str, status: Any = None) -> None:
    """Show ``message`` as a napari warning notification (and in ``status``)."""
    from napari.utils.notifications import show_warning

    _set_status(status, message)
    show_warning(message)


def notify_info(message: str, status: Any = None) -> None:
    """Show ``message`` as a napari info notification (and in ``status``)."""
    from napari.utils.notifications import show_info

    _set_status(status, message)
    show_info(message)


def report_error(exc: BaseException, status: Any = None, prefix: str = "") -> None:
    """Notify ``exc`` once as one line (``prefix`` first); log the traceback of unexpected ones.

    Errors of a dock whose Qt widgets are already deleted are dropped silently.
    """
    if widget_deleted(exc):
        return
    if not isinstance(exc, InvRecError):
        _log.error("%s%s", prefix, error_message(exc), exc_info=exc)
    notify_error(f"{prefix}{error_message(exc)}", status)


def guarded(method: Callable) -> Callable:
    """Decorate a widget method (a button action or an event slot) so that no exception
    escapes it: each becomes one notification (see :func:`report_error`) and the method
    returns ``None``.

    The widget's ``status`` attribute (a Label), if any, shows the message too.
    """

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - the point: nothing escapes to napari
            report_error(exc, getattr(self, "status", None))
            return None

    return wrapper
