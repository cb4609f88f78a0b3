r"""Image-quality and data-consistency metrics.

Inputs are torch tensors or numpy arrays of shape ``(H, W)``, ``(C, H, W)`` or
``(B, C, H, W)``, or volumes ``(B, C, D, H, W)`` (whose z-slices count as channels: SSIM of
a volume is the mean SSIM of its slices); complex inputs are compared by magnitude. Every
metric is computed per batch element and, with ``reduction="mean"`` (the default), averaged
to a float; ``reduction="none"`` returns a ``(B,)`` tensor.

* PSNR: :math:`10 \log_{10}(R^2 / \mathrm{MSE})` with data range :math:`R`
  (default :math:`\max(\mathrm{ref}) - \min(\mathrm{ref})` per element);
* SSIM (Wang et al. 2004) with an 11-pixel Gaussian window of standard deviation 1.5,
  :math:`K_1 = 0.01`, :math:`K_2 = 0.03`, population covariances, averaged over the pixels
  whose window lies inside the image (as ``skimage.metrics.structural_similarity`` with
  ``gaussian_weights=True, use_sample_covariance=False``);
* NRMSE: :math:`\|x - \mathrm{ref}\| / \|\mathrm{ref}\|`;
* residual: :math:`\|A x - y\| / \|y\|` (data consistency; needs no ground truth);
* phase-aligned error: :math:`\min_\phi \|e^{i\phi}x - \mathrm{ref}\| / \|\mathrm{ref}\|`
  (complex inputs kept complex; for phase retrieval).
"""

from __future__ import annotations

from typing import Any

import torch
from torch.nn.functional import conv2d

Tensor = torch.Tensor

__all__ = ["psnr", "ssim", "nrmse", "residual", "compute_metrics", "phase_aligned_error"]


def _as4d(a: Any) -> Tensor:
    t = torch.as_tensor(a)
    if t.dim() == 2:
        t = t[None, None]
    elif t.dim() == 3:
        t = t[None]
    elif t.dim() == 5:
        t = t.flatten(1, 2)
    if t.dim() != 4:
        raise ValueError(f"expected an image of 2 to 5 dimensions, got shape {tuple(t.shape)}")
    return t


def _pair(x: Any, ref: Any) -> tuple[Tensor, Tensor]:
    """Both as real ``(B, C, H, W)`` float tensors (magnitude if complex), on ref's device."""
    r = _as4d(ref)
    xt = _as4d(x).to(r.device)
    if xt.is_complex() or r.is_complex():
        xt, r = xt.abs(), r.abs()
    dt = torch.float64 if torch.float64 in (xt.dtype, r.dtype) else torch.float32
    xt, r = xt.to(dt), r.to(dt)
    if xt.shape[1:] != r.shape[1:] or 1 not in (xt.shape[0], r.shape[0]) and \
            xt.shape[0] != r.shape[0]:
        raise ValueError(f"shapes {tuple(xt.shape)} and {tuple(r.shape)} do not match")
    xt, r = torch.broadcast_tensors(xt, r)
    return xt, r


def _reduce(v: Tensor, reduction: str) -> float | Tensor:
    if reduction == "none":
        return v
    if reduction == "mean":
        return float(v.mean())
    raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")


def _range(r: Tensor, data_range: float | None) -> Tensor:
    if data_range is not None:
        return torch.full((r.shape[0],), float(data_range), dtype=r.dtype, device=r.device)
    flat = r.flatten(1)
    return flat.max(1).values - flat.min(1).values


def psnr(x: Any, ref: Any, data_range: float | None = None, *,
         reduction: str = "mean") -> float | Tensor:
    r"""Peak signal-to-noise ratio :math:`10 \log_{10}(R^2 / \mathrm{MSE})` in dB.

    ``inf`` for identical images.
    """
    xt, r = _pair(x, ref)
    mse = (xt - r).square().flatten(1).mean(1)
    rng = _range(r, data_range)
    return _reduce(10.0 * torch.log10(rng.square() / mse), reduction)


def _gaussian_window(sigma: float, radius: int, dtype: torch.dtype, device: Any) -> Tensor:
    t = torch.arange(-radius, radius + 1, dtype=torch.float64)
    w = torch.exp(-0.5 * (t / sigma) ** 2)
    return (w / w.sum()).to(dtype=dtype, device=device)


