"""The noise level of a measurement, in its own units and in the units methods run in.

:func:`noise_estimate` is what the Reconstruct dock shows next to the method parameters that
need a noise level (and fills them with), and what :func:`napari_invrec.api.estimate_noise`
returns. The estimate itself is :func:`napari_invrec.core.analysis.noise.estimate_noise_sigma`;
for real measurements only pixels the operator measures count (:math:`A\\mathbf 1 \\ne 0`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from ..core.analysis.noise import estimate_noise_sigma
from .normalise import plan_normalisation
from .runner import prepare_measurement

__all__ = ["noise_estimate", "noise_fields", "noise_values", "run_units_level"]


def noise_fields(params_cls: type) -> list[str]:
    """Names of the fields of a method's params class that are the measurement's noise std
    (declared with ``param(..., noise=True)``)."""
    return [f.name for f in dataclasses.fields(params_cls) if f.metadata.get("noise")]


def noise_values(params_cls: type, sigma: float) -> dict:
    """``{field: sigma}`` for each noise-level field of ``params_cls`` (:func:`noise_fields`),
    ``sigma`` clipped to the field's bounds: what the GUI fills in and "best for this data"
    runs its candidates with."""
    fields = {f.name: f for f in dataclasses.fields(params_cls)}
    values = {}
    for name in noise_fields(params_cls):
        lo, hi = fields[name].metadata.get("min"), fields[name].metadata.get("max")
        v = float(sigma) if lo is None else max(float(sigma), float(lo))
        values[name] = v if hi is None else min(v, float(hi))
    return values


def run_units_level(y: Any, op: Any, sigma: float, mode: str = "auto") -> float:
    """The noise std ``sigma`` of measurement ``y`` (in ``y``'s units) in the units a run in
    normalisation ``mode`` works in (what noise-level parameters expect)."""
    return float(sigma) / plan_normalisation(prepare_measurement(y, op), op, mode).scale


def noise_estimate(y: Any, op: Any, mode: str = "auto") -> dict:
    """``{"sigma", "sigma_normalised", "scale", "offset", "applied"}`` for measurement ``y``.

    ``sigma`` is in ``y``'s units; ``sigma_normalised`` = ``sigma / scale`` of the run's
    normalisation in ``mode`` (what noise-level parameters expect). ``None`` when the
    measurement allows no estimate (e.g. a 1-D compressed-sensing vector).
    """
    y_t = prepare_measurement(y, op)
    norm = plan_normalisation(y_t, op, mode)
    y_np = y_t[0, 0].cpu().numpy()
    valid = None
    if not y_t.is_complex() and getattr(op, "linear", False):
        with torch.no_grad():
            ones = torch.ones((1, 1, *op.shape), dtype=op.image_dtype, device=op.device)
            a1 = op.A(ones)
        if tuple(a1.shape[2:]) == tuple(y_np.shape):
            valid = (a1[0, 0].abs() > 1e-6).cpu().numpy()
    sigma = estimate_noise_sigma(y_np, valid)
    return {"sigma": sigma, "sigma_normalised": None if sigma is None else sigma / norm.scale,
            "scale": norm.scale, "offset": norm.offset, "applied": norm.applied}
