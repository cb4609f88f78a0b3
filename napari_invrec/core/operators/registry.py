"""Registry of operator families: name -> class, params dataclass and description."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ..errors import InputError
from ..params import make_params


@dataclass(frozen=True)
class OperatorSpec:
    """What the registry knows about one operator family."""

    name: str
    cls: type
    params: type
    description: str
    complex_image: bool
    complex_measurement: bool
    linear: bool


OPERATORS: dict[str, OperatorSpec] = {}


def register_operator(cls: type) -> type:
    """Class decorator: add a :class:`ForwardOperator` subclass to :data:`OPERATORS`."""
    doc = (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else cls.name
    OPERATORS[cls.name] = OperatorSpec(cls.name, cls, cls.Params, doc, cls.complex_image,
                                       cls.complex_measurement, bool(cls.linear))
    return cls


def make_operator(name: str, shape: tuple[int, int], *, device: Any = None,
                  **params: Any) -> Any:
    """Build the operator ``name`` for images of ``shape`` with ``params`` (dataclass fields).

    Raises
    ------
    InputError
        Unknown operator name or parameter, or a parameter out of range.
    """
    if name not in OPERATORS:
        raise InputError(f"unknown operator {name!r}; available: {', '.join(sorted(OPERATORS))}")
    spec = OPERATORS[name]
    p = make_params(spec.params, **params)
    return spec.cls(tuple(shape), p, device=torch.device(device) if device else None)


def operator_arrays(op: Any) -> dict:
    """Array-valued parameters of ``op`` (custom kernels, masks) that a spec only fingerprints."""
    import dataclasses

    out = {}
    for f in dataclasses.fields(op.params):
        v = getattr(op.params, f.name)
        if v is not None and hasattr(v, "shape") and hasattr(v, "dtype"):
            out[f.name] = v
    return out


def operator_from_spec(spec: dict, arrays: dict | None = None, *, device: Any = None) -> Any:
    """Rebuild an operator from :meth:`LinearOperator.spec` plus its array parameters.

    The spec is validated like user input: parameters in range and of the right type,
    unknown keys refused, each array parameter checked against its recorded fingerprint, and
    the rebuilt operator's measurement shape compared with the recorded one.

    Raises
    ------
    InputError
        If the spec is malformed, names an unknown operator, or a fingerprinted array is not
        supplied or differs from the one the spec was made with.
    """
    from ..params import from_dict

    if not isinstance(spec, dict):
        raise InputError(f"an operator spec must be a mapping, got {type(spec).__name__}")
    name = spec.get("operator")
    if not isinstance(name, str) or name not in OPERATORS:
        raise InputError(f"spec names unknown operator {name!r}; available: "
                         f"{', '.join(sorted(OPERATORS))}")
    unknown = sorted(set(spec) - {"operator", "shape", "measurement_shape", "params"})
    if unknown:
        raise InputError(f"operator spec has unknown key(s) {', '.join(unknown)}")
    shape = _shape(spec.get("shape"), "shape")
    params = spec.get("params", {})
    p = from_dict(OPERATORS[name].params, params, **dict(arrays or {}))
    op = OPERATORS[name].cls(shape, p, device=torch.device(device) if device else None)
    if spec.get("measurement_shape") is not None:
        stored = _shape(spec["measurement_shape"], "measurement_shape")
        if stored != tuple(op.measurement_shape):
            raise InputError(f"operator spec records measurements of shape {stored} but its "
                             f"parameters give {tuple(op.measurement_shape)}; the spec is "
                             "inconsistent")
    return op


def _shape(v: Any, key: str) -> tuple[int, ...]:
    """A spec's shape entry as a tuple of positive ints, or :class:`InputError`."""
    if not isinstance(v, (list, tuple)) or not v or not all(
            isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in v):
        raise InputError(f"operator spec {key!r} must be a list of positive integers, got {v!r}")
    return tuple(v)
