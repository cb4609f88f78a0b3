r"""Blur (deconvolution): circular convolution with a point-spread function.

Boundary model: **periodic**. The image (2-D, or a 3-D volume ``(D, H, W)``) is treated as one
period of a periodic signal, so the forward model is a circular convolution, diagonalised by the
DFT over the spatial axes:

.. math::

    A x = \mathcal F^{-1}\big(K \odot \mathcal F x\big), \qquad
    A^H y = \mathcal F^{-1}\big(\overline K \odot \mathcal F y\big),

where :math:`K = \mathcal F k` is the transfer function of the kernel :math:`k`. The kernel is
normalised to :math:`\sum k = 1` and placed with its centre pixel at the origin (index
``(0, 0)``, wrapping around), so blurring a delta at the image centre leaves its centroid at the
centre. Parametric kernels wider than the image are folded (summed modulo the image shape),
which is exactly the periodic model; a user-supplied kernel must fit in the image.

Volumes: the Gaussian kernel is 3-D, with standard deviation ``sigma`` in-plane and ``sigma_z``
along z (a microscope's axial PSF is typically 2-4 times wider than its lateral one); a custom
kernel may be a 3-D PSF ``(kd, kh, kw)``; the disk and motion kernels, and a 2-D custom kernel,
blur each plane alone (a kernel of depth 1).

Pseudo-inverse (truncated): with the relative threshold :math:`\tau =` :attr:`Blur.pinv_rcond`,

.. math::

    A^+ y = \mathcal F^{-1}\Big(\frac{\overline K}{|K|^2}\,
            \mathbb 1\big[|K| > \tau \max|K|\big] \odot \mathcal F y\Big).

Frequencies with :math:`|K| \le \tau \max |K|` form the *numerical null space*:
:meth:`Blur.null_project` keeps exactly those frequencies, so
:math:`\|A\,(I - A^+ A)\,x\| \le \tau \max|K|\,\|x\|` rather than zero. The spectral norm is
:math:`\|A\|_2 = \max |K|` (1 for a non-negative kernel).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from ..errors import InputError
from ..fourier import irfft_spatial, rfft_spatial
from ..params import param
from .base import LinearOperator
from .registry import register_operator

Tensor = torch.Tensor
KERNELS = ("gaussian", "disk", "motion", "custom")
_PARAMETRIC = ("gaussian", "disk", "motion")


@dataclass
class BlurParams:
    """Point-spread function of the blur (periodic boundary)."""

    kernel: str = param("gaussian", "kernel shape", choices=KERNELS)
    sigma: float = param(2.0, "Gaussian standard deviation (pixels)", min=0.1, max=50.0,
                         step=0.1, when={"kernel": "gaussian"})
    sigma_z: float = param(0.0, "Gaussian standard deviation along z for volumes (pixels; "
                           "0 = sigma, isotropic)", min=0.0, max=50.0, step=0.1,
                           when={"kernel": "gaussian"})
    radius: float = param(3.0, "disk radius (pixels)", min=0.1, max=100.0, step=0.5,
                          when={"kernel": "disk"})
    length: float = param(9.0, "motion blur line length (pixels)", min=0.1, max=200.0,
                          step=1.0, when={"kernel": "motion"})
    angle: float = param(0.0, "motion direction (degrees, counter-clockwise from +x)",
                         min=-360.0, max=360.0, step=5.0, when={"kernel": "motion"})
    kernel_size: int = param(0, "kernel width (odd pixels; 0 = automatic from the width)",
                             min=0, max=401, step=2, when={"kernel": _PARAMETRIC})
    kernel_array: Any = param(None, "custom kernel (2-D, or a 3-D PSF for volumes; "
                              "normalised to sum 1)",
                              gui=False, when={"kernel": "custom"})


def _positive(name: str, v: float) -> float:
    v = float(v)
    if not math.isfinite(v) or v <= 0:
        raise InputError(f"{name} must be a positive number of pixels, got {v}")
    return v


def _half_width(p: BlurParams, auto: int) -> int:
    """Half width of the kernel grid: ``kernel_size // 2`` if set, else ``auto``."""
    ks = int(p.kernel_size)
    if ks < 0 or (ks > 0 and ks % 2 == 0):
        raise InputError(f"kernel_size must be 0 (automatic) or an odd number, got {ks}")
    return ks // 2 if ks > 0 else auto


def _gaussian_1d(s: float, h: int) -> np.ndarray:
    t = np.arange(-h, h + 1, dtype=np.float64)
    return np.exp(-(t ** 2) / (2 * s * s))


