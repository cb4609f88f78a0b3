r"""Deconvolution baselines for a known kernel: Richardson-Lucy (with optional TV) and Wiener.

``richardson-lucy`` is the EM algorithm for the Poisson likelihood
:math:`y \sim \mathrm{Poisson}(A x)` with a non-negative :math:`A` (Richardson 1972, Lucy 1974):

.. math::

    x_{k+1} = \frac{x_k}{A^T \mathbb 1 + \mu\, D^T\!\big(D x_k / |D x_k|_\epsilon\big)}
              \odot A^T\!\Big(\frac{y}{A x_k}\Big),

with :math:`\mu = 0` for plain RL. Each step keeps :math:`x \ge 0` and, for plain RL with a
kernel of sum 1 (:math:`A^T \mathbb 1 = \mathbb 1`), the total flux:
:math:`\sum x_{k+1} = \langle A x_k, y / A x_k\rangle = \sum y`. It decreases the
I-divergence :math:`\sum y \log(y / A x) - y + A x`; run long, it fits the noise (the
iterates grow speckled), which is what the TV term of Dey et al. (Microsc. Res. Tech. 2006)
damps: dividing by :math:`1 - \mu\,\mathrm{div}(\nabla x / |\nabla x|)` (here
:math:`D^T = -\mathrm{div}`, :math:`|g|_\epsilon = \sqrt{|g|^2 + \epsilon^2}`). With
:math:`\mu \le 0.2` the denominator stays positive (:math:`|D^T u| \le 4` for
:math:`|u| \le 1`); it is also clamped to ``floor`` for safety.

**Negative measurements.** The Poisson model needs :math:`y \ge 0`, but Gaussian or
Poisson-Gaussian noise on a dark background gives small negative values. They are clamped to
``floor`` (default :math:`10^{-6}`), which biases dark regions up by at most the noise level
(:math:`E\max(n, 0) = \sigma/\sqrt{2\pi}` for a zero background); :math:`A x` is floored the
same way in the ratio.

``wiener`` is the one-step Fourier filter of a circular blur with transfer function :math:`K`,

.. math::

    \hat x = \mathcal F^{-1}\Big(\frac{\overline K}{|K|^2 + \mathrm{nsr}}\,\mathcal F y\Big),

the MMSE linear estimate when the noise-to-signal power ratio is the constant ``nsr`` at every
frequency (it equals Tikhonov with :math:`\lambda = \mathrm{nsr}`, in closed form).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..errors import InputError
from ..fourier import irfft_spatial, rfft_spatial
from ..params import param
from ..state import IterState
from ..tv import grad, grad_adjoint, grad_sq_magnitude, tv
from .classical import check_finite, prepare, relative_residual
from .registry import register_method

Tensor = torch.Tensor

__all__ = ["richardson_lucy", "wiener", "RichardsonLucyParams", "WienerParams"]


# ---------------------------------------------------------------------- Richardson-Lucy
@dataclass
class RichardsonLucyParams:
    r"""Richardson-Lucy (Poisson maximum likelihood), optionally with TV (Dey et al. 2006)."""

    iters: int = param(30, "multiplicative EM iterations", min=1, max=100000)
    tv_lam: float = param(0.0, "TV weight mu (0 = plain RL; keep <= 0.2, typical 0.002-0.02)",
                          min=0.0, max=0.2, step=0.001)
    tv_eps: float = param(1e-3, "TV smoothing epsilon in |grad x| = sqrt(|grad x|^2 + eps^2)",
                          min=1e-8, max=1.0)
    floor: float = param(1e-6, "measurements (and A x) below this are clamped to it",
                         min=1e-12, max=1.0)


def _check_nonnegative_model(op: Any) -> None:
    if op.complex_image or op.complex_measurement:
        raise InputError("richardson-lucy needs a real, non-negative forward model")
    k = getattr(op, "kernel_image", None)
    if k is not None and float(np.min(k())) < 0:
        raise InputError("richardson-lucy needs a non-negative kernel (its multiplicative "
                         "update keeps x >= 0 only then); use wiener or tv-fista instead")


@register_method("richardson-lucy", RichardsonLucyParams, operators=("blur",),
                 likelihood="poisson", volumes=True)
@torch.no_grad()
def richardson_lucy(y: Tensor, op: Any, p: RichardsonLucyParams, *, x0: Tensor | None = None,
                    generator: torch.Generator | None = None) -> Iterator[IterState]:
    r"""Richardson-Lucy: :math:`x \leftarrow x \odot A^T(y / A x) / A^T \mathbb 1`, TV optional.

    Started from :math:`A^T y / A^T \mathbb 1` (floored) unless ``x0`` is given. Metrics:
    ``residual``, ``objective`` (I-divergence :math:`\sum y \log(y/Ax) - y + Ax` of the
    floored data, plus :math:`\mu \mathrm{TV}(x)`) and ``flux`` (:math:`\sum x / \sum y`).
    See the module docstring.
    """
    mu, eps, floor = float(p.tv_lam), float(p.tv_eps), float(p.floor)
    if not (0.0 <= mu <= 0.2 and eps > 0 and floor > 0):
        raise InputError(f"richardson-lucy needs 0 <= tv_lam <= 0.2, tv_eps > 0 and floor > 0; "
                         f"got {mu}, {eps}, {floor}")
    _check_nonnegative_model(op)
    y, x0 = prepare(y, op, x0)
    yc = y.clamp_min(floor)
    norm = op.A_adjoint(torch.ones_like(y))
    if float(norm.min()) <= 0:
        raise InputError("richardson-lucy: some pixels are not seen by any measurement "
                         "(A^T 1 = 0 there)")
    x = (op.A_adjoint(yc) / norm if x0 is None else x0).clamp_min(floor)
    flux_y = yc.flatten(1).sum(1)
    axf = op.A(x).clamp_min(floor)
    state = None
    for k in range(1, p.iters + 1):
        denom = norm
        if mu > 0:
            g = grad(x)
            denom = (norm + mu * grad_adjoint(g / torch.sqrt(grad_sq_magnitude(g) + eps * eps))
                     ).clamp_min(floor)
        x = x * op.A_adjoint(yc / axf) / denom
        check_finite(x, "richardson-lucy", k, "raise floor, or lower tv_lam")
        ax = op.A(x)
        axf = ax.clamp_min(floor)
        idiv = (yc * torch.log(yc / axf) - yc + axf).flatten(1).sum(1) + mu * tv(x)
        state = IterState(k, p.iters, x, {},
                          {"residual": relative_residual(ax, y),
                           "objective": float(idiv.mean()),
                           "flux": float((x.flatten(1).sum(1) / flux_y).mean())})
        yield state
    return state


# ---------------------------------------------------------------------- Wiener
@dataclass
class WienerParams:
    r"""Wiener filter :math:`\overline K / (|K|^2 + \mathrm{nsr})` (one step)."""

    nsr: float = param(1e-2, "noise-to-signal power ratio (0 = the operator's truncated "
                       "pseudo-inverse)", min=0.0, max=1e6, step=0.001)


def _transfer_function(op: Any, like: Tensor) -> Tensor:
    """:math:`K` in ``rfftn`` layout over the spatial axes: the operator's own, else the FFT
    of its impulse response."""
    kf = getattr(op, "transfer_function", None)
    if kf is not None:
        return kf
    delta = torch.zeros((1, 1, *op.shape), dtype=like.dtype, device=like.device)
    delta[(0, 0) + (0,) * len(op.shape)] = 1.0
    return rfft_spatial(op.A(delta), len(op.shape))[0, 0]


@register_method("wiener", WienerParams, operators=("blur",), volumes=True)
@torch.no_grad()
def wiener(y: Tensor, op: Any, p: WienerParams, *, x0: Tensor | None = None,
           generator: torch.Generator | None = None) -> Iterator[IterState]:
    r"""Wiener deconvolution :math:`\mathcal F^{-1}(\overline K \mathcal F y / (|K|^2 +
    \mathrm{nsr}))`, one step; ``nsr = 0`` uses the operator's pseudo-inverse instead of
    dividing by zero where :math:`K` vanishes. ``x0`` is ignored."""
    nsr = float(p.nsr)
    if not nsr >= 0:
        raise InputError(f"wiener nsr must be >= 0, got {nsr}")
    y, _ = prepare(y, op)
    if nsr == 0:
        x = op.A_pinv(y)
    else:
        kf = _transfer_function(op, y)
        filt = kf.conj() / (kf.real ** 2 + kf.imag ** 2 + nsr)
        x = irfft_spatial(rfft_spatial(y, len(op.shape)) * filt, tuple(op.shape))
    check_finite(x, "wiener", 1, "raise nsr")
    state = IterState(1, 1, x, {}, {"residual": relative_residual(op.A(x), y)})
    yield state
    return state
