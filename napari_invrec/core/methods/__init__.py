"""Reconstruction methods, one module per family, collected in :data:`METHODS`."""

from . import classical, tv  # noqa: F401  (registration)
from .registry import METHODS, MethodSpec, get_method, register_method

__all__ = ["METHODS", "MethodSpec", "get_method", "register_method"]
