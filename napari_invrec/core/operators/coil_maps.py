r"""Coil sensitivities of multi-coil MRI: simulated maps, estimation from the k-space centre.

Simulated maps are smooth complex profiles of a ring of coils normalised to
:math:`\sum_c |S_c|^2 = 1`; estimated maps come from the fully sampled (auto-calibration)
columns at the k-space centre, divided by their root-sum-of-squares. Both are used by
:class:`~.mri_multicoil.MultiCoilMRI`; :func:`estimate_coil_maps` also serves real data.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from ..errors import InputError
from .mri import centre_columns, ifft2c

Tensor = torch.Tensor

__all__ = ["simulated_coil_maps", "estimate_coil_maps", "check_coil_maps"]


def simulated_coil_maps(n_coils: int, shape: tuple[int, int], *, radius: float = 1.5,
                        width: float = 0.8) -> Tensor:
    r"""Smooth complex coil sensitivities ``(n_coils, H, W)`` (complex64, CPU).

    In coordinates normalised to :math:`[-1, 1]` along each axis, coil :math:`c` sits at
    :math:`r_c = \rho(\cos\theta_c, \sin\theta_c)`, :math:`\theta_c = 2\pi c / n_c`, outside
    the image (:math:`\rho > \sqrt 2`), and

    .. math::

        \tilde S_c(r) = e^{-|r - r_c|^2 / (2 w^2)}\, e^{i \arg((r - r_c)_x + i (r - r_c)_y)},
        \qquad S_c = \tilde S_c \Big/ \sqrt{\textstyle\sum_k |\tilde S_k|^2},

    a Gaussian receive profile with the phase of the field of a wire at :math:`r_c` (smooth
    because the coil is outside the image). Hence :math:`\sum_c |S_c|^2 = 1` everywhere.

    Parameters
    ----------
    n_coils
        Number of coils (>= 1).
    shape
        Image shape ``(H, W)``.
    radius, width
        Ring radius :math:`\rho` and profile width :math:`w` (normalised units).
    """
    if int(n_coils) < 1:
        raise InputError(f"n_coils must be >= 1, got {n_coils}")
    h, w = shape
    yy = (torch.arange(h, dtype=torch.float64) - (h - 1) / 2) / (h / 2)
    xx = (torch.arange(w, dtype=torch.float64) - (w - 1) / 2) / (w / 2)
    gy, gx = torch.meshgrid(yy, xx, indexing="ij")
    theta = 2 * math.pi * torch.arange(int(n_coils), dtype=torch.float64) / int(n_coils)
    dy = gy[None] - radius * torch.sin(theta)[:, None, None]
    dx = gx[None] - radius * torch.cos(theta)[:, None, None]
    mag = torch.exp(-(dx ** 2 + dy ** 2) / (2 * width ** 2))
    maps = torch.polar(mag, torch.atan2(dy, dx))
    maps = maps / maps.abs().pow(2).sum(0, keepdim=True).sqrt()
    return maps.to(torch.complex64)


def _acs_columns(kspace: Tensor, center_fraction: float | None) -> slice:
    """Fully sampled centre columns: from ``center_fraction``, or the run of sampled columns
    (nonzero in some coil and row) that contains the DC column ``W // 2``."""
    w = kspace.shape[-1]
    if center_fraction is not None:
        if not 0 < float(center_fraction) <= 1:
            raise InputError(f"center_fraction must be in (0, 1], got {center_fraction}")
        return centre_columns(w, float(center_fraction))
    sampled = (kspace.abs() > 0).flatten(0, -2).any(0).cpu().numpy()
    c = w // 2
    if not sampled[c]:
        raise InputError("the DC column W // 2 of the k-space is not sampled; pass "
                         "center_fraction, or centre the k-space (fftshift) first")
    lo, hi = c, c + 1
    while lo > 0 and sampled[lo - 1]:
        lo -= 1
    while hi < w and sampled[hi]:
        hi += 1
    return slice(lo, hi)


def _smooth(z: Tensor, sigma: float) -> Tensor:
    """Separable Gaussian smoothing of ``(C, H, W)`` complex maps (replicated borders)."""
    if sigma <= 0:
        return z
    r = max(1, int(math.ceil(3 * sigma)))
    t = torch.arange(-r, r + 1, dtype=torch.float64, device=z.device)
    k = torch.exp(-t ** 2 / (2 * sigma ** 2))
    k = (k / k.sum()).to(z.real.dtype)
    parts = torch.stack([z.real, z.imag], 1).flatten(0, 1)[:, None]  # (2C, 1, H, W)
    parts = torch.nn.functional.pad(parts, (r, r, r, r), mode="replicate")
    parts = torch.nn.functional.conv2d(parts, k.view(1, 1, -1, 1))
    parts = torch.nn.functional.conv2d(parts, k.view(1, 1, 1, -1))[:, 0]
    parts = parts.view(z.shape[0], 2, *z.shape[1:])
    return torch.complex(parts[:, 0], parts[:, 1])


