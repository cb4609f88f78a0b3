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
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from ..errors import InputError
from ..params import param
from .base import LinearOperator
from .coil_maps import check_coil_maps, estimate_coil_maps, simulated_coil_maps
from .mri import MRIParams, fft2c, ifft2c, mri_mask
from .noise import NoiseParams
from .registry import register_operator

Tensor = torch.Tensor
COIL_MAPS = ("simulated", "estimated", "custom")
EXACT_PINV_MAX_BYTES = 1 << 30  # cache of the row eigenvectors (H W^2 complex64) above: CG

__all__ = ["MultiCoilMRI", "MultiCoilMRIParams", "simulated_coil_maps", "estimate_coil_maps"]


@dataclass
class MultiCoilMRIParams(MRIParams):
    """Multi-coil Cartesian acquisition: the single-coil k-space sampling plus coil
    sensitivities."""

    n_coils: int = param(8, "number of receive coils (simulated maps)", min=1, max=128,
                         when={"coil_maps": "simulated"})
    coil_maps: str = param("simulated", "coil sensitivities: simulated ring of coils, or "
                           "estimated from the k-space centre / custom (coil_maps_array)",
                           choices=COIL_MAPS)
    coil_maps_array: Any = param(None, "coil sensitivities (n_coils, H, W), complex; from "
                                 "estimate_coil_maps or a scanner", gui=False)


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
            maps = check_coil_maps(p.coil_maps_array, self.shape)
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
