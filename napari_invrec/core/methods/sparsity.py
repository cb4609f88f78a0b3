r"""Wavelet-sparsity reconstruction by FISTA, for any linear operator.

``wavelet-fista`` minimises

.. math::

    F(u) = \tfrac12 \|A P u - y\|^2 + \lambda \|S W u\|_1

over an image :math:`u` on the *padded* domain, where :math:`W` is the orthogonal periodic
DWT of :mod:`..wavelets`, :math:`S` keeps the detail coefficients (the approximation band is
not penalised), :math:`\|c\|_1 = \sum |c_i|` with the complex modulus, and :math:`P` crops
the padded image to the operator's :math:`H \times W`. When :math:`H` and :math:`W` are
multiples of :math:`2^{J}` (``levels`` = :math:`J`) there is no padding and :math:`P = I`;
otherwise the image is extended to the next multiples, the extra rows/columns are free
unknowns that only the sparsity term sees, and the result is :math:`P u`. This keeps
:math:`W` orthogonal on the domain the problem lives on, so the proximal step is exact:

.. math::

    \mathrm{prox}_{t \|S W \cdot\|_1}(v) = W^T \mathrm{soft}_{t}(W v) \quad
    (\text{details only}), \qquad
    \mathrm{soft}_t(c) = c \max(0, 1 - t / |c|).
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
from ..wavelets import approx_shape, check_wavelet, dwt2, idwt2, pad_symmetric, padded_size
from .classical import check_finite, lipschitz, prepare, rel_change, relative_residual
from .registry import register_method

Tensor = torch.Tensor

__all__ = ["WaveletFistaParams", "wavelet_fista", "soft_threshold"]


def soft_threshold(c: Tensor, t: float) -> Tensor:
    r"""Soft-thresholding :math:`c \max(0, 1 - t / |c|)`, the prox of :math:`t\|c\|_1`.

    Complex-safe: shrinks the modulus and keeps the phase.
    """
    return c * (1.0 - t / c.abs().clamp_min(1e-30)).clamp_min(0.0)


@dataclass
class WaveletFistaParams:
    r"""Wavelet-sparsity regularised least squares solved by FISTA."""

    lam: float = param(0.01, "weight lambda of the l1 norm of the wavelet details", min=0.0,
                       max=1e3, step=0.001)
    wavelet: str = param("db2", "orthogonal Daubechies wavelet", choices=("haar", "db2", "db4"))
    levels: int = param(3, "decomposition levels (sides are padded to multiples of 2^levels)",
                        min=1, max=8)
    iters: int = param(100, "FISTA iterations", min=1, max=100000)
    tol: float = param(0.0, "stop when ||x_k - x_{k-1}|| / ||x_{k-1}|| < tol (0 = never)",
                       min=0.0, max=1.0)
    cycle_spin: bool = param(False, "shift the wavelet grid by a random (seeded) offset every "
                             "iteration: sharper, fewer block artefacts, but a heuristic "
                             "(the objective no longer decreases steadily)")


@register_method("wavelet-fista", WaveletFistaParams)
@torch.no_grad()
def wavelet_fista(y: Tensor, op: Any, p: WaveletFistaParams, *, x0: Tensor | None = None,
                  generator: torch.Generator | None = None) -> Iterator[IterState]:
    r"""Wavelet sparsity (l1 of orthogonal wavelet details) by FISTA.

    .. math::

        u_k = W^T \mathrm{soft}_{s\lambda}\!\Big(W\big(z_k - s P^T A^H (A P z_k - y)\big)
        \Big), \quad t_{k+1} = \tfrac{1 + \sqrt{1 + 4 t_k^2}}{2}, \quad
        z_{k+1} = u_k + \tfrac{t_k - 1}{t_{k+1}} (u_k - u_{k-1}),

    with step :math:`s = 1/\|A\|^2` (:math:`\|AP\| \le \|A\|`), the approximation band left
    unthresholded, :math:`P^T` zero-padding. Started from :math:`A^H y` (or ``x0``) extended
    by mirroring. The objective (module docstring; mean over the batch, padded domain) decreases
    at rate :math:`O(1/k^2)`, not monotonically. Yields :math:`x_k = P u_k`.

    ``cycle_spin`` replaces :math:`W` at step :math:`k` by :math:`W T_k` with
    :math:`T_k` a circular shift by offsets drawn uniformly in :math:`[0, 2^J)^2` (fixed
    seed, so runs are reproducible). Averaging over shifts approximates a translation-invariant
    wavelet prior and removes the blocky artefacts of the decimated transform (+0.3 to +2 dB
    on blur, inpaint, MRI and CT at 64 px); the reported objective keeps the unshifted
    :math:`W`, and the iteration no longer minimises one fixed objective.
    """
    lam, levels, wav = float(p.lam), int(p.levels), str(p.wavelet)
    check_wavelet(wav)
    if lam < 0:
        raise InputError(f"wavelet-fista lam must be >= 0, got {lam}")
    if levels < 1:
        raise InputError(f"wavelet-fista levels must be >= 1, got {levels}")
    y, x0 = prepare(y, op, x0)
    h, w = op.shape
    hp, wp = padded_size(h, levels), padded_size(w, levels)
    ha, wa = approx_shape(hp, wp, levels)
    s = 1.0 / lipschitz(op, "wavelet-fista")

    shifts = torch.Generator().manual_seed(0)

    def prox(v: Tensor, t: float) -> Tensor:
        dh, dw = torch.randint(0, 2 ** levels, (2,), generator=shifts).tolist() \
            if p.cycle_spin else (0, 0)
        c = dwt2(v.roll((dh, dw), (-2, -1)), wav, levels)
        approx = c[..., :ha, :wa].clone()
        c = soft_threshold(c, t)
        c[..., :ha, :wa] = approx
        return idwt2(c, wav, levels).roll((-dh, -dw), (-2, -1))

    def l1_details(u: Tensor) -> Tensor:
        c = dwt2(u, wav, levels).abs()
        return c.flatten(1).sum(1) - c[..., :ha, :wa].flatten(1).sum(1)

    def grad_step(z: Tensor, az: Tensor) -> Tensor:
        v = z.clone()
        v[..., :h, :w] -= s * op.A_adjoint(az - y)
        return v

    start = op.A_adjoint(y) if x0 is None else x0
    u = pad_symmetric(start, hp, wp)
    au = op.A(u[..., :h, :w])
    z, az, t = u, au, 1.0
    state = None
    for k in range(1, p.iters + 1):
        u_new = prox(grad_step(z, az), s * lam)
        check_finite(u_new, "wavelet-fista", k, "the step 1/||A||^2 is too large - check "
                     "op.norm() (the operator's spectral norm) or lower lam")
        au_new = op.A(u_new[..., :h, :w])
        obj = 0.5 * bnorm(au_new - y).flatten() ** 2 + lam * l1_details(u_new)
        t_new = 0.5 * (1.0 + math.sqrt(1.0 + 4.0 * t * t))
        beta = (t - 1.0) / t_new
        z = u_new + beta * (u_new - u)
        az = au_new + beta * (au_new - au)
        change = rel_change(u_new[..., :h, :w], u[..., :h, :w])
        u, au, t = u_new, au_new, t_new
        last = k == p.iters or change < p.tol
        state = IterState(k, k if last else p.iters, u[..., :h, :w].contiguous(), {},
                          {"objective": float(obj.mean()), "residual": relative_residual(au, y),
                           "rel_change": change})
        yield state
        if last:
            break
    return state
