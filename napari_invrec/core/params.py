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

__all__ = ["param", "to_dict", "from_dict", "field_docs", "array_fingerprint", "choices_of",
           "make_params", "check_fingerprint"]


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
    noise: bool = False,
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
    noise
        The field is the measurement's noise std (in the units the method runs in): the GUI
        fills it with the estimate from the data.
    """
    meta = {"doc": doc, "min": min, "max": max, "step": step, "choices": choices,
            "gui": gui, "when": when, "network": network, "noise": noise}
    return dataclasses.field(default=default, metadata=meta)


def redefault(cls: type, name: str, default: Any) -> Any:
    """Field ``name`` of the parameter dataclass ``cls`` with another ``default`` (its doc,
    bounds and choices kept): how a subclass changes the default of a shared setting."""
    return dataclasses.field(default=default, metadata=cls.__dataclass_fields__[name].metadata)


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
    """Rebuild a params dataclass from :func:`to_dict` output, validated like user input.

    Array fields are stored as fingerprints (:func:`array_fingerprint`); pass the arrays by
    keyword and they are checked against the fingerprints.

    Raises
    ------
    InputError
        Unknown keys, values out of range or of the wrong type (see :func:`make_params`), a
        fingerprinted array that is not supplied or differs from its fingerprint.
    """
    from .errors import InputError

    if not isinstance(d, dict):
        raise InputError(f"stored parameters of {cls.__name__} must be a mapping, got "
                         f"{type(d).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kw: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict) and k in fields:
            if k not in arrays:
                raise InputError(f"parameter {k!r} of {cls.__name__} is an array stored beside "
                                 "the record (layer metadata 'arrays' or the sidecar .npz); "
                                 "supply it")
            check_fingerprint(arrays[k], v, k)
            continue
        f = fields.get(k)
        if f is not None and isinstance(f.default, tuple) and isinstance(v, list):
            v = tuple(v)
        kw[k] = v
    kw.update({k: v for k, v in arrays.items() if k in fields})
    return make_params(cls, **kw)


def check_fingerprint(a: Any, fingerprint: dict, name: str) -> None:
    """Raise :class:`InputError` unless ``a`` matches ``fingerprint`` (shape, dtype, bytes)."""
    from .errors import InputError

    want = {k: fingerprint.get(k) for k in ("array_shape", "dtype", "sha256")}
    if want["sha256"] is None:
        raise InputError(f"the record's fingerprint of {name!r} has no sha256; the record is "
                         "malformed")
    have = array_fingerprint(a)
    if have["array_shape"] != list(want["array_shape"] or []) or have["dtype"] != want["dtype"]:
        raise InputError(f"{name} has shape {tuple(have['array_shape'])} and dtype "
                         f"{have['dtype']}, but the record was made with shape "
                         f"{tuple(want['array_shape'] or [])} and dtype {want['dtype']}; "
                         "supply the array the record was made with")
    if have["sha256"] != want["sha256"]:
        raise InputError(f"{name} differs from the one the record was made with (sha256 "
                         "mismatch); supply the original array")


def field_docs(cls: type) -> dict[str, str]:
    """Map field name -> one-line doc."""
    return {f.name: f.metadata.get("doc", "") for f in dataclasses.fields(cls)}


def _coerce(cls: type, f: dataclasses.Field, v: Any) -> Any:
    """``v`` as the plain Python type of field ``f`` (``int``, ``float``, ``bool``, ``str``), or
    raise :class:`InputError`: numpy scalars become Python scalars, whole floats become ints,
    NaN/inf, booleans as numbers and strings as numbers are refused."""
    from .errors import InputError

    kind = str(f.type).removesuffix(" | None")
    name = f"{f.name}={v!r}"
    if v is None and f.default is None:
        return v
    if kind == "bool":
        if isinstance(v, (bool, np.bool_)):
            return bool(v)
        raise InputError(f"{name} must be True or False")
    if kind == "str":
        if isinstance(v, str):
            return str(v)
        raise InputError(f"{name} must be a string")
    if kind not in ("int", "float"):
        return v
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer,
                                                             np.floating)):
        raise InputError(f"{name} must be a{'n integer' if kind == 'int' else ' number'}, "
                         f"got {type(v).__name__}")
    if isinstance(v, (float, np.floating)) and not np.isfinite(v):
        raise InputError(f"{f.name}={float(v)} is not a finite number; give a value between "
                         f"{f.metadata.get('min')} and {f.metadata.get('max')}")
    if kind == "float":  # a float32 0.01 is 0.01, not 0.009999999776
        return float(str(v)) if isinstance(v, np.floating) else float(v)
    if isinstance(v, (np.floating, float)):
        if float(v) != int(v):
            raise InputError(f"{name} must be a whole number")
    return int(v)


def make_params(cls: type, **kwargs: Any) -> Any:
    """Build ``cls(**kwargs)`` with a clear error for any value that cannot be used.

    Values are converted to the field's plain Python type first (see :func:`_coerce`: numpy
    scalars are accepted, NaN/inf and wrong types are not), then checked against the field's
    ``min``/``max``/``choices`` (fixed choices only: callable ones, such as installed
    weights, are checked by whoever loads them, with a message saying how to get them).

    Raises
    ------
    InputError
        If a keyword is not a field of ``cls``, or a value has the wrong type, is not finite
        or violates ``min``/``max``/``choices``.
    """
    from .errors import InputError

    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(kwargs) - set(fields))
    if unknown:
        raise InputError(
            f"unknown parameter(s) {', '.join(unknown)} for {cls.__name__}; "
            f"valid: {', '.join(fields)}")
    values = {k: _coerce(cls, fields[k], v) for k, v in kwargs.items()}
    p = cls(**values)
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
