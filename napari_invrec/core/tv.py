r"""Discrete gradient, its adjoint, isotropic total variation and its proximal operator.

The gradient uses forward differences with Neumann (replicate) boundaries,

.. math::

    (D x)_{0, i, j} = x_{i+1, j} - x_{i, j}, \qquad (D x)_{1, i, j} = x_{i, j+1} - x_{i, j},

set to zero on the last row / column, so :math:`\|D\|_2^2 \le 8`. Gradients are stored as
``(B, C, 2, H, W)``. The isotropic total variation of a real or complex image is

.. math::

    \mathrm{TV}(x) = \sum_{c, i, j} \sqrt{|(Dx)_{0,c,i,j}|^2 + |(Dx)_{1,c,i,j}|^2},

where :math:`|\cdot|` is the complex modulus (real and imaginary parts both count), and its
smoothed version is :math:`\mathrm{TV}_\epsilon(x) = \sum \sqrt{|Dx|^2 + \epsilon^2}`.

These pieces are shared by the TV-type methods (:mod:`.methods`) and the TV denoiser
(:mod:`.denoisers`), so they live below both; this module imports only torch (an
import-linter contract in ``pyproject.toml`` keeps it so).
"""

from __future__ import annotations

from typing import Any

import torch

Tensor = torch.Tensor

#: Upper bound of :math:`\|D\|_2^2` for the forward-difference gradient in 2-D.
GRAD_NORM_SQ = 8.0


def _grad_shape(x: Tensor) -> tuple[int, ...]:
    return (*x.shape[:-2], 2, *x.shape[-2:])


def grad(x: Tensor, out: Tensor | None = None) -> Tensor:
    """Forward-difference gradient :math:`D x`, ``(B, C, H, W) -> (B, C, 2, H, W)``.

    ``out`` (optional) is a preallocated result buffer.
    """
    g = torch.empty(_grad_shape(x), dtype=x.dtype, device=x.device) if out is None else out
    torch.sub(x[..., 1:, :], x[..., :-1, :], out=g[..., 0, :-1, :])
    g[..., 0, -1, :] = 0
    torch.sub(x[..., :, 1:], x[..., :, :-1], out=g[..., 1, :, :-1])
    g[..., 1, :, -1] = 0
    return g


def grad_adjoint(p: Tensor, out: Tensor | None = None) -> Tensor:
    r"""Adjoint :math:`D^H p = -\mathrm{div}\, p`, ``(B, C, 2, H, W) -> (B, C, H, W)``.

    The last row of ``p[:, :, 0]`` and last column of ``p[:, :, 1]`` are ignored, matching the
    zeros :func:`grad` writes there. ``out`` (optional) is a preallocated result buffer.
    """
    p0 = p[..., 0, :-1, :]
    p1 = p[..., 1, :, :-1]
    if out is None:
        out = p.new_zeros((*p.shape[:-3], *p.shape[-2:]))
    else:
        out.zero_()
    out[..., :-1, :] -= p0
    out[..., 1:, :] += p0
    out[..., :, :-1] -= p1
    out[..., :, 1:] += p1
    return out


def grad_sq_magnitude(g: Tensor) -> Tensor:
    """Pointwise :math:`|g_0|^2 + |g_1|^2` of a gradient field, ``(B, C, 1, H, W)``, real."""
    sq = g.real.square() + g.imag.square() if g.is_complex() else g.square()
    return sq.sum(-3, keepdim=True)


def grad_magnitude(g: Tensor) -> Tensor:
    """Pointwise :math:`\\sqrt{|g_0|^2 + |g_1|^2}` of a gradient field, ``(B, C, 1, H, W)``."""
    # torch.linalg.vector_norm over a middle axis is ~100x slower on CPU than this.
    return grad_sq_magnitude(g).sqrt()


def tv(x: Tensor) -> Tensor:
    r"""Isotropic total variation per batch element, shape ``(B,)``."""
    return grad_magnitude(grad(x)).flatten(1).sum(1)


def tv_smooth_and_grad(x: Tensor, eps: float) -> tuple[Tensor, Tensor]:
    r"""Smoothed TV per batch element and its gradient.

    .. math::

        \mathrm{TV}_\epsilon(x) = \sum \sqrt{|Dx|^2 + \epsilon^2}, \qquad
        \nabla \mathrm{TV}_\epsilon(x) = D^H \frac{Dx}{\sqrt{|Dx|^2 + \epsilon^2}},

    whose gradient is Lipschitz with constant :math:`\|D\|^2 / \epsilon \le 8 / \epsilon`.
    For complex ``x`` the gradient is with respect to the real and imaginary parts, returned
    as one complex tensor.

    Returns
    -------
    value
        ``(B,)``.
    gradient
        Same shape as ``x``.
    """
    g = grad(x)
    mag = torch.sqrt(grad_sq_magnitude(g) + eps * eps)
    return mag.flatten(1).sum(1), grad_adjoint(g / mag)


