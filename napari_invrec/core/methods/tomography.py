r"""Classical tomography: filtered back-projection (FBP) and SIRT, for the ``ct`` operator.

FBP inverts the continuous Radon transform,

.. math::

    f(x) = \int_0^\pi q_\theta(x\cos\theta + y\sin\theta)\,d\theta, \qquad
    q_\theta = p_\theta * r,

with :math:`r` the ramp filter (:math:`|\nu|` in Fourier). Discretely the ramp is the
band-limited Ram-Lak kernel sampled on the bins (spacing :math:`\Delta`),
:math:`r_0 = 1/(4\Delta^2)`, :math:`r_n = -1/(\pi n \Delta)^2` for odd :math:`n`, 0 for even
:math:`n` (its DC response is exact, unlike sampling :math:`|\nu|`), applied by zero-padded FFT
along the detector axis and optionally apodised by a Hann window
:math:`\tfrac12(1 + \cos 2\pi\nu\Delta)`. The integral over angles is the operator's own
back-projection :math:`A^T` (see :mod:`..operators.ct`), whose weights carry a factor
:math:`h^2/\Delta` (:math:`h` the pixel size, :math:`\Delta` the bin width), so it is
weighted by :math:`\Delta\theta\,\Delta / h^2`, times :math:`\pi/\Theta` when the range
:math:`\Theta` exceeds 180° (each line is then seen more than once). Below 180° nothing
compensates the missing wedge.

SIRT (simultaneous iterative reconstruction technique) iterates

.. math::

    x_{k+1} = P\big(x_k + C A^T R\,(y - A x_k)\big), \qquad
    R = \mathrm{diag}(1 / A\mathbf 1), \quad C = \mathrm{diag}(1 / A^T \mathbf 1),

(zero where a row or column sum vanishes) with :math:`P` the clamp to :math:`x \ge 0` when
``nonneg`` is set. It is a gradient step on :math:`\tfrac12\|Ax - y\|_R^2` preconditioned by
:math:`C`; for a non-negative :math:`A` the row/column-sum bound gives
:math:`\|C^{1/2} A^T R A\, C^{1/2}\| \le 1`, so the unit step is short enough for this
weighted objective (the ``objective`` metric) to decrease monotonically, with or without the
clamp (a diagonal metric keeps the projection a clamp).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

from ..errors import InputError
from ..linalg import bnorm
from ..params import param
from ..state import IterState
from .classical import check_finite, prepare, relative_residual
from .registry import register_method

Tensor = torch.Tensor
FILTERS = ("ram-lak", "hann")

__all__ = ["fbp", "sirt", "ramp_filter", "FBPParams", "SIRTParams"]


def ramp_filter(n: int, spacing: float, window: str = "ram-lak", *,
                device: Any = None) -> tuple[Tensor, int]:
    """Real frequency response of the Ram-Lak ramp (optionally Hann-windowed), rfft layout.

    Parameters
    ----------
    n
        Number of detector bins; the filter is built for a zero-padded length
        ``P = 2**ceil(log2(2 n))`` (no circular wrap-around).
    spacing
        Bin spacing :math:`\\Delta`.
    window
        ``"ram-lak"`` (none) or ``"hann"``.

    Returns
    -------
    (Tensor, int)
        The response, float32 of length ``P // 2 + 1`` (multiplies ``rfft(p, n=P)``; includes
        the convolution's factor :math:`\\Delta`), and ``P``.
    """
    if window not in FILTERS:
        raise InputError(f"unknown filter {window!r}; choose one of {FILTERS}")
    size = 2 ** int(math.ceil(math.log2(max(2 * n, 2))))
    k = torch.arange(size, dtype=torch.float64)
    k = torch.where(k < size // 2, k, k - size)  # circular lags -P/2 .. P/2-1
    kern = torch.zeros(size, dtype=torch.float64)
    kern[k == 0] = 1.0 / (4.0 * spacing ** 2)
    odd = (k.remainder(2) == 1)
    kern[odd] = -1.0 / (math.pi * k[odd] * spacing) ** 2
    resp = torch.fft.rfft(kern).real * spacing
    if window == "hann":
        nu = torch.arange(size // 2 + 1, dtype=torch.float64) / size  # cycles per bin
        resp = resp * 0.5 * (1.0 + torch.cos(2.0 * math.pi * nu))
    return resp.to(device=device, dtype=torch.float32), size


def _check_ct(op: Any, method: str) -> None:
    if getattr(op, "name", None) != "ct":
        raise InputError(f"{method} needs the 'ct' operator, got {getattr(op, 'name', op)!r}")


def _metrics(op: Any, x: Tensor, y: Tensor) -> dict[str, float]:
    return {"residual": relative_residual(op.A(x), y)}


# ---------------------------------------------------------------------- FBP
@dataclass
class FBPParams:
    """Filtered back-projection."""

    filter: str = param("ram-lak", "ramp filter window (hann: smoother, less noise)",
                        choices=FILTERS)


@register_method("fbp", FBPParams, operators=("ct",))
@torch.no_grad()
def fbp(y: Tensor, op: Any, p: FBPParams, *, x0: Tensor | None = None,
        generator: torch.Generator | None = None) -> Iterator[IterState]:
    r"""Filtered back-projection: ramp-filter each projection, back-project; one step.

    .. math::

        x = \frac{\Delta\theta\,\Delta}{h^2}\,\min\!\big(1, \tfrac{\pi}{\Theta}\big)\,
            A^T\big(\mathcal F^{-1}(R \odot \mathcal F p)\big)

    with :math:`R` from :func:`ramp_filter` (spacing :math:`\Delta`, the bin width) along the
    detector axis, :math:`h` the pixel size and :math:`\Delta\theta = \Theta / N_\theta`.
    """
    _check_ct(op, "fbp")
    y, _ = prepare(y, op, x0)
    nd = y.shape[-1]
    h, delta = float(op.pixel_size), float(op.bin_width)
    resp, size = ramp_filter(nd, delta, p.filter, device=y.device)
    q = torch.fft.irfft(torch.fft.rfft(y, n=size) * resp, n=size)[..., :nd]
    theta_range = math.radians(float(op.params.angle_range))
    # A^T carries the weight h / d = h^2 / delta: undo it, integrate over the angles
    scale = theta_range / y.shape[-2] * delta / h ** 2 * min(1.0, math.pi / theta_range)
    x = op.A_adjoint(q.contiguous()) * scale
    check_finite(x, "fbp", 1, "check the sinogram")
    state = IterState(1, 1, x, {}, _metrics(op, x, y))
    yield state
    return state


# ---------------------------------------------------------------------- SIRT
@dataclass
class SIRTParams:
    """Simultaneous iterative reconstruction technique."""

    iters: int = param(100, "iterations", min=1, max=100000)
    nonneg: bool = param(True, "clamp the image to x >= 0 after every step")
    tol: float = param(0.0, "stop when ||x_k - x_{k-1}|| / max(||x_k||, ||x_{k-1}||) < tol "
                       "(0 = never)", min=0.0, max=1.0)


@register_method("sirt", SIRTParams, operators=("ct",))
@torch.no_grad()
def sirt(y: Tensor, op: Any, p: SIRTParams, *, x0: Tensor | None = None,
         generator: torch.Generator | None = None) -> Iterator[IterState]:
    r"""SIRT: :math:`x \leftarrow P(x + C A^T R (y - A x))`, one iteration per step.

    Starts from zero (or ``x0``). Metrics: ``objective``
    :math:`\tfrac12 \|R^{1/2}(Ax - y)\|^2` (mean over the batch), ``residual``, ``rel_change``.
    """
    _check_ct(op, "sirt")
    y, x0 = prepare(y, op, x0)
    shape = (1, 1, *op.shape)
    rows = op.A(torch.ones(shape, device=y.device))
    cols = op.A_adjoint(torch.ones((1, 1, *op.measurement_shape), device=y.device))
    tiny = 1e-12
    r = torch.where(rows > tiny, 1.0 / rows.clamp_min(tiny), torch.zeros_like(rows))
    c = torch.where(cols > tiny, 1.0 / cols.clamp_min(tiny), torch.zeros_like(cols))
    x = torch.zeros((y.shape[0], y.shape[1], *op.shape), device=y.device) if x0 is None else x0
    if p.nonneg:
        x = x.clamp_min(0.0)
    ax = op.A(x)
    state = None
    for k in range(1, p.iters + 1):
        x_new = x + c * op.A_adjoint(r * (y - ax))
        if p.nonneg:
            x_new = x_new.clamp_min(0.0)
        check_finite(x_new, "sirt", k, "check the operator (a negative or zero-sum matrix?)")
        ax = op.A(x_new)
        res = ax - y
        obj = float((0.5 * (r * res * res).flatten(1).sum(1)).mean())
        denom = torch.maximum(bnorm(x), bnorm(x_new)).clamp_min(1e-12)
        change = float((bnorm(x_new - x) / denom).max())
        x = x_new
        last = k == p.iters or change < p.tol
        state = IterState(k, k if last else p.iters, x, {},
                          {"objective": obj, "residual": relative_residual(ax, y),
                           "rel_change": change})
        yield state
        if last:
            break
    return state
