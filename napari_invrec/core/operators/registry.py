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

    Raises
    ------
    InputError
        If the spec names an unknown operator or a fingerprinted array is not supplied.
    """
    from ..params import from_dict

    name = spec.get("operator")
    if name not in OPERATORS:
        raise InputError(f"spec names unknown operator {name!r}")
    arrays = dict(arrays or {})
    missing = [k for k, v in spec.get("params", {}).items()
               if isinstance(v, dict) and "sha256" in v and k not in arrays]
    if missing:
        raise InputError(f"operator spec needs the array(s) {', '.join(missing)}, which are "
                         "stored beside it (layer metadata 'arrays' or the sidecar .npz)")
    p = from_dict(OPERATORS[name].params, spec.get("params", {}), **arrays)
    return OPERATORS[name].cls(tuple(spec["shape"]), p,
                               device=torch.device(device) if device else None)
