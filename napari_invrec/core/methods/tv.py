r"""Total-variation reconstruction (FISTA, ADMM) and TV-prior Langevin posterior sampling.

The variational methods minimise

.. math::

    F(x) = \tfrac12 \|A x - y\|^2 + \lambda\, \mathrm{TV}(x)

with the isotropic TV of :mod:`napari_invrec.core.tv` (complex images: real and imaginary parts
both enter the gradient magnitude). ``langevin-tv`` samples the posterior
:math:`p(x \mid y) \propto \exp(-U(x))` with
:math:`U(x) = (\tfrac12\|Ax - y\|^2 + \lambda\,\mathrm{TV}_\epsilon(x)) / \sigma^2`, whose mode
is (for :math:`\epsilon \to 0`) the ``tv-fista`` solution at the same :math:`\lambda`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

from ..analysis.stats import Welford
from ..errors import InputError
from ..linalg import bnorm, conjugate_gradient
from ..params import param
from ..state import IterState
from ..tv import (
    grad,
    grad_adjoint,
    grad_magnitude,
    grad_norm_sq,
    grad_sq_magnitude,
    prox_tv,
    shrink,
    tv,
)
from .classical import check_finite, lipschitz, prepare, rel_change, relative_residual
from .registry import register_method

Tensor = torch.Tensor

__all__ = ["tv_fista", "tv_admm", "langevin_tv", "TVFistaParams", "TVADMMParams",
           "LangevinTVParams"]


def _objective(ax: Tensor, y: Tensor, lam: float, tv_x: Tensor) -> Tensor:
    """Per-batch :math:`\\tfrac12\\|Ax-y\\|^2 + \\lambda TV(x)`, shape ``(B,)``."""
    return 0.5 * bnorm(ax - y).flatten() ** 2 + lam * tv_x






# ---------------------------------------------------------------------- FISTA
@dataclass
class TVFistaParams:
    r"""TV-regularised least squares solved by FISTA."""

    lam: float = param(0.01, "TV weight lambda", min=0.0, max=1e3, step=0.001)
    iters: int = param(100, "outer FISTA iterations", min=1, max=100000)
    tol: float = param(0.0, "stop when ||x_k - x_{k-1}|| / ||x_{k-1}|| < tol (0 = never)",
                       min=0.0, max=1.0)
    inner_iters: int = param(20, "dual (FGP) iterations of the TV prox, warm-started",
                             min=1, max=1000)
    nonneg: bool = param(False, "constrain the image to be non-negative (real images only)")


@register_method("tv-fista", TVFistaParams, volumes=True)
@torch.no_grad()
def tv_fista(y: Tensor, op: Any, p: TVFistaParams, *, x0: Tensor | None = None,
             generator: torch.Generator | None = None) -> Iterator[IterState]:
    r"""Total variation by FISTA (accelerated proximal gradient).

    .. math::

        x_{k} = \mathrm{prox}_{s\lambda \mathrm{TV}}\big(z_k - s A^H(A z_k - y)\big), \quad
        t_{k+1} = \tfrac{1 + \sqrt{1 + 4 t_k^2}}{2}, \quad
        z_{k+1} = x_k + \tfrac{t_k - 1}{t_{k+1}} (x_k - x_{k-1}),

    with step :math:`s = 1/\|A\|^2` and the prox computed by warm-started dual FGP
    (:func:`~.tv.prox_tv`). FISTA is not a descent method: the objective decreases overall
    at rate :math:`O(1/k^2)` but may rise slightly on some steps. Started from :math:`A^H y`.
    :math:`A z_k` is formed from :math:`A x_k` by linearity, so each step costs one
    :math:`A` and one :math:`A^H`.
    """
    lam = float(p.lam)
    if p.nonneg and op.complex_image:
        raise InputError("tv-fista nonneg applies to real images only; turn it off for "
                         f"the complex operator {op.name!r}")
    y, x0 = prepare(y, op, x0)
    s = 1.0 / lipschitz(op, "tv-fista")
    x = op.A_adjoint(y) if x0 is None else x0
    if p.nonneg:
        x = x.clamp_min(0.0)
    ax = op.A(x)
    z, az, t, dual = x, ax, 1.0, None
    state = None
    for k in range(1, p.iters + 1):
        x_new, dual = prox_tv(z - s * op.A_adjoint(az - y), s * lam, iters=p.inner_iters,
                              p0=dual, nonneg=bool(p.nonneg))
        check_finite(x_new, "tv-fista", k, "the step 1/||A||^2 is too large - check op.norm() "
                     "(the operator's spectral norm) or lower lam")
        ax_new = op.A(x_new)
        obj = _objective(ax_new, y, lam, tv(x_new))
        t_new = 0.5 * (1.0 + math.sqrt(1.0 + 4.0 * t * t))
        beta = (t - 1.0) / t_new
        z = x_new + beta * (x_new - x)
        az = ax_new + beta * (ax_new - ax)
        change = rel_change(x_new, x)
        x, ax, t = x_new, ax_new, t_new
        last = k == p.iters or change < p.tol
        state = IterState(k, k if last else p.iters, x, {},
                          {"objective": float(obj.mean()), "residual": relative_residual(ax, y),
                           "rel_change": change})
        yield state
        if last:
            break
    return state


# ---------------------------------------------------------------------- ADMM
@dataclass
class TVADMMParams:
    r"""TV-regularised least squares solved by ADMM on :math:`z = D x`."""

    lam: float = param(0.01, "TV weight lambda", min=0.0, max=1e3, step=0.001)
    rho: float = param(0.3, "ADMM penalty rho (convergence speed; the solution does not "
                       "depend on it)", min=1e-6, max=1e6, step=0.1)
    iters: int = param(100, "ADMM iterations", min=1, max=100000)
    cg_iters: int = param(5, "CG iterations of each x-update (warm-started)", min=1, max=1000)
    tol: float = param(0.0, "stop when ||x_k - x_{k-1}|| / ||x_{k-1}|| < tol (0 = never)",
                       min=0.0, max=1.0)


@register_method("tv-admm", TVADMMParams, volumes=True)
@torch.no_grad()
def tv_admm(y: Tensor, op: Any, p: TVADMMParams, *, x0: Tensor | None = None,
            generator: torch.Generator | None = None) -> Iterator[IterState]:
    r"""Total variation by ADMM (scaled form) on the splitting :math:`z = D x`.

    .. math::

        x_{k+1} &= \arg\min_x \tfrac12\|Ax - y\|^2 + \tfrac\rho2 \|Dx - z_k + u_k\|^2
        \;\Leftrightarrow\; (A^H A + \rho D^H D)\, x = A^H y + \rho D^H (z_k - u_k), \\
        z_{k+1} &= \mathrm{shrink}(D x_{k+1} + u_k,\ \lambda / \rho), \qquad
        u_{k+1} = u_k + D x_{k+1} - z_{k+1},

    the :math:`x`-update by ``cg_iters`` CG iterations warm-started at :math:`x_k`, the
    :math:`z`-update by isotropic soft-thresholding. Metrics include the primal residual
    :math:`\|Dx - z\| / \|Dx\|`.
    """
    lam, rho = float(p.lam), float(p.rho)
    if rho <= 0:
        raise InputError(f"tv-admm rho must be > 0, got {rho}")
    y, x0 = prepare(y, op, x0)
    aty = op.A_adjoint(y)
    x = aty if x0 is None else x0
    z = grad(x)
    u = torch.zeros_like(z)

    def normal(v: Tensor) -> Tensor:
        return op.AtA(v) + rho * grad_adjoint(grad(v))

    state = None
    for k in range(1, p.iters + 1):
        x_new = conjugate_gradient(normal, aty + rho * grad_adjoint(z - u), x, tol=1e-7,
                                   maxiter=p.cg_iters)
        check_finite(x_new, "tv-admm", k, "lower rho (or raise cg_iters); check the "
                     "operator's adjoint")
        dx = grad(x_new)
        z = shrink(dx + u, lam / rho)
        u = u + dx - z
        ax = op.A(x_new)
        obj = _objective(ax, y, lam, grad_magnitude(dx).flatten(1).sum(1))
        change = rel_change(x_new, x)
        x = x_new
        last = k == p.iters or change < p.tol
        prim = float((bnorm(dx - z) / bnorm(dx).clamp_min(1e-12)).mean())
        state = IterState(k, k if last else p.iters, x, {},
                          {"objective": float(obj.mean()), "residual": relative_residual(ax, y),
                           "rel_change": change, "primal_residual": prim})
        yield state
        if last:
            break
    return state


# ---------------------------------------------------------------------- Langevin
@dataclass
class LangevinTVParams:
    r"""Unadjusted Langevin sampling of the posterior with a smoothed-TV prior."""

    lam: float = param(0.01, "TV weight lambda (same meaning as in tv-fista)", min=0.0,
                       max=1e3, step=0.001)
    sigma: float = param(0.03, "likelihood noise std sigma", min=1e-6, max=10.0, step=0.005,
                         noise=True)
    eps: float = param(0.01, "TV smoothing epsilon: sqrt(|grad x|^2 + eps^2)", min=1e-6,
                       max=10.0)
    iters: int = param(300, "Langevin steps in all (burn-in included)", min=1, max=100000)
    burn_in: int = param(100, "steps discarded before averaging", min=0, max=100000)
    n_samples: int = param(8, "parallel chains (one batch)", min=1, max=4096)
    step_scale: float = param(0.9, "step as a fraction of 1/L (the gradient's Lipschitz "
                              "constant); < 1 for stability, smaller = less bias", min=1e-6,
                              max=1.0, step=0.05)


def _randn_like(x: Tensor, generator: torch.Generator | None) -> Tensor:
    """Standard normal noise shaped like ``x``; complex: real and imaginary parts each N(0, 1)."""
    dev = generator.device if generator is not None else x.device
    shape = (*x.shape, 2) if x.is_complex() else tuple(x.shape)
    xi = torch.randn(shape, generator=generator, device=dev, dtype=x.real.dtype).to(x.device)
    return torch.view_as_complex(xi) if x.is_complex() else xi


@register_method("langevin-tv", LangevinTVParams, stochastic=True, volumes=True)
@torch.no_grad()
def langevin_tv(y: Tensor, op: Any, p: LangevinTVParams, *, x0: Tensor | None = None,
                generator: torch.Generator | None = None) -> Iterator[IterState]:
    r"""Posterior sampling with a TV prior by the unadjusted Langevin algorithm (ULA).

    .. math::

        x_{k+1} = x_k - \delta \nabla U(x_k) + \sqrt{2\delta}\,\xi_k, \qquad
        \nabla U(x) = \frac{A^H(Ax - y) + \lambda\, D^H\!\big(Dx / \sqrt{|Dx|^2 + \epsilon^2}
        \big)}{\sigma^2},

    with :math:`\delta = s / L`, :math:`L = (\|A\|^2 + 8\lambda/\epsilon)/\sigma^2` and
    :math:`\xi_k \sim \mathcal N(0, I)` per real degree of freedom. ``n_samples`` chains per
    measurement run as one batch, started from :math:`A^H y` (or ``x0``); after ``burn_in``
    steps a :class:`~..analysis.stats.Welford` accumulator takes every chain at every step.

    ULA is biased by its step: on a Gaussian posterior of variance :math:`v` along a
    direction of curvature :math:`1/v`, the chains' variance is :math:`v \cdot 2/(2 - \delta/v)`,
    so lower ``step_scale`` when the likelihood dominates :math:`L` (small ``lam``).

    Yields the running posterior mean (before burn-in: the mean of the current chains) as ``x``
    and ``extras`` ``"std"`` (:math:`\sqrt{E|x - \bar x|^2}`, complex-safe) and ``"samples"``
    (the current chains, ``(B * n_samples, C, H, W)``, image-major).
    """
    lam, sig2, eps = float(p.lam), float(p.sigma) ** 2, float(p.eps)
    n = int(p.n_samples)
    if p.burn_in >= p.iters:
        raise InputError(f"langevin-tv burn_in ({p.burn_in}) must be below iters ({p.iters}); "
                         "raise iters or lower burn_in")
    y, x0 = prepare(y, op, x0)
    b = y.shape[0]
    lip = (lipschitz(op, "langevin-tv") + lam * grad_norm_sq(len(op.shape)) / eps) / sig2
    delta = float(p.step_scale) / lip
    noise_scale = math.sqrt(2.0 * delta)
    start = op.A_adjoint(y) if x0 is None else x0
    yy = y.repeat_interleave(n, dim=0)
    x = start.repeat_interleave(n, dim=0)
    stats = Welford()
    state = None
    for k in range(1, p.iters + 1):
        r = op.A(x) - yy
        gx = grad(x)
        mag = torch.sqrt(grad_sq_magnitude(gx) + eps * eps)
        drift = op.A_adjoint(r) + lam * grad_adjoint(gx / mag)
        potential = (0.5 * bnorm(r) ** 2 + lam * mag.flatten(1).sum(1).view(-1, 1, 1, 1)) / sig2
        x = x - (delta / sig2) * drift + noise_scale * _randn_like(x, generator)
        check_finite(x, "langevin-tv", k, "lower step_scale, or raise eps or sigma")
        chains = x.view(b, n, *x.shape[1:]).transpose(0, 1)  # (n, B, C, H, W)
        if k > p.burn_in:
            stats.update(chains)
            mean, std = stats.mean, stats.std
        else:
            mean = chains.mean(0)
            std = (chains - mean).abs().square().mean(0).sqrt()
        state = IterState(k, p.iters, mean, {"std": std, "samples": x},
                          {"residual": relative_residual(op.A(mean), y),
                           "potential": float(potential.mean())})
        yield state
    return state