def _gaussian(p: BlurParams, ndim: int = 2) -> np.ndarray:
    s = _positive("sigma", p.sigma)
    g = _gaussian_1d(s, _half_width(p, int(math.ceil(4 * s))))
    k = np.outer(g, g)
    if ndim == 3:
        sz = s if float(p.sigma_z) == 0 else _positive("sigma_z", p.sigma_z)
        gz = _gaussian_1d(sz, _half_width(p, int(math.ceil(4 * sz))))
        k = gz[:, None, None] * k[None]
    return k


def _disk(p: BlurParams) -> np.ndarray:
    r = _positive("radius", p.radius)
    h = _half_width(p, int(math.floor(r + 0.5)))
    t = np.arange(-h, h + 1, dtype=np.float64)
    d = np.hypot(t[:, None], t[None, :])
    return np.clip(r + 0.5 - d, 0.0, 1.0)  # anti-aliased edge, one pixel wide


def _motion(p: BlurParams) -> np.ndarray:
    length = _positive("length", p.length)
    h = _half_width(p, int(math.ceil(length / 2)) + 1)
    theta = math.radians(float(p.angle))
    n = max(2, int(math.ceil(8 * length)) + 1)
    t = np.linspace(-length / 2, length / 2, n)
    rows, cols = -t * math.sin(theta) + h, t * math.cos(theta) + h  # rows point down
    k = np.zeros((2 * h + 1, 2 * h + 1))
    r0, c0 = np.floor(rows).astype(int), np.floor(cols).astype(int)
    fr, fc = rows - r0, cols - c0
    for dr, dc, w in ((0, 0, (1 - fr) * (1 - fc)), (0, 1, (1 - fr) * fc),
                      (1, 0, fr * (1 - fc)), (1, 1, fr * fc)):
        rr, cc = r0 + dr, c0 + dc
        ok = (rr >= 0) & (rr <= 2 * h) & (cc >= 0) & (cc <= 2 * h)
        np.add.at(k, (rr[ok], cc[ok]), w[ok])
    return k


def _custom(p: BlurParams, shape: tuple[int, ...]) -> np.ndarray:
    if p.kernel_array is None:
        raise InputError("kernel='custom' needs kernel_array: pass a 2-D kernel (or pick an "
                         "image layer holding the PSF)")
    k = np.asarray(p.kernel_array)
    if k.ndim not in (2, len(shape)) or k.size == 0:
        want = "2-D" if len(shape) == 2 else "2-D or 3-D"
        raise InputError(f"custom kernel must be a non-empty {want} array for a "
                         f"{len(shape)}-D image, got shape {k.shape}"
                         + ("; a 3-D PSF needs a 3-D image (D, H, W)" if k.ndim == 3 else ""))
    if np.iscomplexobj(k) or not np.issubdtype(k.dtype, np.number):
        raise InputError(f"custom kernel must be real-valued, got dtype {k.dtype}")
    k = k.astype(np.float64)
    if not np.all(np.isfinite(k)):
        raise InputError("custom kernel contains NaN/inf values; fix or crop them")
    if any(a > b for a, b in zip(k.shape[::-1], tuple(shape)[::-1])):
        raise InputError(f"custom kernel {k.shape} is larger than the image {tuple(shape)}; "
                         "crop the kernel or use a larger image")
    total = k.sum()
    if not total > 1e-8 * np.abs(k).sum():
        raise InputError(f"custom kernel sums to {total:.3g}; a blur kernel needs a positive "
                         "sum (it is normalised to 1), not an all-zero or derivative filter")
    return k


def blur_kernel(p: BlurParams, shape: tuple[int, ...]) -> np.ndarray:
    """The kernel of ``p`` for images of ``shape``: a small float64 array with sum 1, centre at
    ``(kh//2, kw//2)`` (``(kd//2, kh//2, kw//2)`` for volumes; a kernel of depth 1 blurs each
    plane alone).

    Raises
    ------
    InputError
        Unknown kernel, non-positive width, even ``kernel_size``, or a bad custom kernel.
    """
    if p.kernel not in KERNELS:
        raise InputError(f"unknown kernel {p.kernel!r}; choose one of {KERNELS}")
    if p.kernel == "gaussian":
        k = _gaussian(p, len(shape))
    elif p.kernel == "custom":
        k = _custom(p, shape)
    else:
        k = {"disk": _disk, "motion": _motion}[p.kernel](p)
    if k.ndim < len(shape):
        k = k[None]
    return k / k.sum()


