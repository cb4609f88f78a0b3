r"""Single-coil Cartesian MRI: undersampled centred Fourier transform.

.. math::

    A x = M \odot S\,\mathcal F\,S^{-1} x, \qquad A^H y = S\,\mathcal F^H S^{-1}(M \odot y),
    \qquad A^+ = A^H,

where :math:`\mathcal F` is the orthonormal 2-D DFT (``norm="ortho"``, unitary),
:math:`S` = ``fftshift`` and :math:`S^{-1}` = ``ifftshift`` over the last two axes, and
:math:`M \in \{0, 1\}^{H \times W}` the sampling mask. Because :math:`S \mathcal F S^{-1}` is
unitary and :math:`M` a projection, :math:`A^+ = A^H`, :math:`\|A\|_2 = 1` and
:math:`(I - A^+ A)x = x - A^H A x` is the unsampled part of k-space brought back to the image.

k-space convention: after ``fftshift`` the DC coefficient sits at index ``(H // 2, W // 2)`` (the
centre, for even and odd sizes alike), and the image origin is at its centre (``ifftshift``
first). Sampled lines are **columns** (phase encoding along W, readout along H, as in fastMRI):
the mask is the same for every row. Images and k-space are complex64; real images are cast by
:meth:`~.base.LinearOperator.as_image`. Measurements keep the full ``(H, W)`` k-space with
zeros on unsampled lines; simulated noise is circular complex Gaussian on sampled entries only.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import InputError
from ..params import param
from ..validation import check_mask_array
from .base import LinearOperator, SampleMask
from .noise import NoiseParams
from .registry import register_operator

Tensor = torch.Tensor
PATTERNS = ("random", "equispaced", "learned")
#: the shipped learned sampling design (:func:`learned_density`), trained with its network
LEARNED_DESIGN = Path(__file__).with_name("mri_design_loupe_4x.json")
_DIMS = (-2, -1)


def fft2c(x: Tensor) -> Tensor:
    """Centred orthonormal 2-D DFT over the last two axes: :math:`S \\mathcal F S^{-1} x`."""
    x = torch.fft.ifftshift(x, dim=_DIMS)
    return torch.fft.fftshift(torch.fft.fft2(x, norm="ortho"), dim=_DIMS)


def ifft2c(k: Tensor) -> Tensor:
    """Inverse of :func:`fft2c` (its adjoint): :math:`S \\mathcal F^H S^{-1} k`."""
    k = torch.fft.ifftshift(k, dim=_DIMS)
    return torch.fft.fftshift(torch.fft.ifft2(k, norm="ortho"), dim=_DIMS)


def centre_columns(width: int, center_fraction: float) -> slice:
    """The fully sampled k-space columns: ``round(center_fraction * W)`` around ``W // 2``.

    At least the DC column when ``center_fraction > 0``; an empty slice when it is 0.
    """
    n_centre = max(1, int(round(center_fraction * width))) if center_fraction > 0 else 0
    start = width // 2 - n_centre // 2
    return slice(start, start + n_centre)


@dataclass
class MRIParams:
    """k-space sampling of a single-coil Cartesian acquisition."""

    acceleration: float = param(4.0, "acceleration R: about W / R k-space columns are sampled",
                                min=1.0, max=64.0, step=1.0)
    center_fraction: float = param(0.08, "fraction of columns fully sampled at the k-space "
                                   "centre", min=0.0, max=1.0, step=0.01)
    pattern: str = param("random", "how the other columns are chosen (learned: the shipped "
                         "LOUPE design, learned on 64 px images)", choices=PATTERNS)
    seed: int = param(0, "seed of the random pattern", min=0, max=2**31 - 1,
                      when={"pattern": "random"})
    mask_array: Any = param(None, "custom mask: (W,) sampled columns or (H, W); overrides the "
                            "pattern", gui=False)


def n_columns(width: int, acceleration: float, n_centre: int = 0) -> int:
    """Columns sampled in all at acceleration R: ``max(n_centre, max(1, round(W / R)))``."""
    return max(int(n_centre), max(1, int(round(width / float(acceleration)))))


@lru_cache(maxsize=4)
def _design(path: str) -> tuple[np.ndarray, np.ndarray]:
    if not Path(path).is_file():
        raise InputError("the learned sampling design is not installed (reinstall "
                         "napari-invrec); pick pattern 'random' or 'equispaced'")
    rec = json.loads(Path(path).read_text())
    return (np.asarray(rec["frequencies"], dtype=np.float64),
            np.asarray(rec["density"], dtype=np.float64))


def learned_density(width: int, design: str | Path = LEARNED_DESIGN) -> np.ndarray:
    r"""Sampling density of each of ``width`` columns under a learned design.

    A design (:mod:`napari_invrec.core.training.acquisition`) is a density :math:`p(|f|)` over
    the absolute normalised frequency :math:`|f| = |c - W/2| / W \in [0, 1/2]` (symmetric:
    real images have Hermitian k-space, so a line and its mirror carry the same information
    only for real images, and the design does not rely on that). It is interpolated linearly
    to the columns ``c`` of any width.
    """
    f, d = _design(str(design))
    c = np.arange(width)
    return np.interp(np.abs(c - width // 2) / width, f, d)


def ranked_columns(density: np.ndarray, n: int, keep: np.ndarray | None = None) -> np.ndarray:
    """Boolean mask of exactly ``n`` columns: ``keep`` (always sampled) and then the highest
    ``density``, ties broken towards the centre column ``W // 2`` and then to the left."""
    w = len(density)
    c = np.arange(w)
    order = np.lexsort((c, np.abs(c - w // 2), -np.asarray(density, dtype=np.float64)))
    lines = np.zeros(w, dtype=bool) if keep is None else np.asarray(keep, dtype=bool).copy()
    for i in order:
        if lines.sum() >= n:
            break
        lines[i] = True
    return lines


def column_mask(p: MRIParams, width: int) -> np.ndarray:
    """Boolean ``(W,)`` array of sampled columns for ``p.pattern``.

    ``round(center_fraction * W)`` columns around the DC column ``W // 2`` are always kept (at
    least the DC column when ``center_fraction > 0``). ``random`` adds columns drawn without
    replacement (CPU generator seeded by ``seed``) up to ``max(n_centre, round(W / R))`` in all;
    ``equispaced`` keeps columns ``round(W // 2 + k R)`` for integer ``k``, plus the centre;
    ``learned`` adds the columns of highest density under the shipped learned design
    (:func:`learned_density`, learned at R = 4 together with its reconstruction network) up to
    exactly ``max(n_centre, round(W / R))`` in all (at other accelerations: the same ranking).

    Raises
    ------
    InputError
        ``acceleration < 1``, ``center_fraction`` outside [0, 1] or an unknown pattern.
    """
    r, cf = float(p.acceleration), float(p.center_fraction)
    if not (math.isfinite(r) and r >= 1):
        raise InputError(f"acceleration must be >= 1, got {r}")
    if not 0 <= cf <= 1:
        raise InputError(f"center_fraction must be in [0, 1], got {cf}")
    if p.pattern not in PATTERNS:
        raise InputError(f"unknown pattern {p.pattern!r}; choose one of {PATTERNS}")
    lines = np.zeros(width, dtype=bool)
    centre = centre_columns(width, cf)
    n_centre = centre.stop - centre.start
    lines[centre] = True
    if p.pattern == "learned":
        return ranked_columns(learned_density(width), n_columns(width, r, n_centre), lines)
    if p.pattern == "random":
        extra = n_columns(width, r, n_centre) - n_centre
        others = np.flatnonzero(~lines)
        g = torch.Generator().manual_seed(int(p.seed))
        pick = torch.randperm(len(others), generator=g)[:extra].numpy()
        lines[others[pick]] = True
    else:
        k = np.arange(-math.ceil(width / r) - 1, math.ceil(width / r) + 2)
        pos = np.round(width // 2 + k * r).astype(int)
        lines[pos[(pos >= 0) & (pos < width)]] = True
    return lines


def mri_mask(p: MRIParams, shape: tuple[int, int]) -> torch.Tensor:
    """The float32 0/1 sampling mask ``(H, W)`` on the CPU (custom array or pattern)."""
    h, w = shape
    if p.mask_array is None:
        col = torch.from_numpy(column_mask(p, w).astype(np.float32))
        return col.expand(h, w).clone()
    a = np.asarray(p.mask_array)
    if a.ndim == 1:
        col = torch.from_numpy(check_mask_array(a, (w,), "MRI column mask"))
        return col.expand(h, w).clone()
    if a.ndim == 2:
        return torch.from_numpy(check_mask_array(a, shape, "MRI mask"))
    raise InputError(f"MRI mask_array must be (W,) = ({w},) sampled columns or (H, W) = {shape}, "
                     f"got shape {a.shape}")


@register_operator
class MRI(SampleMask, LinearOperator):
    """Single-coil Cartesian MRI: centred orthonormal FFT with column undersampling.

    Attributes
    ----------
    mask
        Sampling mask as a numpy float32 ``(H, W)`` copy (1 = sampled, DC at the centre).
    """

    name = "mri"
    Params = MRIParams
    complex_image = True
    complex_measurement = True

    def __init__(self, shape: tuple[int, int], params: MRIParams | None = None, *,
                 device: torch.device | str | None = None) -> None:
        super().__init__(shape, params, device=device)
        self.register_buffer("_mask", mri_mask(self.params, self.shape).to(self.device),
                             persistent=False)

    @property
    def mask(self) -> np.ndarray:
        return self._mask.detach().cpu().numpy().copy()

    def A(self, x: Tensor) -> Tensor:  # noqa: N802
        """:math:`M \\odot S \\mathcal F S^{-1} x` (complex64)."""
        self.check_image(x)
        return self._mask * fft2c(self.as_image(x))

    def A_adjoint(self, y: Tensor) -> Tensor:  # noqa: N802
        """:math:`S \\mathcal F^H S^{-1} (M \\odot y)` (complex64)."""
        self.check_measurement(y)
        return ifft2c(self._mask * self.as_measurement(y))

    def A_pinv(self, y: Tensor) -> Tensor:  # noqa: N802
        """:math:`A^+ = A^H` (unitary transform times a projection)."""
        return self.A_adjoint(y)

    def norm(self) -> float:
        return float(self._mask.detach().max())

    def measure(self, x: Tensor, noise: NoiseParams | None = None,
                generator: torch.Generator | None = None) -> Tensor:
        """Noisy k-space, zero on unsampled entries: :math:`M \\odot N(A x)`."""
        return self._mask * super().measure(x, noise, generator)

    def measurement_views(self, y: Tensor) -> dict[str, Tensor]:
        """``{"sampling mask": M}``, the float32 ``(H, W)`` 0/1 mask (``y`` is not used)."""
        return {"sampling mask": self._mask.detach().clone()}
