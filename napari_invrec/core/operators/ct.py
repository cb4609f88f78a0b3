r"""Parallel-beam computed tomography: a discrete Radon transform and its exact transpose.

Geometry. Pixel :math:`(i, j)` of an ``(H, W)`` image has its centre at
:math:`(x_j, y_i) = (j - \tfrac{W-1}2,\ \tfrac{H-1}2 - i)` pixels (``x`` to the right, ``y``
**up**). Projection angle :math:`\theta_a = a\,\Theta / N_\theta` (:math:`a = 0, \dots,
N_\theta - 1`, :math:`\Theta` = ``angle_range``; 180° is a full parallel-beam scan, less is
limited-angle tomography). The detector coordinate of a point is
:math:`t = x \cos\theta + y \sin\theta`: at :math:`\theta = 0` each sinogram row holds the column
sums of the image (rays along ``y``). Detector bins have width :math:`d` pixels
(``detector_spacing``) and are centred on :math:`t_k = d\,(k - \tfrac{N_d - 1}2)`; the default
:math:`N_d = \lceil \sqrt2 \max(H, W) / d \rceil` sees the whole image at every angle.

Discretisation (distance-driven footprint). At angle :math:`\theta` the shadow of a pixel on the
detector is approximated by a box of width :math:`w_\theta = \max(|\cos\theta|, |\sin\theta|)`
centred on the pixel's :math:`t` (the boxes of a row, or of a column, then tile the detector
exactly, so a uniform image gives a sinogram without moiré). The pixel's value is shared among
the bins the box overlaps (at most three for :math:`d \ge 1/2`), in proportion
:math:`\omega_{a,p,k}` to the overlaps (:math:`\sum_k \omega_{a,p,k} = 1`):

.. math::

    (A x)_{a,k} = \frac{h}{d} \sum_{p} \omega_{a,p,k}\, x_p, \qquad
    (A^T y)_p = \frac{h}{d} \sum_{a,k} \omega_{a,p,k}\, y_{a,k}.

:math:`A^T` is the exact transpose of the same matrix (a scatter with ``index_add_`` forward, a
gather with the same indices and weights back), so :math:`\langle Ax, y\rangle = \langle x, A^T
y\rangle` to float rounding. Bins outside the detector (a user-set small :math:`N_d`) are
dropped in both directions.

Why half-pixel bins by default: with bins one pixel wide the detector cannot resolve the
image frequencies beyond its Nyquist limit (the corners of the 2-D spectrum, ~20 % of the
pixels' degrees of freedom), so :math:`A` is nearly singular there: on a 32 x 48 image with 60
angles its condition number is about 8e3 and CG needs thousands of iterations for the
pseudo-inverse. With :math:`d = 1/2` it is about 45 (12 on 33 x 31), and
:meth:`~.base.LinearOperator.A_pinv` (the base class's CG on the normal equations,
:attr:`CT.pinv_iters`) reaches its 1e-7 tolerance in about 60 (33 x 31) to 125 (32 x 48)
iterations.
Sparse-view and limited-angle geometries keep a genuine (near) null space.

Units: lengths are measured in units of the longer image side, :math:`h = 1 / \max(H, W)`, so a
sinogram value is a line integral over an image of unit width (an image in :math:`[0, 1]` gives
values in :math:`[0, \sqrt 2]`), and noise levels and regularisation weights mean the same at
every image size. The measurement is the sinogram, real, shape ``(n_angles, n_detectors)``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from ..errors import InputError
from ..params import param
from .base import LinearOperator
from .registry import register_operator

Tensor = torch.Tensor
_GUARD = 3  # guard bins on each side of a sinogram row (out-of-detector contributions)


@dataclass
class CTParams:
    """Parallel-beam tomography geometry."""

    n_angles: int = param(60, "number of projection angles", min=1, max=3600)
    angle_range: float = param(180.0, "angular range in degrees (< 180: limited-angle)",
                               min=1.0, max=360.0, step=5.0)
    n_detectors: int = param(0, "detector bins (0 = enough to see the whole image: "
                             "ceil(sqrt(2) * max(H, W) / detector_spacing))", min=0, max=65536)
    detector_spacing: float = param(0.5, "detector bin width in pixels (0.5 keeps the "
                                    "pseudo-inverse well conditioned)", min=0.5, max=4.0,
                                    step=0.25)


def ct_angles(p: CTParams) -> torch.Tensor:
    """Projection angles in radians (float64, CPU): :math:`a\\,\\Theta / N_\\theta`.

    Raises
    ------
    InputError
        ``n_angles < 1`` or ``angle_range`` outside (0, 360].
    """
    na, rng = int(p.n_angles), float(p.angle_range)
    if na < 1:
        raise InputError(f"n_angles must be >= 1, got {na}")
    if not (math.isfinite(rng) and 0 < rng <= 360):
        raise InputError(f"angle_range must be in (0, 360] degrees, got {rng}")
    return torch.arange(na, dtype=torch.float64) * math.radians(rng) / na


@register_operator
class CT(LinearOperator):
    """Parallel-beam CT: a sinogram of line integrals (exact discrete transpose as adjoint).

    Attributes
    ----------
    angles
        Buffer, float64, the projection angles in radians.
    n_detectors
        Number of detector bins :math:`N_d`.
    pixel_size, bin_width
        :math:`h = 1 / \\max(H, W)` and :math:`d h` (lengths in units of the longer image side).
    table_cache_bytes
        The footprint tables (an int32 bin index and one or two float32 weights per angle and
        pixel: 8 or 12 bytes) are kept between calls when they take at most this many bytes
        (256 MiB); larger geometries recompute them chunk by chunk at every call.
    """

    name = "ct"
    Params = CTParams
    pinv_iters: ClassVar[int] = 150
    table_cache_bytes: ClassVar[int] = 2 ** 28
    _chunk_entries: ClassVar[int] = 2 ** 20


    @classmethod
    def image_shape_for(cls, measurement_shape: tuple[int, ...], params: Any) -> tuple[int, int]:
        """Square image whose default detector covers the sinogram's ``n_detectors`` bins."""
        n_angles, n_det = (int(v) for v in measurement_shape[-2:])
        if n_angles != int(params.n_angles):
            raise InputError(f"the sinogram has {n_angles} angles (rows) but n_angles is "
                             f"{params.n_angles}; set n_angles to {n_angles}")
        d = float(params.detector_spacing)
        n = max(2, int(n_det * d / math.sqrt(2.0)))
        if int(params.n_detectors) == 0:
            fits = [k for k in range(max(2, n - 2), n + 3)
                    if math.ceil(math.sqrt(2.0) * k / d) == n_det]
            if not fits:
                raise InputError(f"no square image gives {n_det} detector bins at spacing {d}; "
                                 "set n_detectors to the sinogram's width")
            n = fits[-1]
        return (n, n)

    def __init__(self, shape: tuple[int, int], params: CTParams | None = None, *,
                 device: torch.device | str | None = None) -> None:
        super().__init__(shape, params, device=device)
        h, w = self.shape
        theta = ct_angles(self.params)
        d = float(self.params.detector_spacing)
        if not (math.isfinite(d) and 0.5 <= d <= 4.0):
            raise InputError(f"detector_spacing must be in [0.5, 4] pixels, got {d}")
        nd = int(self.params.n_detectors)
        if nd < 0:
            raise InputError(f"n_detectors must be >= 0 (0 = automatic), got {nd}")
        self.n_detectors = nd if nd > 0 else int(math.ceil(math.sqrt(2.0) * max(h, w) / d))
        self.pixel_size = 1.0 / max(h, w)
        self.bin_width = d * self.pixel_size
        self._three = d < 1.0  # a footprint (width <= 1 pixel) may overlap three bins
        self._stride = self.n_detectors + 2 * _GUARD  # one padded sinogram row
        c, s = torch.cos(theta), torch.sin(theta)
        width = torch.maximum(c.abs(), s.abs())  # footprint width w_theta in [1/sqrt2, 1]
        xs = torch.arange(w, dtype=torch.float64) - (w - 1) / 2
        ys = (h - 1) / 2 - torch.arange(h, dtype=torch.float64)
        # in bin units: v = (t - w/2) / d + (N_d - 1)/2 + 1/2 = row term + column term
        row = (s[:, None] * ys[None, :] - width[:, None] / 2) / d \
            + ((self.n_detectors - 1) / 2 + 0.5)
        dev = self.device
        self.register_buffer("angles", theta.to(dev), persistent=False)
        self.register_buffer("_row", row.float().to(dev), persistent=False)
        self.register_buffer("_col", (c[:, None] * xs[None, :] / d).float().to(dev),
                             persistent=False)
        self.register_buffer("_width", (width / d).float().to(dev), persistent=False)
        self._cache: tuple[torch.device, list] | None = None

    @property
    def measurement_shape(self) -> tuple[int, int]:
        """``(n_angles, n_detectors)``."""
        return (int(self.params.n_angles), self.n_detectors)

    # ------------------------------------------------------------------ tables
    def _table(self, a0: int, a1: int) -> tuple[Tensor, Tensor, Tensor | None]:
        """Footprint table of angles ``a0 .. a1 - 1``, flattened over (angle, pixel).

        Returns the index of the first bin ``k0`` (int32, into the padded flat sinogram) and
        the shares :math:`\\omega_0` of bin ``k0`` and :math:`\\omega_2` of bin ``k0 + 2``
        (``None`` when a footprint spans at most two bins); bin ``k0 + 1`` gets the rest.
        With the footprint :math:`[\\ell, \\ell + W']` in bin units, :math:`v = \\ell + 1/2`,
        :math:`k_0 = \\lfloor v \\rfloor`, :math:`f = v - k_0`:
        :math:`\\omega_0 = \\min(1 - f, W') / W'`, :math:`\\omega_2 = (f + W' - 2)_+ / W'`.
        ``k0`` is clamped to ``[-3, N_d]`` so that off-detector shares land in guard bins.
        """
        v = self._row[a0:a1, :, None] + self._col[a0:a1, None, :]
        wid = self._width[a0:a1, None, None]
        k0 = torch.floor(v)
        f = v.sub_(k0)
        w0 = torch.minimum(1.0 - f, wid).div_(wid)
        w2 = (f + wid).sub_(2.0).clamp_(min=0.0).div_(wid).reshape(-1) if self._three else None
        idx = k0.clamp_(-_GUARD, self.n_detectors).to(torch.int32)
        offset = torch.arange(a0, a1, device=v.device, dtype=torch.int32) * self._stride
        idx += (offset + _GUARD)[:, None, None]
        return idx.reshape(-1), w0.reshape(-1), w2

    def _tables(self) -> Iterator[tuple[Tensor, Tensor, Tensor | None]]:
        """Tables chunk by chunk over the angles (cached when small enough)."""
        if self._cache is not None and self._cache[0] == self.device:
            yield from self._cache[1]
            return
        na, npix = self.measurement_shape[0], self.shape[0] * self.shape[1]
        step = max(1, self._chunk_entries // npix)
        keep = na * npix * (12 if self._three else 8) <= self.table_cache_bytes
        tabs = []
        for a0 in range(0, na, step):
            tab = self._table(a0, min(na, a0 + step))
            if keep:
                tabs.append(tab)
            yield tab
        if keep:
            self._cache = (self.device, tabs)

    # ------------------------------------------------------------------ the maths
    def A(self, x: Tensor) -> Tensor:  # noqa: N802
        """Sinogram :math:`(A x)_{a,k}` (scatter of the pixel footprints onto the bins)."""
        self.check_image(x)
        x = self.as_image(x)
        b, c = x.shape[:2]
        na, nd = self.measurement_shape
        npix = self.shape[0] * self.shape[1]
        xf = x.reshape(b * c, 1, npix)
        out = torch.zeros(b * c, na * self._stride, dtype=x.dtype, device=x.device)
        for idx, w0, w2 in self._tables():
            for i in range(b * c):
                v0 = (xf[i] * w0.view(-1, npix)).view(-1)
                rest = xf[i].expand(len(w0) // npix, npix).reshape(-1) - v0
                out[i].index_add_(0, idx, v0)
                if w2 is not None:
                    v2 = (xf[i] * w2.view(-1, npix)).view(-1)
                    rest -= v2
                    out[i, 2:].index_add_(0, idx, v2)
                out[i, 1:].index_add_(0, idx, rest)
        y = out.view(b, c, na, self._stride)[..., _GUARD:_GUARD + nd]
        return y * (self.pixel_size / float(self.params.detector_spacing))

    def A_adjoint(self, y: Tensor) -> Tensor:  # noqa: N802
        """Back-projection :math:`A^T y` (gather with the same indices and weights)."""
        self.check_measurement(y)
        y = self.as_measurement(y)
        b, c = y.shape[:2]
        na, nd = self.measurement_shape
        pad = torch.zeros(b * c, na, self._stride, dtype=y.dtype, device=y.device)
        pad[..., _GUARD:_GUARD + nd] = y.reshape(b * c, na, nd)
        pad = pad.view(b * c, -1)
        npix = self.shape[0] * self.shape[1]
        x = torch.zeros(b * c, npix, dtype=y.dtype, device=y.device)
        for idx, w0, w2 in self._tables():
            for i in range(b * c):
                g1 = pad[i, 1:].index_select(0, idx)
                acc = torch.lerp(g1, pad[i].index_select(0, idx), w0)
                if w2 is not None:
                    acc.addcmul_(pad[i, 2:].index_select(0, idx).sub_(g1), w2)
                x[i] += acc.view(-1, npix).sum(0)
        return x.view(b, c, *self.shape) * (self.pixel_size / float(self.params.detector_spacing))
