r"""Compressed sensing: :math:`m < n` random linear measurements of an image of :math:`n` pixels.

Dense ensembles (``gaussian``, ``bernoulli``):

.. math::

    y = M\,\mathrm{vec}(x), \qquad A^T y = \mathrm{vec}^{-1}(M^T y), \qquad
    M_{ij} \sim \tfrac{1}{\sqrt m}\,\mathcal N(0, 1)
    \ \text{or}\ \tfrac{1}{\sqrt m}\,\{\pm 1\},

so that :math:`E[M^T M] = I`. The :math:`m \times n` matrix is stored (float32); ensembles whose
matrix would exceed ``max_matrix_gb`` are refused (use ``structured``). The pseudo-inverse is the
CG on :math:`M M^T z = y`, :math:`x = M^T z` (the nonzero singular values of :math:`M` lie near
:math:`[\sqrt{n/m} - 1, \sqrt{n/m} + 1]`: well conditioned unless ``ratio`` is close to 1).

Structured ensemble (``structured``): random signs, an orthonormal 2-D DCT and a random subset,

.. math::

    y = S\,F\,D\,x, \qquad F X = C_H X C_W^T, \qquad A^T y = D\,F^T S^T y, \qquad
    A^+ = A^T,

with :math:`D = \mathrm{diag}(\pm 1)`, :math:`C_N` the orthonormal DCT-II matrix
:math:`(C_N)_{k\ell} = \alpha_k \cos\big(\pi (2\ell + 1) k / 2N\big)`,
:math:`\alpha_0 = \sqrt{1/N}`, :math:`\alpha_k = \sqrt{2/N}` (so :math:`F^T F = I`) and
:math:`S` the selection of :math:`m` of the :math:`n` coefficients (kept in raster order). The rows
of :math:`A` are orthonormal: :math:`A A^T = I`, :math:`A^+ = A^T`, :math:`\|A\|_2 = 1`. It needs
only :math:`O(H^2 + W^2 + n)` memory and two small matrix products per image, so it works at
any size.

Randomness: the matrix, signs and subset are drawn from a CPU :class:`torch.Generator` seeded
by ``seed`` and then moved to the device, so every device sees the same operator.

Measurement layout: the :math:`m` measurements form a vector; it is stored row by row in a 2-D
array of shape :math:`(\lceil m / W \rceil, W)` (so it displays as an image). Entries past
:math:`m` are padding: always zero in :math:`A x` and in simulated measurements, and ignored by
:math:`A^T`. :attr:`CS.mask` marks the real entries. The operator applies that mask on both
sides (:math:`A = K M`, :math:`A^T = M^T K`), so a copy with a subset of the entries
(:meth:`~napari_invrec.core.operators.base.SampleMask.with_mask_stack`) measures only those
rows: measurement splitting holds rows out this way.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..errors import InputError
from ..linalg import conjugate_gradient
from ..params import param
from .base import LinearOperator, SampleMask
from .noise import NoiseParams
from .registry import register_operator

Tensor = torch.Tensor
ENSEMBLES = ("gaussian", "bernoulli", "structured")


@dataclass
class CSParams:
    """Random measurement ensemble of compressed sensing."""

    ensemble: str = param("gaussian", "measurement ensemble (structured: random-sign "
                          "subsampled DCT, any image size)", choices=ENSEMBLES)
    ratio: float = param(0.5, "sampling ratio m / n (measurements per pixel)", min=0.001,
                         max=1.0, step=0.05)
    seed: int = param(0, "seed of the random matrix / signs and subset", min=0, max=2**31 - 1)
    max_matrix_gb: float = param(1.0, "largest dense matrix allowed (GB, float32)", min=0.001,
                                 max=1000.0, when={"ensemble": ("gaussian", "bernoulli")})


def dct_matrix(n: int) -> torch.Tensor:
    r"""Orthonormal DCT-II matrix :math:`C_n` (float64, CPU): :math:`C_n C_n^T = I`."""
    k = torch.arange(n, dtype=torch.float64)[:, None]
    ell = torch.arange(n, dtype=torch.float64)[None, :]
    c = torch.cos(math.pi * (2 * ell + 1) * k / (2 * n)) * math.sqrt(2.0 / n)
    c[0] = math.sqrt(1.0 / n)
    return c


def n_measurements(p: CSParams, n: int) -> int:
    """:math:`m = \\max(1, \\mathrm{round}(\\mathrm{ratio} \\cdot n))`.

    Raises
    ------
    InputError
        ``ratio`` outside (0, 1] or an unknown ensemble.
    """
    if p.ensemble not in ENSEMBLES:
        raise InputError(f"unknown ensemble {p.ensemble!r}; choose one of {ENSEMBLES}")
    r = float(p.ratio)
    if not (math.isfinite(r) and 0 < r <= 1):
        raise InputError(f"ratio must be in (0, 1], got {p.ratio}")
    return max(1, min(n, int(round(r * n))))


@register_operator
class CS(SampleMask, LinearOperator):
    """Compressed sensing: random Gaussian / Bernoulli matrix or random-sign subsampled DCT.

    Attributes
    ----------
    m
        Number of measurements.
    matrix
        Dense ensembles: buffer ``(m, n)`` float32, :math:`M`. Structured: not present.
    """

    name = "cs"
    Params = CSParams
    pinv_iters = 200


    @classmethod
    def image_shape_for(cls, measurement_shape: tuple[int, ...], params: Any) -> tuple[int, int]:
        """Not defined: a vector of projections does not determine the image size."""
        raise InputError("a compressed-sensing measurement does not determine the image size; "
                         "simulate it with napari-invrec (the layer then carries its operator) "
                         "or use the Python API with make_operator('cs', shape)")

    def __init__(self, shape: tuple[int, int], params: CSParams | None = None, *,
                 device: torch.device | str | None = None) -> None:
        super().__init__(shape, params, device=device)
        h, w = self.shape
        n = h * w
        self.m = n_measurements(self.params, n)
        self.structured = self.params.ensemble == "structured"
        g = torch.Generator().manual_seed(int(self.params.seed))
        dev = self.device
        if self.structured:
            signs = torch.randint(0, 2, (h, w), generator=g, dtype=torch.float32) * 2 - 1
            sel = torch.sort(torch.randperm(n, generator=g)[:self.m]).values
            self.register_buffer("_signs", signs.to(dev), persistent=False)
            self.register_buffer("_select", sel.to(dev), persistent=False)
            self.register_buffer("_ch", dct_matrix(h).float().to(dev), persistent=False)
            self.register_buffer("_cw", dct_matrix(w).float().to(dev), persistent=False)
        else:
            gb = self.m * n * 4 / 1e9
            limit = float(self.params.max_matrix_gb)
            if gb > limit:
                raise InputError(
                    f"a dense {self.params.ensemble} matrix for a {h}x{w} image at ratio "
                    f"{self.params.ratio} is {self.m} x {n} = {gb:.2f} GB (> max_matrix_gb = "
                    f"{limit:g}); use ensemble='structured' (any image size), a smaller image "
                    "or ratio, or raise max_matrix_gb")
            if self.params.ensemble == "gaussian":
                mat = torch.randn((self.m, n), generator=g)
            else:
                mat = torch.randint(0, 2, (self.m, n), generator=g, dtype=torch.float32)
                mat.mul_(2).sub_(1)
            mat.mul_(1.0 / math.sqrt(self.m))
            self.register_buffer("matrix", mat.to(dev), persistent=False)
        mask = torch.zeros(self._rows * w)
        mask[:self.m] = 1.0
        self.register_buffer("_mask", mask.view(self._rows, w).to(dev), persistent=False)

    # ------------------------------------------------------------------ layout
    @property
    def _rows(self) -> int:
        return -(-self.m // self.shape[1])

    @property
    def measurement_shape(self) -> tuple[int, int]:
        """:math:`(\\lceil m / W \\rceil, W)`: the measurement vector, row by row, zero-padded."""
        return (self._rows, self.shape[1])

    @property
    def mask(self) -> np.ndarray:
        """Float32 array of the measurement shape: 1 on the ``m`` real entries, 0 on padding."""
        return self._mask.detach().cpu().numpy().copy()

    def _pack(self, v: Tensor) -> Tensor:
        """``(B, C, m)`` -> ``(B, C, rows, W)`` with zero padding."""
        pad = self._rows * self.shape[1] - self.m
        return torch.nn.functional.pad(v, (0, pad)).view(*v.shape[:2], *self.measurement_shape)

    def _unpack(self, y: Tensor) -> Tensor:
        """``(B, C, rows, W)`` -> ``(B, C, m)`` (padding dropped)."""
        return y.reshape(*y.shape[:2], -1)[..., :self.m]

    # ------------------------------------------------------------------ the maths
    def _row_mask(self) -> Tensor:
        """The mask as a row vector ``(m,)`` (or ``(K, 1, m)`` for a stack)."""
        return self._mask.reshape(*self._mask.shape[:-2], -1)[..., :self.m]

    def A(self, x: Tensor) -> Tensor:  # noqa: N802
        """:math:`K M \\mathrm{vec}(x)` or :math:`K S F D x`, packed into the measurement shape
        (:math:`K` the mask: the real entries, or the subset a split keeps)."""
        self.check_image(x)
        x = self.as_image(x)
        if self.structured:
            coef = self._ch @ (x * self._signs) @ self._cw.T
            v = coef.flatten(2).index_select(2, self._select)
        else:
            v = x.flatten(2) @ self.matrix.T
        return self._pack(v) * self._mask

    def A_adjoint(self, y: Tensor) -> Tensor:  # noqa: N802
        """:math:`\\mathrm{vec}^{-1}(M^T K y)` or :math:`D F^T S^T K y` (padding ignored)."""
        self.check_measurement(y)
        v = self._unpack(self.as_measurement(y) * self._mask)
        if not self.structured:
            return (v @ self.matrix).view(*v.shape[:2], *self.shape)
        coef = torch.zeros((*v.shape[:2], self.shape[0] * self.shape[1]), dtype=v.dtype,
                           device=v.device)
        coef.index_copy_(2, self._select, v)
        coef = coef.view(*v.shape[:2], *self.shape)
        return (self._ch.T @ coef @ self._cw) * self._signs

    def A_pinv(self, y: Tensor) -> Tensor:  # noqa: N802
        """Structured: :math:`A^T y` (orthonormal rows); dense: :math:`M^T K z` with
        :math:`K M M^T K z = K y` solved by CG in measurement space (:attr:`pinv_iters`; the
        iterates stay on the kept rows, where the system is positive definite)."""
        if self.structured:
            return self.A_adjoint(y)
        self.check_measurement(y)
        k = self._row_mask()
        v = self._unpack(self.as_measurement(y)) * k
        z = conjugate_gradient(lambda u: ((u * k) @ self.matrix) @ self.matrix.T * k, v,
                               tol=1e-7, maxiter=self.pinv_iters)
        return ((z * k) @ self.matrix).view(*z.shape[:2], *self.shape)

    def norm(self) -> float:
        """Structured: 1; dense: power iteration (base class)."""
        return 1.0 if self.structured else super().norm()

    def measure(self, x: Tensor, noise: NoiseParams | None = None,
                generator: torch.Generator | None = None) -> Tensor:
        """Noisy measurement with the padding entries kept at zero."""
        return self._mask * super().measure(x, noise, generator)

    def measurement_views(self, y: Tensor) -> dict[str, Tensor]:
        """Structured: the measured DCT coefficients in place (zero elsewhere) and their mask."""
        if not self.structured:
            return {}
        v = self._unpack(self.as_measurement(y))[0]
        coef = torch.zeros((v.shape[0], self.shape[0] * self.shape[1]), dtype=v.dtype,
                           device=v.device)
        coef.index_copy_(1, self._select, v)
        sampled = torch.zeros(self.shape[0] * self.shape[1], device=v.device)
        sampled[self._select] = 1.0
        return {"DCT coefficients": coef.view(-1, *self.shape),
                "DCT sampling mask": sampled.view(self.shape)}
