"""Exceptions raised by the core with messages that tell the user what to change."""


class InvRecError(Exception):
    """Base class of every error napari-invrec raises on purpose."""


class InputError(InvRecError, ValueError):
    """An input (image, mask, kernel, parameter) cannot be used as given.

    The message always says what to change.
    """


class DivergenceError(InvRecError, RuntimeError):
    """A solver produced non-finite values or a growing objective."""


class CancelledError(InvRecError):
    """A run was cancelled by the user before it finished."""


class ResourceError(InvRecError, RuntimeError):
    """The device ran out of memory (or another resource); the message says what to reduce."""