def ssim(x: Any, ref: Any, data_range: float | None = None, *, sigma: float = 1.5,
         reduction: str = "mean") -> float | Tensor:
    r"""Structural similarity (Gaussian-weighted, Wang et al. 2004).

    .. math::

        \mathrm{SSIM} = \frac{(2\mu_x\mu_r + C_1)(2\sigma_{xr} + C_2)}
        {(\mu_x^2 + \mu_r^2 + C_1)(\sigma_x^2 + \sigma_r^2 + C_2)},
        \quad C_1 = (0.01 R)^2, \; C_2 = (0.03 R)^2,

    with local moments from a separable Gaussian window (``sigma`` 1.5, radius
    :math:`\lfloor 3.5\sigma + 0.5 \rfloor` = 5, i.e. 11 pixels), averaged over the "valid"
    pixels and over channels. Images must be at least 11 x 11.
    """
    xt, r = _pair(x, ref)
    radius = int(3.5 * sigma + 0.5)
    if min(r.shape[-2:]) < 2 * radius + 1:
        raise ValueError(f"ssim needs images of at least {2 * radius + 1} pixels per side")
    w = _gaussian_window(sigma, radius, r.dtype, r.device)
    b, c, h, wd = r.shape

    def blur(t: Tensor) -> Tensor:
        t = t.reshape(b * c, 1, h, wd)
        t = conv2d(t, w.view(1, 1, -1, 1))
        return conv2d(t, w.view(1, 1, 1, -1))

    rng = _range(r, data_range).view(b, 1, 1, 1).repeat_interleave(c, 0)
    c1, c2 = (0.01 * rng) ** 2, (0.03 * rng) ** 2
    mx, mr = blur(xt), blur(r)
    vx = blur(xt * xt) - mx * mx
    vr = blur(r * r) - mr * mr
    cxr = blur(xt * r) - mx * mr
    s = ((2 * mx * mr + c1) * (2 * cxr + c2)) / ((mx * mx + mr * mr + c1) * (vx + vr + c2))
    return _reduce(s.reshape(b, -1).mean(1), reduction)


def nrmse(x: Any, ref: Any, *, reduction: str = "mean") -> float | Tensor:
    r"""Normalised root-mean-square error :math:`\|x - \mathrm{ref}\| / \|\mathrm{ref}\|`."""
    xt, r = _pair(x, ref)
    num = (xt - r).flatten(1).norm(dim=1)
    den = r.flatten(1).norm(dim=1).clamp_min(torch.finfo(r.dtype).tiny)
    return _reduce(num / den, reduction)


def residual(op: Any, x: Any, y: Any, *, reduction: str = "mean") -> float | Tensor:
    r"""Data consistency :math:`\|A x - y\| / \|y\|` per batch element (complex-safe)."""
    xt = op.as_image(torch.as_tensor(x))
    yt = op.as_measurement(torch.as_tensor(y))
    with torch.no_grad():
        d = (op.A(xt) - yt).flatten(1)
    num = d.abs().norm(dim=1)
    den = yt.flatten(1).abs().norm(dim=1).clamp_min(torch.finfo(num.dtype).tiny)
    return _reduce(num / den, reduction)


def compute_metrics(x: Any, ref: Any = None, op: Any = None, y: Any = None
                    ) -> dict[str, float]:
    """Every metric that the given inputs allow, as floats.

    ``psnr``, ``ssim`` (if the image is at least 11 x 11) and ``nrmse`` need ``ref`` (ground
    truth); ``residual`` needs ``op`` and ``y``. PSNR of identical images is ``inf``.
    """
    out: dict[str, float] = {}
    if ref is not None:
        out["psnr"] = float(psnr(x, ref))
        if min(_as4d(ref).shape[-2:]) >= 11:
            out["ssim"] = float(ssim(x, ref))
        out["nrmse"] = float(nrmse(x, ref))
    if op is not None and y is not None:
        out["residual"] = float(residual(op, x, y))
    return out


def phase_aligned_error(x: Any, ref: Any, *, reduction: str = "mean") -> float | Tensor:
    r"""Relative error up to a global phase (phase retrieval recovers :math:`x` only so).

    .. math::

        \min_\phi \frac{\|e^{i\phi} x - \mathrm{ref}\|}{\|\mathrm{ref}\|}, \qquad
        \phi^\star = \arg \langle x, \mathrm{ref} \rangle = \arg \sum \bar x\, \mathrm{ref},

    per batch element (complex arithmetic in double precision; real inputs are cast, so for
    them :math:`\phi` may be :math:`\pi`, i.e. a sign flip).
    """
    r = _as4d(ref)
    xt = _as4d(x).to(r.device)
    xt, r = xt.to(torch.complex128), r.to(torch.complex128)
    if xt.shape[1:] != r.shape[1:] or 1 not in (xt.shape[0], r.shape[0]) and \
            xt.shape[0] != r.shape[0]:
        raise ValueError(f"shapes {tuple(xt.shape)} and {tuple(r.shape)} do not match")
    xt, r = torch.broadcast_tensors(xt, r)
    inner = (xt.conj() * r).flatten(1).sum(1)
    rot = torch.where(inner.abs() > 0, inner / inner.abs().clamp_min(1e-300),
                      torch.ones_like(inner))
    num = (xt * rot.view(-1, 1, 1, 1) - r).flatten(1).norm(dim=1)
    den = r.flatten(1).norm(dim=1).clamp_min(torch.finfo(torch.float64).tiny)
    return _reduce(num / den, reduction)
