"""Small batched linear-algebra routines shared by operators and methods.

All routines treat the leading axis as a batch: inner products are taken over
``(C, H, W)`` separately for each batch element, so N posterior samples or N images
converge independently in one call. Complex tensors use the Hermitian inner product
``<u, v> = sum(conj(u) * v)``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch

from .cancel import cancel_point

Tensor = torch.Tensor


def bdot(u: Tensor, v: Tensor) -> Tensor:
    """Real part of the per-batch inner product, shape ``(B, 1, 1, 1)``."""
    prod = torch.conj(u) * v if u.is_complex() else u * v
    return prod.real.flatten(1).sum(1).view(-1, *([1] * (u.dim() - 1)))


def bnorm(u: Tensor) -> Tensor:
    """Per-batch Euclidean norm, shape ``(B, 1, 1, 1)``."""
    return bdot(u, u).clamp_min(0).sqrt()


@dataclass
class CGStep:
    """One conjugate-gradient iteration.

    Attributes
    ----------
    k
        1-based iteration number.
    x, r
        Iterate and (recursively updated) residual :math:`b - M x`.
    rel_residual
        :math:`\\|r\\| / \\|b\\|` per batch element, ``(B, 1, 1, 1)``.
    last
        No further iteration follows (converged or ``maxiter`` reached).
    """

    k: int
    x: Tensor
    r: Tensor
    rel_residual: Tensor
    last: bool


def cg_iter(
    apply: Callable[[Tensor], Tensor],
    b: Tensor,
    x0: Tensor | None = None,
    *,
    tol: float = 1e-6,
    maxiter: int = 100,
) -> Iterator[CGStep]:
    r"""Conjugate gradients for :math:`M x = b`, ``M`` Hermitian PSD, yielding every iteration.

    Iterates until every batch element has ``||r|| <= tol * ||b||`` or ``maxiter`` iterations
    (so it yields nothing if ``x0`` already solves the system); the final step has
    ``last=True``. Each yielded :class:`CGStep` holds fresh tensors, safe to keep. Batch
    elements run in lockstep, but an element that has met the tolerance is frozen
    (``alpha = 0`` from then on, as where ``p^H M p = 0``), so each element's final iterate is
    the one it would reach solved alone.

    Started from zero on normal equations :math:`A^H A x = A^H y` the iterates stay in the
    range of :math:`A^H`, so CG converges to the minimum-norm least-squares solution.
    """
    tiny = torch.finfo(b.real.dtype).tiny
    x = torch.zeros_like(b) if x0 is None else x0.clone()
    r = b - apply(x) if x0 is not None else b.clone()
    p = r.clone()
    rs = bdot(r, r)
    bn = bnorm(b).clamp_min(tiny)
    done = bool((rs.sqrt() <= tol * bn).all())
    k = 0
    while not done and k < maxiter:
        active = rs.sqrt() > tol * bn  # converged elements stay where they stopped
        mp = apply(p)
        denom = bdot(p, mp)
        alpha = torch.where(active & (denom > 0), rs / denom.clamp_min(tiny),
                            torch.zeros_like(rs))
        x = x + alpha * p
        r = r - alpha * mp
        rs_new = bdot(r, r)
        beta = torch.where(rs > 0, rs_new / rs.clamp_min(tiny), torch.zeros_like(rs))
        p = torch.where(active, r + beta * p, p)
        rs = rs_new
        k += 1
        done = bool((rs.sqrt() <= tol * bn).all())
        yield CGStep(k, x, r, rs.sqrt() / bn, done or k == maxiter)


def conjugate_gradient(
    apply: Callable[[Tensor], Tensor],
    b: Tensor,
    x0: Tensor | None = None,
    *,
    tol: float = 1e-6,
    maxiter: int = 100,
) -> Tensor:
    r"""Solve :math:`M x = b` for a Hermitian positive semi-definite ``M`` by conjugate gradients.

    Drains :func:`cg_iter`. Started from zero on normal equations :math:`A^H A x = A^H y` the
    iterates stay in the range of :math:`A^H`, so CG converges to the minimum-norm
    least-squares solution.

    Parameters
    ----------
    apply
        ``x -> M x``.
    b
        Right-hand side, ``(B, ...)``.
    x0
        Start (zeros by default).
    tol
        Stop when every batch element has ``||r|| <= tol * ||b||``.
    maxiter
        Iteration cap.
    """
    x = torch.zeros_like(b) if x0 is None else x0.clone()
    for step in cg_iter(apply, b, x0, tol=tol, maxiter=maxiter):
        cancel_point()
        x = step.x
    return x


def power_iteration(
    apply: Callable[[Tensor], Tensor], x0: Tensor, *, iters: int = 50, tol: float = 1e-6
) -> float:
    """Largest eigenvalue of a Hermitian PSD map ``apply`` by power iteration from ``x0``."""
    x = x0 / bnorm(x0).clamp_min(1e-30)
    lam = 0.0
    for _ in range(iters):
        cancel_point()
        z = apply(x)
        new = float(bnorm(z).max())
        x = z / bnorm(z).clamp_min(1e-30)
        if lam > 0 and abs(new - lam) <= tol * lam:
            lam = new
            break
        lam = new
    return lam


def is_projection(op: Any, like: Tensor) -> bool:
    r"""Whether :math:`P = A^H A` is an orthogonal projection (:math:`P^2 = P`).

    Checked on one random probe: for Hermitian PSD :math:`P` with eigenpairs
    :math:`(\mu_i, v_i)`, :math:`P^2 z - P z = \sum_i c_i(\mu_i^2 - \mu_i) v_i` vanishes for a
    generic :math:`z` only if every :math:`\mu_i \in \{0, 1\}`.
    """
    g = torch.Generator().manual_seed(1234)
    z = torch.randn(like.shape[1:], generator=g).unsqueeze(0).to(like.device)
    z = z.to(like.dtype)
    pz = op.AtA(z)
    npz = float(bnorm(pz).max())
    return npz > 0 and float(bnorm(op.AtA(pz) - pz).max()) <= 1e-4 * npz


def normal_solver(op: Any, like: Tensor, cg_iters: int
                  ) -> Callable[[Tensor, float, Tensor], Tensor]:
    r"""``solve(b, rho, x_start)`` for :math:`(A^H A + \rho I) x = b`.

    Closed form via ``op.solve_normal(b, rho)`` if the operator has it, or
    :math:`x = Pb/(1 + \rho) + (b - Pb)/\rho` when :math:`P = A^H A` is a projection (the
    form :math:`(b - Pb/(1+\rho))/\rho` loses :math:`\log_{10}(1/\rho)` digits of ``b``'s
    measured part in float32); otherwise
    ``cg_iters`` CG iterations warm-started at ``x_start``.
    """
    if callable(getattr(op, "solve_normal", None)):
        return lambda b, rho, x: op.solve_normal(b, rho)
    if is_projection(op, like):
        def projected(b: Tensor, rho: float, x: Tensor) -> Tensor:
            pb = op.AtA(b)  # P/(1 + rho) + (I - P)/rho: no cancellation for a small rho
            return pb / (1.0 + rho) + (b - pb) / rho
        return projected
    return lambda b, rho, x: conjugate_gradient(lambda v: op.AtA(v) + rho * v, b, x,
                                                tol=1e-6, maxiter=cg_iters)
