r"""Total variation by the Chambolle-Pock primal-dual hybrid gradient (PDHG), any linear operator.

The problem of ``tv-fista`` and ``tv-admm``,

.. math::

    \min_x \; \tfrac12 \|A x - y\|^2 + \lambda\, \mathrm{TV}(x)\; [+\, \iota_{x \ge 0}(x)],

written as :math:`\min_x F(Kx) + G(x)` with :math:`K = [A; D]`,
:math:`F(v, q) = \tfrac12\|v - y\|^2 + \lambda \|q\|_{2,1}` and :math:`G = 0` (or the indicator
of :math:`x \ge 0`). PDHG needs only :math:`A`, :math:`A^H`, :math:`D`, :math:`D^H` and the
proximal maps of :math:`G` and of the convex conjugate :math:`F^*`, all closed form:

.. math::

    \mathrm{prox}_{\sigma F^*}(v, q) = \Big(\frac{v - \sigma y}{1 + \sigma},\;
    \frac{q}{\max(1, |q| / \lambda)}\Big),

a scaled shift and a pointwise projection on the ball of radius :math:`\lambda` (complex
gradients: the modulus over real and imaginary parts and both directions).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

from ..errors import DivergenceError, InputError
from ..params import param
from ..state import IterState
from ..tv import grad, grad_adjoint, grad_magnitude, grad_norm_sq
from .classical import check_finite, lipschitz, prepare, rel_change, relative_residual
from .registry import register_method
from .tv import _objective

Tensor = torch.Tensor

__all__ = ["TVPDHGParams", "tv_pdhg"]


@dataclass
class TVPDHGParams:
    r"""TV-regularised least squares solved by Chambolle-Pock PDHG."""

    lam: float = param(0.01, "TV weight lambda", min=0.0, max=1e3, step=0.001)
    iters: int = param(200, "PDHG iterations", min=1, max=100000)
    tau_scale: float = param(1.0, "primal step tau in units of 1/||A||^2 (the dual step sigma "
                             "follows from tau sigma (||A||^2 + 8) = 0.99)", min=1e-4,
                             max=1e4, step=0.1)
    tol: float = param(0.0, "stop when ||x_k - x_{k-1}|| / ||x_{k-1}|| < tol (0 = never)",
                       min=0.0, max=1.0)
    nonneg: bool = param(False, "constrain the image to be non-negative (real images only)")


def _norms(*parts: Tensor) -> Tensor:
    """Per-batch Euclidean norm of the concatenation of ``parts`` (any shapes), ``(B,)``."""
    return sum(torch.linalg.vector_norm(t.flatten(1), dim=1) ** 2 for t in parts).sqrt()


def _relative(num: tuple[Tensor, ...], den: Tensor) -> float:
    """Mean over the batch of ``||num|| / ||den||`` (``den`` floored at 1e-12)."""
    return float((_norms(*num) / _norms(den).clamp_min(1e-12)).mean())


def _check_norm(ax: Tensor, x: Tensor, a2: float, step: int) -> None:
    r"""Raise :class:`DivergenceError` if :math:`\|Ax\| > 1.01\, \|A\|_{est} \|x\|`.

    The Rayleigh quotient of any iterate bounds the true norm from below, so a violation proves
    ``op.norm()`` wrong and the step condition void: PDHG with a too small norm estimate does not
    always overflow; it may stall on a wrong image instead.
    """
    num, den = _norms(ax), _norms(x)
    ratio = float((num / den.clamp_min(1e-30)).max())
    if ratio > 1.01 * math.sqrt(a2):
        raise DivergenceError(f"tv-pdhg stopped at step {step}: ||A x|| / ||x|| = {ratio:.4g} "
                              f"exceeds op.norm() = {math.sqrt(a2):.4g}, so the step sizes are "
                              "too large - check op.norm() (the operator's spectral norm)")


@register_method("tv-pdhg", TVPDHGParams, volumes=True)
@torch.no_grad()
def tv_pdhg(y: Tensor, op: Any, p: TVPDHGParams, *, x0: Tensor | None = None,
            generator: torch.Generator | None = None) -> Iterator[IterState]:
    r"""Total variation by Chambolle-Pock PDHG on :math:`K = [A; D]`, :math:`\theta = 1`.

    .. math::

        v_{k+1} &= \frac{v_k + \sigma (A \bar x_k - y)}{1 + \sigma}, \qquad
        q_{k+1} = P_{|\cdot| \le \lambda}\big(q_k + \sigma D \bar x_k\big), \\
        x_{k+1} &= \mathrm{prox}_{\tau G}\big(x_k - \tau (A^H v_{k+1} + D^H q_{k+1})\big),
        \qquad \bar x_{k+1} = 2 x_{k+1} - x_k,

    with :math:`\tau = \texttt{tau\_scale} / \|A\|^2` and
    :math:`\sigma = 0.99 / (\tau (\|A\|^2 + 8))`, so that
    :math:`\tau \sigma \|K\|^2 \le \tau\sigma(\|A\|^2 + \|D\|^2) < 1` and the iteration
    converges for any ``tau_scale`` (which only sets the speed). Started from :math:`A^H y` (or
    ``x0``) with zero duals; :math:`A \bar x` is formed from :math:`A x` by linearity, so a step
    costs one :math:`A` and one :math:`A^H`.

    Metrics: ``objective`` (mean over the batch), ``residual``, ``rel_change`` and the
    optimality residuals of Goldstein et al., relative to the data,

    .. math::

        \frac{\|x_k - x_{k+1}\| / \tau}{\|A^H y\|}, \qquad
        \frac{\|(w_k - w_{k+1}) / \sigma + K (\bar x_k - x_{k+1})\|}{\|y\|}
        \quad (w = (v, q)),

    as ``primal_residual`` and ``dual_residual``: both vanish exactly at a saddle point.

    Raises
    ------
    DivergenceError
        A non-finite iterate, or an iterate with :math:`\|Ax\| / \|x\|` above ``op.norm()``
        (the norm estimate is wrong, so convergence is not guaranteed).
    """
    lam = float(p.lam)
    if lam < 0:
        raise InputError(f"tv-pdhg lam must be >= 0, got {lam}")
    if p.nonneg and op.complex_image:
        raise InputError("tv-pdhg nonneg applies to real images only; turn it off for "
                         f"the complex operator {op.name!r}")
    if not float(p.tau_scale) > 0:
        raise InputError(f"tv-pdhg tau_scale must be > 0, got {p.tau_scale}")
    y, x0 = prepare(y, op, x0)
    a2 = lipschitz(op, "tv-pdhg")
    tau = float(p.tau_scale) / a2
    sigma = 0.99 / (tau * (a2 + grad_norm_sq(len(op.shape))))
    aty = op.A_adjoint(y)
    x = aty if x0 is None else x0
    if p.nonneg:
        x = x.clamp_min(0.0)
    ax = op.A(x)
    _check_norm(ax, x, a2, 0)
    xb, axb = x, ax
    v = torch.zeros_like(y)
    q = torch.zeros_like(grad(x))
    state = None
    for k in range(1, p.iters + 1):
        dxb = grad(xb)
        v_new = (v + sigma * (axb - y)) / (1.0 + sigma)
        q_new = q + sigma * dxb
        if lam > 0:
            q_new = q_new / (grad_magnitude(q_new) / lam).clamp_min(1.0)
        else:
            q_new = torch.zeros_like(q)
        x_new = x - tau * (op.A_adjoint(v_new) + grad_adjoint(q_new))
        if p.nonneg:
            x_new = x_new.clamp_min(0.0)
        check_finite(x_new, "tv-pdhg", k, "the steps are too large - check op.norm() (the "
                     "operator's spectral norm) or lower tau_scale")
        ax_new = op.A(x_new)
        _check_norm(ax_new, x_new, a2, k)
        dx_new = grad(x_new)
        prim = _relative(((x - x_new) / tau,), aty)
        dual = _relative(((v - v_new) / sigma + axb - ax_new,
                          (q - q_new) / sigma + dxb - dx_new), y)
        obj = _objective(ax_new, y, lam, grad_magnitude(dx_new).flatten(1).sum(1))
        change = rel_change(x_new, x)
        xb, axb = 2.0 * x_new - x, 2.0 * ax_new - ax
        x, ax, v, q = x_new, ax_new, v_new, q_new
        last = k == p.iters or change < p.tol
        state = IterState(k, k if last else p.iters, x, {},
                          {"objective": float(obj.mean()), "residual": relative_residual(ax, y),
                           "rel_change": change, "primal_residual": prim,
                           "dual_residual": dual})
        yield state
        if last:
            break
    return state
