"""Checking architecture kwargs before a network is built: :func:`check_architecture_kwargs`.

Kwargs come from places a user controls (a weights manifest, a weights file, training
options), so names are checked against the constructor, values against small ranges, and the
network is counted on the meta device (no memory) under :data:`MAX_PARAMETERS`,
:data:`MAX_TENSORS` and :data:`MAX_MODULES` before any real build.
"""

from __future__ import annotations

import inspect
import math
import threading
from typing import Any

import torch
from torch import nn

from ..errors import InputError
from .architectures import ARCHITECTURES
from .manifest import error_line

__all__ = ["check_architecture_kwargs", "MAX_PARAMETERS", "MAX_TENSORS", "MAX_MODULES",
           "MAX_KWARG_INT"]

#: most parameters a network built from manifest, file or training kwargs may hold (shipped:
#: about 1.1M)
MAX_PARAMETERS = 64_000_000
#: most parameter/buffer tensors and submodules (shipped: at most 157 tensors; a VarNet of 16
#: cascades and 4 scales: 577); they bound the time of the meta-device build that counts the
#: parameters to about 0.3 s
MAX_TENSORS = 600
MAX_MODULES = 2400
#: integer kwargs (widths, depths, scales, kernel sizes) lie in 0..MAX_KWARG_INT
MAX_KWARG_INT = 4096
_FIX = "fix 'kwargs' in the weights manifest entry, or retrain with smaller ones"


class _TooLargeError(Exception):
    """Raised inside the meta-device build when it registers too many tensors/modules."""


def _check_value(arch: str, key: str, value: Any, default: Any, who: str, fix: str) -> None:
    """Refuse a kwarg value of the wrong type or out of range (before anything is built)."""

    def small_int(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= MAX_KWARG_INT

    shown = repr(value)[:40]
    if isinstance(default, bool):
        ok, want = isinstance(value, bool), "true or false"
    elif isinstance(default, int):
        ok, want = small_int(value), f"an integer in 0..{MAX_KWARG_INT}"
    elif isinstance(default, float):
        ok = isinstance(value, int | float) and not isinstance(value, bool) and \
            math.isfinite(value) and abs(value) <= 1e6
        want = "a finite number"
    elif isinstance(default, tuple | list):
        ok = isinstance(value, list | tuple) and 0 < len(value) <= 16 and \
            all(small_int(v) for v in value)
        want = f"a list of 1 to 16 integers in 0..{MAX_KWARG_INT}"
    else:
        ok = value is None or isinstance(value, bool) or small_int(value) or \
            isinstance(value, str) and len(value) <= 64
        want = f"null, true/false, an integer in 0..{MAX_KWARG_INT} or a short string"
    if not ok:
        raise InputError(f"{arch} kwarg {key!r}={shown} {who} must be {want}; {fix}")


def _counting_hooks() -> tuple[Any, Any]:
    """Registration hooks (tensor, module) that stop a build in this thread past the caps."""
    me = threading.get_ident()
    counts = {"tensors": 0, "modules": 0}

    def on_tensor(module: nn.Module, name: str, tensor: Any) -> None:
        if tensor is not None and threading.get_ident() == me:
            counts["tensors"] += 1
            if counts["tensors"] > MAX_TENSORS:
                raise _TooLargeError(f"more than {MAX_TENSORS:,} parameter tensors")

    def on_module(module: nn.Module, name: str, sub: Any) -> None:
        if sub is not None and threading.get_ident() == me:
            counts["modules"] += 1
            if counts["modules"] > MAX_MODULES:
                raise _TooLargeError(f"more than {MAX_MODULES:,} layers")

    return on_tensor, on_module


def check_architecture_kwargs(architecture: str, kwargs: dict[str, Any], *,
                              name: str | None = None, fix: str = _FIX) -> int:
    """Check constructor ``kwargs`` for ``architecture`` without allocating the network.

    Names must be constructor arguments, values of the defaults' types in a small range;
    the network is then built on ``torch.device("meta")`` (no memory) with at most
    :data:`MAX_TENSORS` tensors and :data:`MAX_MODULES` layers, and its parameter count must
    not exceed :data:`MAX_PARAMETERS`. Takes milliseconds (well under a second at the caps).

    Parameters
    ----------
    architecture
        A key of :data:`~.architectures.ARCHITECTURES`.
    kwargs
        Constructor arguments, e.g. from a manifest entry, a weights file or training options.
    name
        The weights' name, for the messages.
    fix
        What to change, ending every message; default: fix the manifest entry or retrain.

    Returns
    -------
    int
        The network's parameter count.

    Raises
    ------
    InputError
        Unknown architecture or kwarg name, a value of the wrong type or range, a network
        that does not build or is too large; the message says what to change.
    """
    from torch.nn.modules import module as nn_module

    who = f"for {name!r}" if name is not None else "given"
    cls = ARCHITECTURES.get(architecture)
    if cls is None:
        raise InputError(f"unknown architecture {architecture!r} {who}; use one of "
                         f"{', '.join(ARCHITECTURES)}")
    if not isinstance(kwargs, dict):
        raise InputError(f"{architecture} kwargs {who} must be a JSON object, not "
                         f"{type(kwargs).__name__}; {fix}")
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    params = {p.name: p for p in list(inspect.signature(cls.__init__).parameters.values())[1:]
              if p.kind in kinds}
    unknown = sorted(set(kwargs) - set(params), key=str)
    if unknown:
        raise InputError(f"unknown {architecture} kwargs {', '.join(repr(k)[:40] for k in unknown)}"
                         f" {who}; use only {', '.join(params)}; {fix}")
    for key, value in kwargs.items():
        _check_value(architecture, key, value, params[key].default, who, fix)
    on_tensor, on_module = _counting_hooks()
    hooks = [nn_module.register_module_parameter_registration_hook(on_tensor),
             nn_module.register_module_buffer_registration_hook(on_tensor),
             nn_module.register_module_module_registration_hook(on_module)]
    try:
        with torch.device("meta"):
            model = cls(**kwargs)
        count = sum(t.numel() for t in (*model.parameters(), *model.buffers()))
    except _TooLargeError as err:
        raise InputError(f"{architecture} kwargs {who} make a network of {err}, the most "
                         f"weights may hold; {fix}") from None
    except Exception as err:  # noqa: BLE001 - any constructor failure means unusable kwargs
        raise InputError(f"{architecture} kwargs {who} do not build a network "
                         f"({type(err).__name__}: {error_line(err)}); {fix}") from err
    finally:
        for hook in hooks:
            hook.remove()
    if count > MAX_PARAMETERS:
        raise InputError(f"{architecture} kwargs {who} make a network of {count:,} parameters, "
                         f"above the limit of {MAX_PARAMETERS:,}; {fix}")
    return count
