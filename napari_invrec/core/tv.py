r"""Discrete gradient, its adjoint, isotropic total variation and its proximal operator.

Images are ``(B, C, *spatial)`` tensors with two (``H, W``) or three (``D, H, W``) spatial
axes. The gradient uses forward differences with Neumann (replicate) boundaries, along each
spatial axis :math:`a`,

.. math::

    (D x)_{a, \mathbf i} = x_{\mathbf i + e_a} - x_{\mathbf i},

set to zero on the last slice along :math:`a`, so :math:`\|D\|_2^2 \le 4 n` for :math:`n`
spatial axes (8 in 2-D, 12 in 3-D). Gradients are stored as ``(B, C, n, *spatial)``. The
isotropic total variation of a real or complex image is

.. math::

    \mathrm{TV}(x) = \sum_{c, \mathbf i} \sqrt{\textstyle\sum_a |(Dx)_{a,c,\mathbf i}|^2},

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

def grad_norm_sq(ndim: int) -> float:
    r"""Upper bound :math:`4 n` of :math:`\|D\|_2^2` for images of ``n = ndim`` spatial axes."""
    return 4.0 * ndim


def _axes(x: Tensor) -> range:
    """Tensor dimensions of the spatial axes of an image ``(B, C, *spatial)``."""
    return range(2, x.dim())


def grad(x: Tensor, out: Tensor | None = None) -> Tensor:
    """Forward-difference gradient :math:`D x`, ``(B, C, *spatial) -> (B, C, n, *spatial)``.

    ``out`` (optional) is a preallocated result buffer.
    """
    n = x.dim() - 2
    g = torch.empty((*x.shape[:2], n, *x.shape[2:]), dtype=x.dtype, device=x.device) \
        if out is None else out
    for a, d in enumerate(_axes(x)):
        m = x.shape[d] - 1
        ga = g[:, :, a]
        torch.sub(x.narrow(d, 1, m), x.narrow(d, 0, m), out=ga.narrow(d, 0, m))
        ga.narrow(d, m, 1).zero_()
    return g


def grad_adjoint(p: Tensor, out: Tensor | None = None) -> Tensor:
    r"""Adjoint :math:`D^H p = -\mathrm{div}\, p`, ``(B, C, n, *spatial) -> (B, C, *spatial)``.

    The last slice of ``p[:, :, a]`` along axis :math:`a` is ignored, matching the zeros
    :func:`grad` writes there. ``out`` (optional) is a preallocated result buffer.
    """
    if out is None:
        out = p.new_zeros((*p.shape[:2], *p.shape[3:]))
    else:
        out.zero_()
    for a, d in enumerate(_axes(out)):
        m = out.shape[d] - 1
        pa = p[:, :, a].narrow(d, 0, m)
        out.narrow(d, 0, m).sub_(pa)
        out.narrow(d, 1, m).add_(pa)
    return out


def grad_sq_magnitude(g: Tensor) -> Tensor:
    """Pointwise :math:`\\sum_a |g_a|^2` of a gradient field, ``(B, C, 1, *spatial)``, real."""
    sq = g.real.square() + g.imag.square() if g.is_complex() else g.square()
    return sq.sum(2, keepdim=True)


def grad_magnitude(g: Tensor) -> Tensor:
    """Pointwise :math:`\\sqrt{\\sum_a |g_a|^2}` of a gradient field, ``(B, C, 1, *spatial)``."""
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
    """``(B, C, *spatial)`` real or complex -> real ``(B, C, G, *spatial)`` (G = 1, or 2 for
    re/im)."""
    if v.is_complex():
        return torch.view_as_real(v).movedim(-1, 2).contiguous()
    return v.unsqueeze(2)


def _from_groups(x: Tensor, complex_out: bool) -> Tensor:
    if complex_out:
        return torch.view_as_complex(x.movedim(2, -1).contiguous())
    return x.squeeze(2)


def prox_tv(v: Tensor, lam: float, *, iters: int = 20, p0: Any = None,
            nonneg: bool = False) -> tuple[Tensor, Any]:
    r"""Approximate :math:`\mathrm{prox}_{\lambda \mathrm{TV} + \iota_C}(v)`.

    Solves :math:`\min_x \tfrac12 \|x - v\|^2 + \lambda \mathrm{TV}(x)` (with
    :math:`x \ge 0` if ``nonneg``) by Beck and Teboulle's fast gradient projection (FGP) on
    the dual problem

    .. math::

        \min_{|p_{c\mathbf i}| \le 1} \; \tfrac12 \|v - \lambda D^H p\|^2, \qquad
        x(p) = P_C(v - \lambda D^H p),

    with projected gradient steps :math:`p \leftarrow P_{|p| \le 1}(p + D x(p) / (4 n \lambda))`
    (:math:`4n \ge \|D\|^2` for :math:`n` spatial axes) and Nesterov momentum. Running only
    ``iters`` iterations and warm-starting from the previous dual ``p0`` is how FISTA's outer
    loop uses it.

    Implementation: complex images are split into real and imaginary planes that share one
    dual magnitude, each gradient direction is kept in its own contiguous buffer, and every
    buffer is reused in place (at 256 x 256 on a CPU, allocation and strided views otherwise
    cost as much as the arithmetic).

    Parameters
    ----------
    v
        Point to denoise, ``(B, C, *spatial)`` with 2 or 3 spatial axes, real or complex.
    lam
        Weight :math:`\lambda \ge 0`.
    iters
        Number of dual iterations.
    p0
        Warm start: the dual returned by a previous call on an image of the same shape and
        dtype (an opaque tuple of tensors; not modified).
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
    dims = range(3, vr.dim())  # spatial axes of the grouped tensor
    n = len(dims)
    p = tuple(torch.zeros_like(vr) for _ in dims) if p0 is None else tuple(
        t.clone() for t in p0)
    xb, tmp = torch.empty_like(vr), torch.empty_like(vr)

    def primal(q: tuple[Tensor, ...]) -> Tensor:
        # v - lam D^H q = v + lam q_i - lam q_{i - e_a}, using q_a = 0 on the last slice along a
        torch.add(q[0], q[1], out=tmp)
        for qa in q[2:]:
            tmp.add_(qa)
        torch.add(vr, tmp, alpha=lam, out=xb)
        for qa, d in zip(q, dims):
            m = vr.shape[d] - 1
            xb.narrow(d, 1, m).add_(qa.narrow(d, 0, m), alpha=-lam)
        return xb.clamp_(min=0.0) if nonneg else xb

    if lam <= 0 or iters <= 0:
        return _from_groups(primal(p).clone(), v.is_complex()), p
    r = tuple(t.clone() for t in p)
    q = tuple(torch.zeros_like(vr) for _ in dims)
    mag = torch.empty_like(vr.narrow(2, 0, 1))
    step = 1.0 / (grad_norm_sq(n) * lam)
    t = 1.0
    for _ in range(iters):
        x = primal(r)
        for qa, ra, d in zip(q, r, dims):
            m = vr.shape[d] - 1
            torch.sub(x.narrow(d, 1, m), x.narrow(d, 0, m), out=qa.narrow(d, 0, m))
            torch.add(ra, qa, alpha=step, out=qa)
        if vr.shape[2] == 1:
            torch.mul(q[0], q[0], out=mag)
            for qa in q[1:]:
                mag.addcmul_(qa, qa)
        else:
            mag.copy_(sum(qa.square() for qa in q).sum(2, keepdim=True))
        mag.clamp_(min=1.0).sqrt_()  # clamp before sqrt: same result, fewer slow sqrt inputs
        for qa in q:
            qa.div_(mag)
        t_next = 0.5 * (1.0 + (1.0 + 4.0 * t * t) ** 0.5)
        beta = (t - 1.0) / t_next
        for qa, ra, pa in zip(q, r, p):
            torch.mul(qa, 1.0 + beta, out=ra).add_(pa, alpha=-beta)
        p, q = q, p
        t = t_next
    return _from_groups(primal(p).clone(), v.is_complex()), p
