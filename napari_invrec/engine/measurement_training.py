r"""Training an unrolled network on the user's own measurements, with no image anywhere.

A :class:`MeasurementStack` (e.g. a napari measurement layer, or ``--data
measurements:FILE.npy``) holds the measurements and the operator they were taken through;
:func:`stack_spec` checks a :class:`~.training.TrainSpec` against it (an unrolled network
learning by SSDU or EI) and :func:`measurement_loop` builds the loop: each measurement is
normalised as a run of the network would normalise it (``auto``, :mod:`.normalise`) and the
network learns by :func:`~napari_invrec.core.training.operator_nets.train_from_measurements`;
EI re-measures with the noise std estimated from the measurements (:mod:`.noise_level`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..core.errors import InputError

__all__ = ["MeasurementStack", "stack_spec", "measurement_loop", "ssdu_settings"]


@dataclass
class MeasurementStack:
    """Measurements to learn from without ground truth (e.g. a napari measurement layer).

    Attributes
    ----------
    data
        ``(N, *measurement_shape)`` or one measurement (real, or complex for k-space), in the
        user's units; only read.
    operator
        The spec of the operator they were all taken through (a measurement layer's
        ``metadata["invrec"]["operator"]``).
    arrays
        Its array parameters (a custom mask, a kernel), as beside the spec.
    """

    data: Any
    operator: dict
    arrays: dict = field(default_factory=dict)


def ssdu_settings(spec: Any) -> dict:
    """The SSDU settings of a training spec, named as the trainers take them and as the
    weights record them: loss fraction, splits per step, whole k-space lines or samples."""
    return {"split": spec.split, "masks": spec.masks, "split_lines": spec.split_lines}


def stack_spec(spec: Any, stack: MeasurementStack | None) -> Any:
    """``spec`` checked against a measurement stack (data ``measurements[:LABEL]``, an
    unrolled network learning by SSDU or EI), with the stack's operator recorded in it and
    the network built for its real or complex images."""
    from ..core.operators.registry import OPERATORS
    from ..core.training.operator_nets import SELF_SUPERVISIONS

    is_stack = spec.data == "measurements" or spec.data.startswith("measurements:")
    if is_stack and stack is None:
        raise InputError(f"data {spec.data!r} needs measurements: pick a measurement layer or "
                         "pass a MeasurementStack")
    if stack is None:
        return spec
    if not is_stack:
        raise InputError(f"measurements were given but data is {spec.data!r}; set "
                         "data='measurements'")
    if spec.task != "unrolled" or spec.supervision not in SELF_SUPERVISIONS:
        raise InputError("measurements have no ground truth: train an unrolled network "
                         "(task 'unrolled') from them by ssdu or ei")
    name = (stack.operator or {}).get("operator")
    if name not in OPERATORS:
        raise InputError(f"the measurements' operator {name!r} is unknown; available: "
                         f"{', '.join(sorted(OPERATORS))}")
    kwargs = {"complex_images": bool(OPERATORS[name].complex_image), **spec.arch_kwargs}
    return dataclasses.replace(spec, operator=name, arch_kwargs=kwargs,
                               op_params=dict(stack.operator.get("params") or {}))


def _stack_operator(stack: MeasurementStack, dev: Any) -> Any:
    """The operator of a measurement stack, rebuilt from its spec and arrays (linear only)."""
    from ..core.operators.registry import operator_from_spec

    op = operator_from_spec(stack.operator, stack.arrays, device=dev)
    if not getattr(op, "linear", False):
        raise InputError(f"unrolled networks learn linear operators; {op.name!r} is not linear")
    return op


def _stack_planes(stack: MeasurementStack, op: Any) -> list[np.ndarray]:
    """The measurements of ``stack`` one by one (``(N, *mshape)`` or one), or InputError."""
    data = stack.data
    nd = len(op.measurement_shape)
    if getattr(data, "ndim", 0) == nd:
        return [np.asarray(data)]
    if getattr(data, "ndim", 0) != nd + 1:
        raise InputError(f"{op.name} measurements are {tuple(op.measurement_shape)}; give one "
                         f"or a stack (N, {', '.join(map(str, op.measurement_shape))}), got "
                         f"shape {tuple(getattr(data, 'shape', ()))}")
    return [np.asarray(data[i]) for i in range(data.shape[0])]


def measurement_loop(spec: Any, model: Any, stack: MeasurementStack, dev: Any,
                      common: dict) -> tuple[Any, dict, dict]:
    """The loop of an unrolled network learning from ``stack`` alone (SSDU or EI), on the
    measurements normalised as a run would normalise them."""
    import torch

    from ..core.training.operator_nets import train_from_measurements
    from .noise_level import noise_estimate
    from .normalise import plan_normalisation
    from .runner import prepare_measurement

    op = _stack_operator(stack, dev)
    planes = _stack_planes(stack, op)
    ys, sigmas = [], []
    for i, y in enumerate(planes):
        try:
            y_t = prepare_measurement(y, op)
        except InputError as e:
            raise InputError(f"measurement {i} of the stack: {e}") from None
        ys.append(plan_normalisation(y_t, op, "auto").measurement(y_t, op)[0, 0])
        if spec.supervision == "ei":
            sigmas.append(noise_estimate(y, op)["sigma_normalised"])
    known = [s for s in sigmas if s is not None]
    sigma = float(np.median(known)) if known else float(spec.noise_sigma)
    kw = {k: v for k, v in common.items() if k != "patch"}
    loop = train_from_measurements(model, torch.stack(ys), op, supervision=spec.supervision,
                                   noise_sigma=sigma, **ssdu_settings(spec), **kw)
    extra = {"supervision": spec.supervision, "measurements": len(planes)}
    if spec.supervision == "ssdu":
        extra |= ssdu_settings(spec)
    if spec.supervision == "ei":
        extra["noise_sigma"] = sigma
    return loop, op.spec(), extra