def shrink(g: Tensor, t: float) -> Tensor:
    r"""Isotropic soft-thresholding :math:`g \max(0, 1 - t / |g|)`.

    The proximal operator of :math:`t \sum_{ij} |g_{ij}|` (the :math:`\ell_{2,1}` norm).
    """
    mag = grad_magnitude(g)
    return g * (1.0 - t / mag.clamp_min(1e-30)).clamp_min(0.0)


def _real_groups(v: Tensor) -> Tensor:
    """``(B, C, H, W)`` real or complex -> real ``(B, C, G, H, W)`` (G = 1, or 2 for re/im)."""
    if v.is_complex():
        return torch.view_as_real(v).movedim(-1, -3).contiguous()
    return v.unsqueeze(-3)


def _from_groups(x: Tensor, complex_out: bool) -> Tensor:
    if complex_out:
        return torch.view_as_complex(x.movedim(-3, -1).contiguous())
    return x.squeeze(-3)


def prox_tv(v: Tensor, lam: float, *, iters: int = 20, p0: Any = None,
            nonneg: bool = False) -> tuple[Tensor, Any]:
    r"""Approximate :math:`\mathrm{prox}_{\lambda \mathrm{TV} + \iota_C}(v)`.

    Solves :math:`\min_x \tfrac12 \|x - v\|^2 + \lambda \mathrm{TV}(x)` (with
    :math:`x \ge 0` if ``nonneg``) by Beck and Teboulle's fast gradient projection (FGP) on
    the dual problem

    .. math::

        \min_{|p_{cij}| \le 1} \; \tfrac12 \|v - \lambda D^H p\|^2, \qquad
        x(p) = P_C(v - \lambda D^H p),

    with projected gradient steps :math:`p \leftarrow P_{|p| \le 1}(p + D x(p) / (8 \lambda))`
    and Nesterov momentum. Running only ``iters`` iterations and warm-starting from the previous
    dual ``p0`` is how FISTA's outer loop uses it.

    Implementation: complex images are split into real and imaginary planes that share one
    dual magnitude, the two gradient directions are kept in separate contiguous buffers, and
    every buffer is reused in place (at 256 x 256 on a CPU, allocation and strided views
    otherwise cost as much as the arithmetic).

    Parameters
    ----------
    v
        Point to denoise, ``(B, C, H, W)``, real or complex.
    lam
        Weight :math:`\lambda \ge 0`.
    iters
        Number of dual iterations.
    p0
        Warm start: the dual returned by a previous call on an image of the same shape and
        dtype (an opaque pair of tensors; not modified).
    nonneg
        Constrain the result to be non-negative (real images only).

    Returns
    -------
    x
        The approximate proximal point, like ``v``.
    p
        The final dual variable (pass it back as ``p0`` next time).
    """
    vr = _real_groups(v)
    if nonneg and v.is_complex():
        raise ValueError("nonneg applies to real images only")
    px, py = (torch.zeros_like(vr), torch.zeros_like(vr)) if p0 is None else \
        (p0[0].clone(), p0[1].clone())
    xb, tmp = torch.empty_like(vr), torch.empty_like(vr)

    def primal(qx: Tensor, qy: Tensor) -> Tensor:
        # v - lam D^H q, using q[..., H-1, :] = 0 = q[..., :, W-1] (kept by every update)
        torch.add(vr, torch.add(qx, qy, out=tmp), alpha=lam, out=xb)
        xb[..., 1:, :].add_(qx[..., :-1, :], alpha=-lam)
        xb[..., :, 1:].add_(qy[..., :, :-1], alpha=-lam)
        return xb.clamp_(min=0.0) if nonneg else xb

    if lam <= 0 or iters <= 0:
        return _from_groups(primal(px, py).clone(), v.is_complex()), (px, py)
    rx, ry = px.clone(), py.clone()
    qx, qy = torch.zeros_like(vr), torch.zeros_like(vr)
    mag = torch.empty_like(vr[..., :1, :, :])
    step = 1.0 / (GRAD_NORM_SQ * lam)
    t = 1.0
    for _ in range(iters):
        x = primal(rx, ry)
        torch.sub(x[..., 1:, :], x[..., :-1, :], out=qx[..., :-1, :])
        torch.sub(x[..., :, 1:], x[..., :, :-1], out=qy[..., :, :-1])
        torch.add(rx, qx, alpha=step, out=qx)
        torch.add(ry, qy, alpha=step, out=qy)
        if vr.shape[-3] == 1:
            torch.mul(qx, qx, out=mag).addcmul_(qy, qy)
        else:
            mag.copy_(qx.square().add_(qy.square()).sum(-3, keepdim=True))
        mag.clamp_(min=1.0).sqrt_()  # clamp before sqrt: same result, fewer slow sqrt inputs
        qx.div_(mag)
        qy.div_(mag)
        t_next = 0.5 * (1.0 + (1.0 + 4.0 * t * t) ** 0.5)
        beta = (t - 1.0) / t_next
        torch.mul(qx, 1.0 + beta, out=rx).add_(px, alpha=-beta)
        torch.mul(qy, 1.0 + beta, out=ry).add_(py, alpha=-beta)
        px, qx = qx, px
        py, qy = qy, py
        t = t_next
    return _from_groups(primal(px, py).clone(), v.is_complex()), (px, py)
