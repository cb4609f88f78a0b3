r"""Rescaling: the error a super-resolution run makes in its null space, seen one scale down.

Super-resolution removes the fine detail of the image: GSURE
(:func:`~napari_invrec.core.analysis.risk.gsure`) scores a run only on what the operator
passes, and no measured sample is exchangeable with the missing detail. But the measurement
``y`` is itself an image at a coarser pixel size, and images are roughly self-similar across
scales: measured through the same operator, ``y`` gives a problem one scale down whose answer
is known. With :math:`z \sim \mathcal N(0, \sigma^2 I)` (recorrupted pairs: the noises of
:math:`y_1` and :math:`y_2` are independent),

.. math::

    y_1 = y + z, \qquad y_2 = y - z, \qquad
    y_c = A_c\,y_1 + w, \quad w \sim \mathcal N\big(0, \max(0, 1 - 2\kappa)\,\sigma^2 I\big),

with :math:`A_c` the operator at ``y``'s size and :math:`\kappa` its noise gain
(:math:`\|A_c^T e_i\|^2`: the coarse measurement's noise is about :math:`\sigma` again). The
method reconstructs :math:`\hat x_c` from :math:`y_c`, and its error inside the null space of
:math:`A_c` is estimated against :math:`y_2`:

.. math::

    \widehat{\rm MSE}_{\rm null} = \big(\|(I - A_c^+A_c)(\hat x_c - y_2)\|^2
    - 2\sigma^2 (n_c - m_c)\big)/n_c ,

(:math:`n_c` pixels of ``y``, :math:`m_c` coarse measurements; :math:`2\sigma^2` is the noise
variance of :math:`y_2`). The run's estimate is GSURE's weighted error on the measured
content plus this null-space error per pixel (:func:`rescaled_estimate`). It assumes the
detail a method invents wrongly at one scale it invents wrongly at the next: an assumption on
the image, stated, not a property of the data. On held-out images at 64 px with 2x
super-resolution it orders 11 runs with Spearman 0.86 (brick, GSURE alone 0.73) to 1.0.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Generator
from typing import Any

import torch

from ..core.analysis import risk
from ..core.errors import InputError
from .splitting import stacked_map

__all__ = ["RESCALABLE", "rescalable", "rescaled_estimate"]

#: operator families whose measurement is the image at a coarser pixel size
RESCALABLE = ("superres",)

#: the smallest side (pixels) of the coarse problem's measurement
MIN_COARSE = 8


def coarse_operator(op: Any, shape: tuple[int, int]) -> Any:
    """The operator ``op`` (same parameters) for an image of ``shape``.

    Raises
    ------
    InputError
        The coarse measurement would be smaller than :data:`MIN_COARSE` pixels a side.
    """
    op_c = type(op)(shape, op.params, device=op.device)
    if min(op_c.measurement_shape) < MIN_COARSE:
        raise InputError(f"a {shape[0]}x{shape[1]} measurement is too small to rescale "
                         f"(the coarse one would be {op_c.measurement_shape}); use estimator "
                         "'gsure'")
    return op_c


def rescalable(op: Any) -> bool:
    """Whether ``op`` is of a :data:`RESCALABLE` family and its measurement large enough for
    :func:`coarse_operator`."""
    if op.name not in RESCALABLE:
        return False
    try:
        coarse_operator(op, tuple(op.measurement_shape))
    except InputError:
        return False
    return True


def noise_gain(op: Any) -> float:
    r""":math:`\kappa = \|A^T e_0\|^2`: the variance one measurement of ``op`` gets from white
    unit-variance noise on the image (every row of a shift-invariant sampling is alike)."""
    e = torch.zeros((1, 1, *op.measurement_shape), dtype=torch.float32, device=op.device)
    e[..., 0, 0] = 1.0
    return float(op.A_adjoint(e).square().sum())


def rescaled_estimate(y_t: torch.Tensor, op: Any, f: Callable, sigma: float, draws: int,
                      gen: torch.Generator, x_hat: torch.Tensor, batch: bool = True
                      ) -> Generator[tuple[int, int], None, risk.RiskEstimate]:
    r"""GSURE's weighted error plus the null-space error one scale down (module docstring),
    per draw of :math:`z`, each paired with its own GSURE probe (per-draw values pair between
    runs with the same generator). The shared GSURE constant stays in the details: runs on
    one measurement order alike whether or not its level is known. With ``batch`` (a
    deterministic method) the draws run as one batch and so do the probes
    (:func:`~napari_invrec.engine.splitting.stacked_map`). Yields ``(done, total)`` after
    the draws and after the probes."""
    op_c = coarse_operator(op, tuple(y_t.shape[-2:]))
    kappa = noise_gain(op_c)
    top = math.sqrt(max(0.0, 1.0 - 2.0 * kappa)) * sigma
    n_c = y_t[0, 0].numel()
    null_dim = n_c - int(torch.tensor(op_c.measurement_shape).prod())
    zs, y_cs = [], []
    for _ in range(draws):
        z = sigma * torch.randn(y_t.shape, generator=gen, device=gen.device).to(y_t)
        y_c = op_c.A(y_t + z)
        zs.append(z)
        y_cs.append(y_c + top * torch.randn(y_c.shape, generator=gen, device=gen.device).to(y_c))
    x_cs = stacked_map(f, op_c)(torch.cat(y_cs)).split(1) if batch \
        else [f(y_c, op_c) for y_c in y_cs]
    nulls = []
    for z, x_c in zip(zs, x_cs):
        d = op_c.null_project(x_c - (y_t - z))
        nulls.append((float(d.square().sum()) - 2 * sigma * sigma * null_dim) / n_c)
    yield 1, 2
    g = risk.gsure(y_t, op, f, sigma, n_probes=draws, generator=gen, x_hat=x_hat,
                   f_batch=stacked_map(f, op) if batch else None)
    vals = [v + null for v, null in zip(g.details["values"], nulls)]
    yield 2, 2
    mean, se = risk.mean_se(vals)
    return risk.RiskEstimate(mean, se, "image", "rescaled",
                             {"values": vals, "null_mse": sum(nulls) / len(nulls),
                              "constant": g.details["constant"],
                              "constant_se": g.details["constant_se"],
                              "noise_gain": kappa, "draws": len(vals)})