def estimate_coil_maps(kspace: Any, center_fraction: float | None = None, *,
                       smoothing: float = 0.5, threshold: float = 0.0) -> np.ndarray:
    r"""Estimate coil sensitivities from the fully sampled k-space centre (auto-calibration).

    Keeps the fully sampled centre columns (the ACS block), apodised by a Hann window along W
    (which smooths the estimate and suppresses Gibbs ringing), takes the low-resolution coil
    images :math:`I_c = \mathcal F^H (w_{acs} \odot y_c)` and divides them by their
    root-sum-of-squares:

    .. math::

        \hat S_c = \frac{I_c}{\sqrt{\sum_k |I_k|^2}}, \quad \text{then lightly smoothed
        (Gaussian, std ``smoothing`` px) and renormalised to } \sum_c |\hat S_c|^2 = 1.

    For :math:`S` smooth compared with the ACS resolution, :math:`I_c \approx S_c\, x_{lr}` and
    :math:`\hat S_c \approx S_c\, e^{i \arg x_{lr}}`: the true maps up to the object's phase,
    which the reconstruction absorbs. Outside the object the ratio follows the low-resolution
    tails and ringing; ``threshold`` > 0 sets the maps to zero where
    :math:`\sqrt{\sum_k |I_k|^2}` is below that fraction of its maximum, which puts those
    pixels in the null space of the operator: SENSE then leaves them at zero, but a TV prior
    fills them from the object's edge, so it is off by default.

    Parameters
    ----------
    kspace
        Centred k-space ``(n_coils, H, W)`` (numpy or torch, complex; unsampled entries 0), as
        measured by the ``mri-multicoil`` operator or read from a scanner file.
    center_fraction
        Fraction of fully sampled centre columns, as in the sampling params; ``None`` finds the
        contiguous block of sampled columns around the DC column ``W // 2``.
    smoothing
        Std in pixels of the Gaussian smoothing of the maps (0 = none).
    threshold
        Relative low-resolution RSS below which the maps are set to zero (0 = keep all).

    Returns
    -------
    numpy.ndarray
        complex64 ``(n_coils, H, W)``, ready for ``coil_maps_array``.

    Raises
    ------
    InputError
        Not a 3-D array, NaN/inf, no sampled k-space centre, or an all-zero centre.
    """
    k = torch.as_tensor(np.asarray(kspace) if not isinstance(kspace, Tensor) else kspace)
    if k.dim() != 3 or min(k.shape[-2:]) < 2:
        raise InputError(f"k-space for coil estimation must be (n_coils, H, W), got shape "
                         f"{tuple(k.shape)}")
    if not bool(torch.isfinite(k).all()):
        raise InputError("k-space for coil estimation contains NaN/inf values")
    k = k.to(torch.complex64)
    cols = _acs_columns(k, center_fraction)
    n = cols.stop - cols.start
    win = torch.zeros(k.shape[-1], dtype=torch.float32, device=k.device)
    # Hann window over the ACS block whose zeros fall just outside it (no column is dropped)
    win[cols] = 0.5 * (1 + torch.cos(math.pi * (torch.arange(n, device=k.device) -
                                                 (n - 1) / 2) / ((n + 1) / 2)))
    low = ifft2c(k * win)
    rss = low.abs().pow(2).sum(0).sqrt()
    top = float(rss.max())
    if not top > 0:
        raise InputError("the k-space centre is all zero: no coil sensitivity to estimate")
    maps = low / rss.clamp_min(1e-6 * top)
    maps = _smooth(maps, float(smoothing))
    norm = maps.abs().pow(2).sum(0).sqrt()
    keep = (rss >= threshold * top) & (norm > 0)
    maps = torch.where(keep, maps / norm.clamp_min(1e-12), torch.zeros_like(maps))
    return maps.cpu().numpy().astype(np.complex64)


def check_coil_maps(a: Any, shape: tuple[int, int]) -> Tensor:
    """Validate a user coil-map array: ``(n_coils, H, W)`` (or ``(H, W)``), finite, nonzero."""
    arr = np.asarray(a.detach().cpu() if isinstance(a, Tensor) else a)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or tuple(arr.shape[1:]) != tuple(shape):
        raise InputError(f"coil_maps_array must be (n_coils, H, W) = (n, {shape[0]}, "
                         f"{shape[1]}), got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.number):
        raise InputError(f"coil_maps_array must be numeric (complex), got dtype {arr.dtype}")
    if not np.all(np.isfinite(arr)):
        raise InputError("coil_maps_array contains NaN/inf values")
    if not np.any(arr != 0):
        raise InputError("coil_maps_array is all zero: no coil sees the image")
    return torch.from_numpy(np.ascontiguousarray(arr.astype(np.complex64)))
