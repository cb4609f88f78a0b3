r"""Spectral decompositions :math:`A = U \Sigma V^H` of the operators that have a cheap one.

DDRM (Kawar et al., NeurIPS 2022) works coordinate-wise in the spectral basis: with
:math:`\bar x = V^H x` and, for :math:`s_i > 0`, :math:`\bar y_i = (U^H y)_i / s_i`, the
measurement :math:`y = A x + \sigma_y n` reads :math:`\bar y_i = \bar x_i + (\sigma_y / s_i)
\bar n_i`: each observed coordinate is the clean one plus white noise of std
:math:`\sigma_y / s_i` (for :math:`U, V` unitary and :math:`n` white).

Families and their factors (``F``: the orthonormal 2-D DFT, ``F_c`` the centred one of
:mod:`.mri`):

=========  ==========================  =========================  =======================
family     :math:`V^H x`               :math:`s`                  :math:`U^H y`
=========  ==========================  =========================  =======================
denoise    :math:`x`                   1                          :math:`y`
inpaint    :math:`x`                   mask :math:`m`             :math:`y`
blur       :math:`F x`                 :math:`|K|`                :math:`\overline{K/|K|}
                                                                  \odot F y`
mri        :math:`F_c x`               mask :math:`M`             :math:`y` (k-space)
=========  ==========================  =========================  =======================

For blur, :math:`A = F^H \mathrm{diag}(K) F` with :math:`K` the (unnormalised) DFT of the
periodic kernel, so :math:`U = F^H \mathrm{diag}(K/|K|)` (phase 1 where :math:`K = 0`).
Real images (denoise, inpaint, blur) take the real part of :math:`V \bar x`; spectral
coefficients of a real image are Hermitian-symmetric and every update that scales them by
functions of :math:`s` keeps them so. Super-resolution (decimation after blur) has an SVD made
of :math:`f^2 \times 1` aliasing blocks per low-resolution frequency; it is not implemented.
"""

from __future__ import annotations

from typing import Any

import torch

from ..errors import InputError
from .mri import fft2c, ifft2c

Tensor = torch.Tensor

__all__ = ["SpectralSVD", "SVD_FAMILIES", "spectral_svd"]

SVD_FAMILIES = ("denoise", "inpaint", "blur", "mri")


class SpectralSVD:
    r"""The factors of :math:`A = U\,\mathrm{diag}(s)\,V^H` for one operator.

    Attributes
    ----------
    s
        Singular values, real ``(H, W)`` on the operator's device (broadcast over B, C).
    complex_image
        Whether images are complex (then :meth:`V` keeps the complex result).
    """

    def __init__(self, op: Any, s: Tensor, kind: str, phase: Tensor | None = None) -> None:
        self.op, self.s, self.kind, self._phase = op, s, kind, phase
        self.complex_image = bool(op.complex_image)

    def Vh(self, x: Tensor) -> Tensor:  # noqa: N802 - the maths' name
        r""":math:`V^H x`: spectral coefficients of the image ``x`` ``(B, C, H, W)``."""
        if self.kind == "fft":
            return torch.fft.fft2(x, norm="ortho")
        if self.kind == "fftc":
            return fft2c(x)
        return x

    def V(self, c: Tensor) -> Tensor:  # noqa: N802
        r""":math:`V \bar x`: the image of spectral coefficients ``c`` (real part for real
        images)."""
        if self.kind == "fft":
            x = torch.fft.ifft2(c, norm="ortho")
        elif self.kind == "fftc":
            x = ifft2c(c)
        else:
            x = c
        return x if self.complex_image or not x.is_complex() else x.real

    def Uh(self, y: Tensor) -> Tensor:  # noqa: N802
        r""":math:`U^H y`: spectral coefficients of the measurement ``y``."""
        if self.kind == "fft":
            return torch.conj(self._phase) * torch.fft.fft2(y, norm="ortho")
        return y

    def observed(self, y: Tensor) -> Tensor:
        r""":math:`\bar y = (U^H y) / s` where :math:`s > 0`, 0 elsewhere."""
        pos = self.s > 0
        return torch.where(pos, self.Uh(y) / torch.where(pos, self.s, 1.0), 0.0)


def spectral_svd(op: Any) -> SpectralSVD:
    """The spectral decomposition of ``op`` (a family of :data:`SVD_FAMILIES`).

    Raises
    ------
    InputError
        For an operator family without one here (the message lists those that have one).
    """
    name = getattr(op, "name", type(op).__name__)
    dev = op.device
    if name == "denoise":
        return SpectralSVD(op, torch.ones(op.shape, device=dev), "identity")
    if name == "inpaint":
        return SpectralSVD(op, op._mask.to(dev).float(), "identity")
    if name == "mri":
        return SpectralSVD(op, op._mask.to(dev).float(), "fftc")
    if name == "blur":
        kernel = torch.fft.irfft2(op.transfer_function, s=op.shape)
        k_full = torch.fft.fft2(kernel)
        mag = k_full.abs()
        phase = torch.where(mag > 0, k_full / mag.clamp_min(1e-30), torch.ones_like(k_full))
        return SpectralSVD(op, mag, "fft", phase)
    raise InputError(f"operator {name!r} has no spectral decomposition here; ddrm supports "
                     f"{', '.join(SVD_FAMILIES)} (use dps, diffpir or score-dc instead)")
