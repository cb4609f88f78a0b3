"""Registry of operator families: name -> class, params dataclass and description."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
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


def make_operator(name: str, shape: tuple[int, ...], *, device: Any = None,
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


def operator_from_spec(spec: dict, arrays: dict | None = None, *, device: Any = None,
                       measurement: Any = None) -> Any:
    """Rebuild an operator from :meth:`LinearOperator.spec` plus its array parameters.

    The spec is validated like user input: parameters in range and of the right type,
    unknown keys refused, each array parameter checked against its recorded fingerprint, and
    the rebuilt operator's measurement shape compared with the recorded one.

    Parameters
    ----------
    spec
        The spec (:meth:`ForwardOperator.spec`, or :func:`measurement_spec` for real data).
    arrays
        Array parameters the spec fingerprints (custom mask, kernel...).
    device
        Torch device of the operator.
    measurement
        A real measurement (numpy, one measurement of the spec's ``measurement_shape``). Array
        parameters the family derives from a measurement
        (:meth:`~.base.ForwardOperator.arrays_from_measurement`, e.g. coil maps with
        ``coil_maps="estimated"``) that the spec records as ``None`` and ``arrays`` does not
        supply are derived from it. Without it they stay ``None`` (and a family that needs
        them says so).

    Raises
    ------
    InputError
        If the spec is malformed, names an unknown operator, or a fingerprinted array is not
        supplied or differs from the one the spec was made with.
    """
    import dataclasses

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
    if measurement is not None:
        y = np.asarray(measurement)
        stored = spec.get("measurement_shape")
        if stored is not None and tuple(y.shape) != _shape(stored, "measurement_shape"):
            raise InputError(f"the measurement has shape {tuple(y.shape)} but the operator "
                             f"spec is for measurements of shape {tuple(stored)}")
        y = y if y.flags.writeable else y.copy()  # e.g. a read-only memory map
        derived = {k: v for k, v in OPERATORS[name].cls.arrays_from_measurement(p, y).items()
                   if k not in (arrays or {})}
        p = dataclasses.replace(p, **derived)
    op = OPERATORS[name].cls(shape, p, device=torch.device(device) if device else None)
    if spec.get("measurement_shape") is not None:
        stored = _shape(spec["measurement_shape"], "measurement_shape")
        if stored != tuple(op.measurement_shape):
            raise InputError(f"operator spec records measurements of shape {stored} but its "
                             f"parameters give {tuple(op.measurement_shape)}; the spec is "
                             "inconsistent")
    return op


def measurement_spec(name: str, measurement_shape: tuple[int, ...],
                     **params: Any) -> dict:
    """The spec of operator ``name`` for real measurements of ``measurement_shape``.

    For data read from a file: the image shape is inferred from the measurement shape
    (:meth:`~.base.ForwardOperator.image_shape_for`) and the parameters are validated like user
    input. Array parameters given in ``params`` (e.g. the file's ``mask_array``) are
    fingerprinted as in :meth:`~.base.ForwardOperator.spec` (keep them beside the spec); those
    not given are recorded as ``None``: the ones the family derives from a measurement
    (:meth:`~.base.ForwardOperator.arrays_from_measurement`, e.g. coil maps with
    ``coil_maps="estimated"``) are derived from each measurement when the operator is rebuilt
    with :func:`operator_from_spec` ``(..., measurement=y)``.

    The operator itself is not built here: that would need those arrays, i.e. a measurement
    (estimating coil maps for a 15-coil 640 x 368 slice takes about a second). Whether the
    spec fits a measurement is checked when it is rebuilt (``measurement_shape`` included).

    Raises
    ------
    InputError
        Unknown operator or parameter, a parameter out of range, or a measurement shape the
        family cannot use.
    """
    from ..params import to_dict

    if name not in OPERATORS:
        raise InputError(f"unknown operator {name!r}; available: {', '.join(sorted(OPERATORS))}")
    cls = OPERATORS[name].cls
    mshape = tuple(int(n) for n in measurement_shape)
    p = make_params(cls.Params, **params)
    ndims = cls.measurement_ndims(p)
    if len(mshape) not in ndims or min(mshape) < 1:
        raise InputError(f"{name} measurements are {' or '.join(map(str, ndims))}-D, got "
                         f"shape {mshape}")
    return {"operator": name, "shape": list(cls.image_shape_for(mshape, p)),
            "measurement_shape": list(mshape), "params": to_dict(p)}


def _shape(v: Any, key: str) -> tuple[int, ...]:
    """A spec's shape entry as a tuple of positive ints, or :class:`InputError`."""
    if not isinstance(v, (list, tuple)) or not v or not all(
            isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in v):
        raise InputError(f"operator spec {key!r} must be a list of positive integers, got {v!r}")
    return tuple(v)
