r"""Multi-coil (SENSE-type) Cartesian MRI: coil sensitivities times undersampled k-space.

Each of the :math:`n_c` receive coils sees the image weighted by its complex sensitivity
:math:`S_c` and records the same undersampled centred k-space as single-coil MRI
(:mod:`.mri`):

.. math::

    y_c = M \odot \mathcal F (S_c\, x), \quad c = 1, \dots, n_c, \qquad
    A^H y = \sum_c \overline{S_c}\, \mathcal F^H (M \odot y_c),

with :math:`\mathcal F` the centred orthonormal 2-D DFT (:func:`.mri.fft2c`) and :math:`M` the
column mask of :func:`.mri.mri_mask`. The measurement has shape ``(n_coils, H, W)`` (complex64,
zeros on unsampled columns). Because :math:`\mathcal F^H M \mathcal F` is a projection,
:math:`A^H A = \sum_c \overline{S_c} \mathcal F^H M \mathcal F S_c \preceq \max_p \sum_c
|S_c(p)|^2 \, I`, so :math:`\|A\|_2 \le 1` when :math:`\sum_c |S_c|^2 \le 1`; the norm is
computed by power iteration.

Pseudo-inverse. With smooth coil maps and random column sampling the normal operator is badly
conditioned (k-space gaps wider than the coil maps' bandwidth are barely encoded), so CG does
not reach :math:`A^+`. But a column mask acts along W only: after an inverse DFT along H the
problem splits into one :math:`W \times W` system per image row :math:`h`,

.. math::

    G_h = \sum_c \operatorname{diag}(\overline{s_{c,h}})\, P\, \operatorname{diag}(s_{c,h})
        = P \circ \Big(\sum_c \overline{s_{c,h}}\, s_{c,h}^T\Big), \qquad
    P = \mathcal F_W^H \operatorname{diag}(m) \mathcal F_W,

(:math:`s_{c,h}` = row :math:`h` of :math:`S_c`, :math:`m` the sampled columns) and
:math:`A^H A x` is :math:`G_h x_h` row by row. :meth:`MultiCoilMRI.A_pinv` eigendecomposes
every :math:`G_h = V_h \Lambda_h V_h^H` (float64, once, cached: :math:`H W^2` complex64 numbers,
134 MB at 256 x 256) and applies the truncated inverse

.. math::

    A^+ y = \big(V_h\, \Lambda_h^{+}\, V_h^H (A^H y)_h\big)_h, \qquad
    \Lambda^+_{ii} = \lambda_i^{-1}\, \mathbb 1\big[\sqrt{\lambda_i} > \tau \|A\|\big],

with :math:`\tau` = :attr:`MultiCoilMRI.pinv_rcond` (singular values below :math:`\tau\|A\|`
form the numerical null space; :meth:`~MultiCoilMRI.null_project` projects on it exactly).
A custom 2-D mask that is not constant along H, or an image too large for the cache
(:data:`EXACT_PINV_MAX_BYTES`), falls back to CG on the normal equations (inexact there).

Coil maps (``coil_maps``):

* ``simulated``: :func:`simulated_coil_maps`, smooth Gaussian-profile coils on a ring around the
  image with the phase of a 2-D wire's field, normalised to :math:`\sum_c |S_c|^2 = 1`, so the
  root-sum-of-squares of fully sampled coil images is :math:`|x|`;
* ``estimated``: maps estimated from the measurement's fully sampled k-space centre with
  :func:`estimate_coil_maps`, passed as ``coil_maps_array``. The operator needs the measurement
  first, so the caller estimates and passes them::

      maps = estimate_coil_maps(y, center_fraction=0.08)      # y: (n_coils, H, W) k-space
      op = make_operator("mri-multicoil", (H, W), coil_maps="estimated", coil_maps_array=maps)

* ``custom``: any ``(n_coils, H, W)`` array in ``coil_maps_array`` (used as given, not
  normalised). Passing ``coil_maps_array`` with ``coil_maps="simulated"`` means ``custom``.

With an array, ``n_coils`` is its first dimension (the params are updated to say so).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from ..errors import InputError
from ..params import param
from .base import LinearOperator
from .mri import PATTERNS, centre_columns, fft2c, ifft2c, mri_mask
from .noise import NoiseParams
from .registry import register_operator

Tensor = torch.Tensor
COIL_MAPS = ("simulated", "estimated", "custom")
EXACT_PINV_MAX_BYTES = 1 << 30  # cache of the row eigenvectors (H W^2 complex64) above: CG

__all__ = ["MultiCoilMRI", "MultiCoilMRIParams", "simulated_coil_maps", "estimate_coil_maps"]


@dataclass
class MultiCoilMRIParams:
    """Multi-coil Cartesian acquisition: coil sensitivities and k-space sampling."""

    n_coils: int = param(8, "number of receive coils (simulated maps)", min=1, max=128,
                         when={"coil_maps": "simulated"})
    acceleration: float = param(4.0, "acceleration R: about W / R k-space columns are sampled",
                                min=1.0, max=64.0, step=1.0)
    center_fraction: float = param(0.08, "fraction of columns fully sampled at the k-space "
                                   "centre", min=0.0, max=1.0, step=0.01)
    pattern: str = param("random", "how the other columns are chosen", choices=PATTERNS)
    seed: int = param(0, "seed of the random pattern", min=0, max=2**31 - 1,
                      when={"pattern": "random"})
    coil_maps: str = param("simulated", "coil sensitivities: simulated ring of coils, or "
                           "estimated from the k-space centre / custom (coil_maps_array)",
                           choices=COIL_MAPS)
    coil_maps_array: Any = param(None, "coil sensitivities (n_coils, H, W), complex; from "
                                 "estimate_coil_maps or a scanner", gui=False)
    mask_array: Any = param(None, "custom mask: (W,) sampled columns or (H, W); overrides the "
                            "pattern", gui=False)


# ---------------------------------------------------------------------- coil maps
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


def _check_maps(a: Any, shape: tuple[int, int]) -> Tensor:
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


# ---------------------------------------------------------------------- the operator
@register_operator
class MultiCoilMRI(LinearOperator):
    """Multi-coil Cartesian MRI (SENSE): coil sensitivities, centred FFT, column undersampling.

    Attributes
    ----------
    mask
        Sampling mask, numpy float32 ``(H, W)`` (1 = sampled, DC at the centre).
    coil_maps
        Sensitivities, numpy complex64 ``(n_coils, H, W)``.
    n_coils
        Number of coils (the measurement is ``(n_coils, H, W)``).
    pinv_rcond
        Relative threshold :math:`\\tau`: :meth:`A_pinv` inverts only singular values above
        :math:`\\tau \\|A\\|`; the rest is the numerical null space (a gain below 1 % is
        not recoverable at realistic noise levels).
    """

    name = "mri-multicoil"
    Params = MultiCoilMRIParams
    complex_image = True
    complex_measurement = True
    pinv_iters = 300
    pinv_rcond: ClassVar[float] = 1e-2


    @classmethod
    def measurement_ndim(cls, params: Any) -> int:
        """3: (coils, H, W) k-space."""
        return 3

    @classmethod
    def arrays_from_measurement(cls, params: Any, y: Any) -> dict:
        """With ``coil_maps="estimated"``: maps estimated from ``y``'s fully sampled centre."""
        if params.coil_maps != "estimated" or params.coil_maps_array is not None:
            return {}
        return {"coil_maps_array": estimate_coil_maps(np.asarray(y), params.center_fraction)}

    def __init__(self, shape: tuple[int, int], params: MultiCoilMRIParams | None = None, *,
                 device: torch.device | str | None = None) -> None:
        super().__init__(shape, params, device=device)
        p = self.params
        if p.coil_maps not in COIL_MAPS:
            raise InputError(f"unknown coil_maps {p.coil_maps!r}; choose one of {COIL_MAPS}")
        if p.coil_maps_array is None:
            if p.coil_maps != "simulated":
                raise InputError(
                    f"coil_maps={p.coil_maps!r} needs coil_maps_array (n_coils, H, W); estimate "
                    "it from the measured k-space: coil_maps_array=estimate_coil_maps(y, "
                    "center_fraction) (napari_invrec.core.operators.mri_multicoil), or choose "
                    "coil_maps='simulated'")
            maps = simulated_coil_maps(int(p.n_coils), self.shape)
        else:
            maps = _check_maps(p.coil_maps_array, self.shape)
            mode = "custom" if p.coil_maps == "simulated" else p.coil_maps
            self.params = dataclasses.replace(p, coil_maps=mode, n_coils=int(maps.shape[0]))
        self.register_buffer("_maps", maps.to(self.device), persistent=False)
        self.register_buffer("_mask", mri_mask(self.params, self.shape).to(self.device),
                             persistent=False)
        self._eig: tuple[Tensor, Tensor] | None = None

    # ------------------------------------------------------------------ properties
    @property
    def n_coils(self) -> int:
        return int(self._maps.shape[0])

    @property
    def measurement_shape(self) -> tuple[int, ...]:
        return (self.n_coils, *self.shape)

    @property
    def mask(self) -> np.ndarray:
        return self._mask.detach().cpu().numpy().copy()

    @property
    def coil_maps(self) -> np.ndarray:
        return self._maps.detach().cpu().numpy().copy()

    # ------------------------------------------------------------------ the maths
    def A(self, x: Tensor) -> Tensor:  # noqa: N802
        """:math:`y_c = M \\odot \\mathcal F (S_c x)`, shape ``(B, C, n_coils, H, W)``."""
        self.check_image(x)
        return self._mask * fft2c(self.as_image(x)[:, :, None] * self._maps)

    def A_adjoint(self, y: Tensor) -> Tensor:  # noqa: N802
        """:math:`\\sum_c \\overline{S_c}\\, \\mathcal F^H (M \\odot y_c)`, ``(B, C, H, W)``."""
        return (self._maps.conj() * self.coil_images(y)).sum(2)

    def coil_images(self, y: Tensor) -> Tensor:
        """Zero-filled coil images :math:`\\mathcal F^H (M \\odot y_c)`, ``(B, C, n, H, W)``."""
        self.check_measurement(y)
        return ifft2c(self._mask * self.as_measurement(y))

    def measure(self, x: Tensor, noise: NoiseParams | None = None,
                generator: torch.Generator | None = None) -> Tensor:
        """Noisy k-space of every coil, zero on unsampled entries: :math:`M \\odot N(A x)`."""
        return self._mask * super().measure(x, noise, generator)

    def measurement_views(self, y: Tensor) -> dict[str, Tensor]:
        """Coil images, their root-sum-of-squares and the sampling mask of ``y``.

        ``y`` is ``(n_coils, H, W)`` or ``(B, C, n_coils, H, W)`` (the first batch element and
        channel are shown). Returns ``{"coil images": |F^H y_c|`` ``(n_coils, H, W)``,
        ``"rss": sqrt(sum_c |F^H y_c|^2)`` ``(H, W)``, ``"sampling mask": M`` ``(H, W)}``.
        """
        y = torch.as_tensor(y)
        if y.dim() == len(self.measurement_shape):
            y = y[None, None]
        mag = self.coil_images(y)[0, 0].abs()
        return {"coil images": mag, "rss": mag.pow(2).sum(0).sqrt(),
                "sampling mask": self._mask.detach().clone()}

    # ------------------------------------------------------------------ pseudo-inverse
    def _exact_pinv(self) -> bool:
        """Row-wise exact pseudo-inverse possible: column mask and cache within budget."""
        h, w = self.shape
        columns = bool((self._mask == self._mask[:1]).all())
        return columns and h * w * w * 8 <= EXACT_PINV_MAX_BYTES

    def _row_eig(self) -> tuple[Tensor, Tensor]:
        """``(V, inv)``: eigenvectors ``(H, W, W)`` complex64 of every :math:`G_h` and the
        truncated inverse eigenvalues ``(H, W)`` (0 on the numerical null space)."""
        if self._eig is not None and self._eig[0].device == self.device:
            return self._eig
        h, w = self.shape
        dev = self.device
        f = torch.eye(w, dtype=torch.complex128, device=dev)
        f = torch.fft.fftshift(torch.fft.fft(torch.fft.ifftshift(f, dim=0), dim=0, norm="ortho"),
                               dim=0)  # centred DFT matrix along W
        m = self._mask[0].to(torch.float64)
        proj = f.conj().T @ (m[:, None] * f)
        maps = self._maps.to(torch.complex128)
        vecs = torch.empty((h, w, w), dtype=torch.complex64, device=dev)
        lams = torch.empty((h, w), dtype=torch.float64, device=dev)
        step = max(1, (1 << 25) // (w * w))  # rows per chunk: ~0.5 GB of complex128 at most
        for r in range(0, h, step):
            s = maps[:, r:r + step]
            g = proj * torch.einsum("chi,chj->hij", s.conj(), s)
            lam, v = torch.linalg.eigh(g)
            vecs[r:r + step], lams[r:r + step] = v.to(torch.complex64), lam
        keep = lams > (self.pinv_rcond ** 2) * lams.max()
        inv = torch.where(keep, 1 / lams.clamp_min(1e-300), torch.zeros_like(lams))
        self._eig = (vecs, inv.to(torch.float32))
        return self._eig

    def _rows_apply(self, x: Tensor, diag: Tensor) -> Tensor:
        """:math:`V_h \\operatorname{diag}(d_h) V_h^H x_h` for every row ``h`` of ``x``."""
        vecs, _ = self._row_eig()
        c = torch.einsum("hji,bchj->bchi", vecs.conj(), x) * diag
        return torch.einsum("hij,bchj->bchi", vecs, c)

    def A_pinv(self, y: Tensor) -> Tensor:  # noqa: N802
        """Truncated pseudo-inverse, exact row by row (see the module docstring)."""
        if not self._exact_pinv():
            return super().A_pinv(y)
        return self._rows_apply(self.A_adjoint(y), self._row_eig()[1])

    def range_project(self, x: Tensor) -> Tensor:
        """:math:`A^+ A x`: the part of ``x`` on the kept eigenvectors of every :math:`G_h`."""
        if not self._exact_pinv():
            return super().range_project(x)
        self.check_image(x)
        return self._rows_apply(self.as_image(x), (self._row_eig()[1] > 0).float())

    def null_project(self, x: Tensor) -> Tensor:
        """:math:`(I - A^+ A) x`: the numerical null-space part of ``x``."""
        if not self._exact_pinv():
            return super().null_project(x)
        return self.as_image(x) - self.range_project(x)