def periodic_embed(k: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Place kernel ``k`` on a periodic grid of ``shape`` with its centre at index ``(0, ...)``.

    Entry ``k[i, j]`` goes to ``((i - kh // 2) mod H, (j - kw // 2) mod W)`` (likewise along
    every axis); entries that land on the same pixel (kernels wider than the image) are summed.
    """
    big = np.zeros(shape, dtype=np.float64)
    index = np.ix_(*[(np.arange(n) - n // 2) % s for n, s in zip(k.shape, shape)])
    np.add.at(big, index, k)
    return big


@register_operator
class Blur(LinearOperator):
    r"""Blur: circular convolution with a Gaussian, disk, motion or custom kernel.

    Boundary model: periodic (the image wraps around), so :math:`A` is diagonal in the DFT
    basis with transfer function :math:`K`; see the module docstring for the maths.

    Attributes
    ----------
    transfer_function
        Buffer, complex64, shape ``(H, W // 2 + 1)`` (``(D, H, W // 2 + 1)`` for volumes):
        :math:`K` in ``torch.fft.rfftn`` layout over the spatial axes (DC at the origin, last
        axis the non-negative frequencies along W).
    pinv_rcond
        Relative threshold :math:`\tau`: :meth:`A_pinv` inverts only frequencies with
        :math:`|K| > \tau \max|K|`; the others are the numerical null space.
    """

    name = "blur"
    Params = BlurParams
    pinv_rcond: ClassVar[float] = 1e-3
    spatial_ndims = (2, 3)

    def __init__(self, shape: tuple[int, ...], params: BlurParams | None = None, *,
                 device: torch.device | str | None = None) -> None:
        super().__init__(shape, params, device=device)
        k = blur_kernel(self.params, self.shape)
        self._kernel = k.astype(np.float32)
        kf = np.fft.rfftn(periodic_embed(k, self.shape))
        mag = np.abs(kf)
        keep = mag > self.pinv_rcond * mag.max()
        inv = np.where(keep, np.conj(kf) / np.where(keep, mag ** 2, 1.0), 0.0)
        dev = self.device
        self.register_buffer("transfer_function",
                             torch.from_numpy(kf.astype(np.complex64)).to(dev), persistent=False)
        self.register_buffer("_pinv_filter",
                             torch.from_numpy(inv.astype(np.complex64)).to(dev), persistent=False)
        self.register_buffer("_passband",
                             torch.from_numpy(keep.astype(np.float32)).to(dev), persistent=False)

    def _filter(self, x: Tensor, f: Tensor) -> Tensor:
        return irfft_spatial(rfft_spatial(x, len(self.shape)) * f, self.shape)

    def A(self, x: Tensor) -> Tensor:  # noqa: N802
        """Blur: :math:`\\mathcal F^{-1}(K \\odot \\mathcal F x)`."""
        self.check_image(x)
        return self._filter(self.as_image(x), self.transfer_function)

    def A_adjoint(self, y: Tensor) -> Tensor:  # noqa: N802
        """Correlation with the kernel: :math:`\\mathcal F^{-1}(\\overline K \\odot \\mathcal F y)`.

        Returns
        -------
        Tensor
            Real image of shape ``(B, C, *shape)``.
        """
        self.check_measurement(y)
        return self._filter(self.as_measurement(y), torch.conj(self.transfer_function))

    def A_pinv(self, y: Tensor) -> Tensor:  # noqa: N802
        """Truncated Fourier pseudo-inverse (see :attr:`pinv_rcond`)."""
        self.check_measurement(y)
        return self._filter(self.as_measurement(y), self._pinv_filter)

    def null_project(self, x: Tensor) -> Tensor:
        """Frequencies of ``x`` where :math:`|K| \\le \\tau \\max|K|` (numerical null space)."""
        self.check_image(x)
        return self._filter(self.as_image(x), 1.0 - self._passband)

    def range_project(self, x: Tensor) -> Tensor:
        """Frequencies of ``x`` where :math:`|K| > \\tau \\max|K|`."""
        self.check_image(x)
        return self._filter(self.as_image(x), self._passband)

    def solve_normal(self, b: Tensor, rho: float | Tensor) -> Tensor:
        r"""Exact :math:`(A^H A + \rho I)^{-1} b = \mathcal F^{-1}\big(\mathcal F b /
        (|K|^2 + \rho)\big)` (used by the splitting methods' data steps; ``rho`` may be a
        scalar tensor that carries gradients, a learned penalty)."""
        self.check_image(b)
        denom = self.transfer_function.abs().square() + rho
        return self._filter(self.as_image(b), 1.0 / denom)

    def norm(self) -> float:
        """Spectral norm :math:`\\max |K|`."""
        return float(self.transfer_function.abs().max())

    def kernel_image(self) -> np.ndarray:
        """The kernel as a small float32 array (sum 1, centre at ``(kh // 2, kw // 2)``; 3-D
        ``(kd, kh, kw)`` for volumes)."""
        return self._kernel.copy()
