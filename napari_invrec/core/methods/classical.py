r"""Classical linear reconstructions: adjoint, minimum-norm and Tikhonov.

All three are linear in :math:`y`:

* ``adjoint``: :math:`x = A^H y` (zero-filled k-space, back-projection, the measured pixels);
* ``min-norm``: :math:`x = A^+ y`, the least-squares solution of minimum norm, either by the
  operator's pseudo-inverse (closed form where one exists) or by CG on
  :math:`A A^H z = y`, :math:`x = A^H z` (early stopping regularises);
* ``tikhonov``: :math:`x = \arg\min \tfrac12\|Ax - y\|^2 + \tfrac{\lambda}{2}\|x\|^2`, i.e.
  :math:`(A^H A + \lambda I) x = A^H y`, solved by CG.

For operators that are partial isometries (denoise, inpaint, Cartesian MRI) :math:`A^+ = A^H`
and Tikhonov is :math:`A^H y / (1 + \lambda)`: none of them can beat the adjoint there; they
matter for ill-conditioned operators such as blur.

The module also holds the helpers every method shares (:func:`prepare`, :func:`relative_residual`,
:func:`check_finite`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

from ..errors import DivergenceError, InputError
from ..linalg import bnorm, cg_iter
from ..params import param
from ..state import IterState
from .registry import register_method

Tensor = torch.Tensor

__all__ = ["prepare", "relative_residual", "check_finite", "lipschitz", "rel_change",
           "ridge_cg", "adjoint", "min_norm", "tikhonov", "AdjointParams", "MinNormParams",
           "TikhonovParams"]


# ---------------------------------------------------------------------- shared helpers
def prepare(y: Tensor, op: Any, x0: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
    """Validate and cast the measurement (and start image) to the operator's dtype and device.

    ``x0`` of batch 1 is broadcast to the batch of ``y``.

    Raises
    ------
    InputError
        Wrong measurement or start shape, or a measurement with NaN/inf values.
    """
    y = torch.as_tensor(y)
    op.check_measurement(y)
    y = op.as_measurement(y)
    if not bool(torch.isfinite(y).all()):
        raise InputError("the measurement contains NaN/inf values; fill or crop them "
                         "(e.g. np.nan_to_num) before reconstructing")
    if x0 is not None:
        x0 = torch.as_tensor(x0)
        op.check_image(x0)
        x0 = op.as_image(x0)
        if x0.shape[0] not in (1, y.shape[0]):
            raise InputError(f"start image batch {x0.shape[0]} does not match the measurement "
                             f"batch {y.shape[0]}; pass one start image or one per measurement")
        x0 = x0.expand(y.shape[0], *x0.shape[1:]).clone()
    return y, x0


def relative_residual(ax: Tensor, y: Tensor) -> float:
    r"""Mean over the batch of :math:`\|A x - y\| / \|y\|` (given :math:`A x`)."""
    tiny = torch.finfo(ax.real.dtype).tiny
    return float((bnorm(ax - y) / bnorm(y).clamp_min(tiny)).mean())


def lipschitz(op: Any, method: str) -> float:
    """:math:`\\|A\\|^2` (the data term's gradient Lipschitz constant) from ``op.norm()``,
    checked."""
    n = float(op.norm())
    if not math.isfinite(n) or n <= 0:
        raise InputError(f"{method}: operator norm {n} is not a positive number; check the "
                         "operator (an all-zero mask or kernel?)")
    return n * n


def rel_change(new: Tensor, old: Tensor) -> float:
    """Largest per-batch :math:`\\|x_{new} - x_{old}\\| / \\|x_{old}\\|`."""
    return float((bnorm(new - old) / bnorm(old).clamp_min(1e-12)).max())


def check_finite(x: Tensor, method: str, step: int, advice: str) -> None:
    """Raise :class:`DivergenceError` naming ``advice`` if ``x`` has a NaN or inf entry."""
    if not bool(torch.isfinite(x).all()):
        raise DivergenceError(f"{method} diverged at step {step} (non-finite iterate): {advice}")


def _cg_states(name: str, steps: Iterator[Any], total: int, start: Tensor, y: Tensor,
               to_image: Any, op: Any, objective: Any = None) -> Iterator[IterState]:
    """Turn a :func:`cg_iter` stream into :class:`IterState` s and return the last one.

    When CG stops early on its tolerance the last state carries ``total = step``.
    """
    state = None
    for s in steps:
        x = to_image(s.x)
        check_finite(x, name, s.k, "check the operator (its adjoint, op.norm()) or lower iters")
        state = IterState(s.k, s.k if s.last else total, x, {}, _metrics(op, x, y, objective))
        yield state
    if state is None:  # converged before the first iteration (e.g. y == 0)
        x = to_image(start)
        state = IterState(1, 1, x, {}, _metrics(op, x, y, objective))
        yield state
    return state


def _metrics(op: Any, x: Tensor, y: Tensor, objective: Any = None) -> dict[str, float]:
    ax = op.A(x)
    m = {"residual": relative_residual(ax, y)}
    if objective is not None:
        m["objective"] = objective(x, ax)
    return m


# ---------------------------------------------------------------------- adjoint
@dataclass
class AdjointParams:
    """The adjoint has no parameters."""


@register_method("adjoint", AdjointParams, volumes=True)
@torch.no_grad()
def adjoint(y: Tensor, op: Any, p: AdjointParams, *, x0: Tensor | None = None,
            generator: torch.Generator | None = None) -> Iterator[IterState]:
    r"""Adjoint (zero-filled / back-projection): :math:`x = A^H y`, one step."""
    y, _ = prepare(y, op, x0)
    x = op.A_adjoint(y)
    state = IterState(1, 1, x, {}, _metrics(op, x, y))
    yield state
    return state


# ---------------------------------------------------------------------- min-norm
@dataclass
class MinNormParams:
    """Minimum-norm least squares :math:`A^+ y`."""

    mode: str = param("exact", "exact: the operator's pseudo-inverse; cg: CG on A A^H z = y, "
                      "x = A^H z (stopping early regularises)", choices=("exact", "cg"))
    iters: int = param(50, "CG iterations (cg mode)", min=1, max=10000, when={"mode": "cg"})
    tol: float = param(1e-6, "CG stops when ||A x - y|| <= tol ||y||", min=0.0, max=1.0,
                       when={"mode": "cg"})


@register_method("min-norm", MinNormParams, volumes=True)
@torch.no_grad()
def min_norm(y: Tensor, op: Any, p: MinNormParams, *, x0: Tensor | None = None,
             generator: torch.Generator | None = None) -> Iterator[IterState]:
    r"""Minimum-norm solution :math:`A^+ y`.

    ``exact`` calls ``op.A_pinv`` (one step). ``cg`` runs conjugate gradients on the
    measurement-space system :math:`A A^H z = y` and yields :math:`x_k = A^H z_k` each
    iteration; the iterates lie in the row space of :math:`A`, so they converge to
    :math:`A^+ y` when :math:`y` is in the range (and to the min-norm least-squares solution
    otherwise, slowly). ``x0`` is ignored (the row-space start is what makes it min-norm).
    """
    if p.mode not in ("exact", "cg"):
        raise InputError(f"min-norm mode must be 'exact' or 'cg', got {p.mode!r}")
    y, _ = prepare(y, op)
    if p.mode == "exact":
        x = op.A_pinv(y)
        check_finite(x, "min-norm", 1, "the operator's pseudo-inverse failed; try mode='cg'")
        state = IterState(1, 1, x, {}, _metrics(op, x, y))
        yield state
        return state
    steps = cg_iter(lambda z: op.A(op.A_adjoint(z)), y, tol=p.tol, maxiter=p.iters)
    state = yield from _cg_states("min-norm", steps, p.iters, torch.zeros_like(y), y,
                                  op.A_adjoint, op)
    return state


# ---------------------------------------------------------------------- tikhonov
@dataclass
class TikhonovParams:
    r"""Tikhonov (ridge) regularisation :math:`\tfrac12\|Ax-y\|^2 + \tfrac\lambda2\|x\|^2`."""

    lam: float = param(0.01, "regularisation weight lambda", min=0.0, max=1e6, step=0.001)
    iters: int = param(100, "CG iterations", min=1, max=10000)
    tol: float = param(1e-6, "CG relative residual tolerance", min=0.0, max=1.0)


@register_method("tikhonov", TikhonovParams, volumes=True)
@torch.no_grad()
def tikhonov(y: Tensor, op: Any, p: TikhonovParams, *, x0: Tensor | None = None,
             generator: torch.Generator | None = None) -> Iterator[IterState]:
    r"""Tikhonov: CG on :math:`(A^H A + \lambda I) x = A^H y`, one CG iteration per step.

    Objective :math:`\tfrac12\|Ax-y\|^2 + \tfrac\lambda2\|x\|^2` (mean over the batch).
    """
    return (yield from ridge_cg("tikhonov", y, op, float(p.lam), p.iters, p.tol, x0))


def ridge_cg(name: str, y: Tensor, op: Any, lam: float, iters: int, tol: float,
             x0: Tensor | None) -> Iterator[IterState]:
    r"""CG on :math:`(A^H A + \lambda I) x = A^H y` from ``x0`` (or zero), one state per CG
    iteration, objective :math:`\tfrac12\|Ax-y\|^2 + \tfrac\lambda2\|x\|^2` (shared by
    ``tikhonov`` and ``sense-cg``)."""
    if not lam >= 0:
        raise InputError(f"{name} lam must be >= 0, got {lam}")

    def objective(x: Tensor, ax: Tensor) -> float:
        return float((0.5 * bnorm(ax - y) ** 2 + 0.5 * lam * bnorm(x) ** 2).mean())

    y, x0 = prepare(y, op, x0)
    b = op.A_adjoint(y)
    steps = cg_iter(lambda x: op.AtA(x) + lam * x, b, x0, tol=tol, maxiter=iters)
    start = x0 if x0 is not None else torch.zeros_like(b)
    state = yield from _cg_states(name, steps, iters, start, y, lambda x: x, op, objective)
    return state
