"""Parameter dataclasses: one-line documented fields that the GUI renders and results store.

Every operator and method has a ``@dataclass`` of parameters whose fields are declared with
:func:`param`. The field metadata (``doc``, ``min``, ``max``, ``choices``, ``step``, ``gui``)
is what :mod:`napari_invrec._widgets.forms` turns into a form, and :func:`to_dict` is what goes
into provenance.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any

import numpy as np

__all__ = ["param", "to_dict", "from_dict", "field_docs", "array_fingerprint", "choices_of"]


def param(
    default: Any,
    doc: str,
    *,
    min: float | None = None,  # noqa: A002 - mirrors the GUI vocabulary
    max: float | None = None,  # noqa: A002
    step: float | None = None,
    choices: tuple | Any = None,
    gui: bool = True,
    when: dict | None = None,
    network: bool = False,
) -> Any:
    """Declare a documented parameter field.

    Parameters
    ----------
    default
        Default value (immutable; arrays default to ``None``).
    doc
        One line shown as the tooltip and in ``--help``.
    min, max, step
        Bounds and step for numeric widgets; also checked by :func:`validate`.
    choices
        Allowed values for a string parameter (rendered as a combo box), or a callable
        returning them when they change at run time (e.g. the installed network weights);
        read them with :func:`choices_of`.
    gui
        ``False`` hides the field from generated forms (e.g. an array set from a layer).
    when
        ``{"other_field": value_or_tuple}``: only show/use this field when the other field
        has one of these values (e.g. ``kernel_size`` only for ``kernel='disk'``).
    network
        The field names trained weights; its default is a network the method needs
        installed (read by :func:`~.methods.registry.register_method`).
    """
    meta = {"doc": doc, "min": min, "max": max, "step": step, "choices": choices,
            "gui": gui, "when": when, "network": network}
    return dataclasses.field(default=default, metadata=meta)


def choices_of(f: Any) -> tuple | None:
    """Allowed values of a field (a ``dataclasses.Field`` or its metadata), calling a
    callable ``choices``; ``None`` when the field has none."""
    m = f.metadata if isinstance(f, dataclasses.Field) else f
    c = m.get("choices")
    if callable(c):
        c = c()
    return tuple(c) if c else None


def array_fingerprint(a: Any) -> dict:
    """JSON-friendly description of an array: shape, dtype and a SHA-256 of its bytes."""
    arr = np.ascontiguousarray(np.asarray(a))
    return {"array_shape": list(arr.shape), "dtype": str(arr.dtype),
            "sha256": hashlib.sha256(arr.tobytes()).hexdigest()}


def _jsonable(v: Any) -> Any:
    if isinstance(v, np.ndarray) or hasattr(v, "__array__") and not isinstance(v, (str, bytes)):
        return array_fingerprint(v)
    if isinstance(v, tuple):
        return [_jsonable(i) for i in v]
    if isinstance(v, (np.floating, np.integer)):
        return v.item()
    return v


def to_dict(p: Any) -> dict:
    """JSON-serialisable dict of a params dataclass (arrays become fingerprints)."""
    return {f.name: _jsonable(getattr(p, f.name)) for f in dataclasses.fields(p)}


def from_dict(cls: type, d: dict, **arrays: Any) -> Any:
    """Rebuild a params dataclass from :func:`to_dict` output; pass arrays by keyword."""
    names = {f.name for f in dataclasses.fields(cls)}
    kw = {k: v for k, v in d.items() if k in names and not isinstance(v, dict)}
    for k, v in list(kw.items()):
        f = next(f for f in dataclasses.fields(cls) if f.name == k)
        if isinstance(f.default, tuple) and isinstance(v, list):
            kw[k] = tuple(v)
    kw.update({k: v for k, v in arrays.items() if k in names})
    return cls(**kw)


def field_docs(cls: type) -> dict[str, str]:
    """Map field name -> one-line doc."""
    return {f.name: f.metadata.get("doc", "") for f in dataclasses.fields(cls)}


def make_params(cls: type, **kwargs: Any) -> Any:
    """Build ``cls(**kwargs)`` with a clear error for unknown names and out-of-range values.

    Raises
    ------
    InputError
        If a keyword is not a field of ``cls``, or a value violates ``min``/``max``/``choices``
        (fixed choices only: callable ones, such as installed weights, are checked by whoever
        loads them, with a message saying how to get them).
    """
    from .errors import InputError

    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(kwargs) - set(fields))
    if unknown:
        raise InputError(
            f"unknown parameter(s) {', '.join(unknown)} for {cls.__name__}; "
            f"valid: {', '.join(fields)}")
    p = cls(**kwargs)
    for name, f in fields.items():
        v = getattr(p, name)
        m = f.metadata
        allowed = None if callable(m.get("choices")) else choices_of(m)
        if allowed and v not in allowed:
            raise InputError(f"{name}={v!r} is not one of {list(allowed)}")
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            if m.get("min") is not None and v < m["min"]:
                raise InputError(f"{name}={v} is below its minimum {m['min']}")
            if m.get("max") is not None and v > m["max"]:
                raise InputError(f"{name}={v} is above its maximum {m['max']}")
    return p
