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
superres   :math:`Q_k^H (F x)_{[k]}`   :math:`\|a_k\|` (one per   :math:`-\alpha_k (F y)_k`
                                       block, 0 for the rest)
=========  ==========================  =========================  =======================

For blur, :math:`A = F^H \mathrm{diag}(K) F` with :math:`K` the (unnormalised) DFT of the
periodic kernel, so :math:`U = F^H \mathrm{diag}(K/|K|)` (phase 1 where :math:`K = 0`).
Real images (denoise, inpaint, blur, superres) take the real part of :math:`V \bar x`; spectral
coefficients of a real image are Hermitian-symmetric and every update that scales them by
functions of :math:`s` keeps them so.

Super-resolution :math:`A = S_f B` (periodic blur :math:`B`, keep every :math:`f`-th pixel) on
an :math:`H \times W` image with :math:`f \mid H, W`, :math:`M = (H/f, W/f)`: decimation folds
the :math:`f^2` frequencies :math:`k + jM`, :math:`j \in \{0..f-1\}^2`, onto the
low-resolution frequency :math:`k`, so :math:`(F y)_k = a_k^\top (F x)_{[k]}` with
:math:`(F x)_{[k]} \in \mathbb C^{f^2}` those coefficients and :math:`a_k = K_{[k]} / f`. Each
block is rank one: :math:`s_k = \|a_k\|`, right singular vector :math:`v_k = \bar a_k / s_k`,
completed to a unitary :math:`Q_k` by the Householder reflection
:math:`Q_k = I - 2 w w^H / w^H w`, :math:`w = v_k + \alpha_k e_1`,
:math:`\alpha_k = v_{k,1} / |v_{k,1}|` (so :math:`Q_k e_1 = -\bar\alpha_k v_k`). The
block's first coordinate is the observed one, the other :math:`f^2 - 1` span its null space.
"""

from __future__ import annotations

from typing import Any

import torch

from ..errors import InputError
from .mri import fft2c, ifft2c

Tensor = torch.Tensor

__all__ = ["SpectralSVD", "SVD_FAMILIES", "spectral_svd"]

SVD_FAMILIES = ("denoise", "inpaint", "blur", "mri", "superres")


class SpectralSVD:
    r"""The factors of :math:`A = U\,\mathrm{diag}(s)\,V^H` for one operator.

    Attributes
    ----------
    s
        Singular values, real ``(H, W)`` on the operator's device (broadcast over B, C).
    complex_image
        Whether images are complex (then :meth:`V` keeps the complex result).
    """

    def __init__(self, op: Any, s: Tensor, kind: str, phase: Tensor | None = None,
                 householder: Tensor | None = None, factor: int = 1) -> None:
        self.op, self.s, self.kind, self._phase = op, s, kind, phase
        self._w, self._f = householder, int(factor)
        self.complex_image = bool(op.complex_image)

    # ------------------------------------------------------------ aliasing blocks (superres)
    def _blocks(self, c: Tensor) -> Tensor:
        """``(..., H, W)`` -> ``(..., M1, M2, f^2)``: the aliased coefficients of each
        low-resolution frequency, ``j = (0, 0)`` first."""
        f = self._f
        *lead, h, w = c.shape
        c = c.reshape(*lead, f, h // f, f, w // f)
        n = len(lead)
        c = c.permute(*range(n), n + 1, n + 3, n, n + 2)
        return c.reshape(*lead, h // f, w // f, f * f)

    def _unblocks(self, b: Tensor) -> Tensor:
        f = self._f
        *lead, m1, m2, _ = b.shape
        n = len(lead)
        b = b.reshape(*lead, m1, m2, f, f).permute(*range(n), n + 2, n, n + 3, n + 1)
        return b.reshape(*lead, f * m1, f * m2)

    def _reflect(self, c: Tensor) -> Tensor:
        r""":math:`Q_k c` per block (:math:`Q_k` is Hermitian and unitary: its own inverse)."""
        w = self._w
        b = self._blocks(c)
        coef = (torch.conj(w) * b).sum(-1, keepdim=True)
        return self._unblocks(b - 2.0 * w * coef)

    # ------------------------------------------------------------ the factors
    def Vh(self, x: Tensor) -> Tensor:  # noqa: N802 - the maths' name
        r""":math:`V^H x`: spectral coefficients of the image ``x`` ``(B, C, H, W)``."""
        if self.kind == "fft":
            return torch.fft.fft2(x, norm="ortho")
        if self.kind == "fftc":
            return fft2c(x)
        if self.kind == "blocks":
            return self._reflect(torch.fft.fft2(x, norm="ortho"))
        return x

    def V(self, c: Tensor) -> Tensor:  # noqa: N802
        r""":math:`V \bar x`: the image of spectral coefficients ``c`` (real part for real
        images)."""
        if self.kind == "fft":
            x = torch.fft.ifft2(c, norm="ortho")
        elif self.kind == "fftc":
            x = ifft2c(c)
        elif self.kind == "blocks":
            x = torch.fft.ifft2(self._reflect(c), norm="ortho")
        else:
            x = c
        return x if self.complex_image or not x.is_complex() else x.real

    def Uh(self, y: Tensor) -> Tensor:  # noqa: N802
        r""":math:`U^H y`: spectral coefficients of the measurement ``y``."""
        if self.kind == "fft":
            return torch.conj(self._phase) * torch.fft.fft2(y, norm="ortho")
        if self.kind == "blocks":
            first = self._phase * torch.fft.fft2(y, norm="ortho")
            b = torch.zeros((*first.shape, self._f ** 2), dtype=first.dtype,
                            device=first.device)
            b[..., 0] = first
            return self._unblocks(b)
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
    if name == "superres":
        return _superres_svd(op)
    raise InputError(f"operator {name!r} has no spectral decomposition here; ddrm supports "
                     f"{', '.join(SVD_FAMILIES)} (use dps, diffpir or score-dc instead)")


def _superres_svd(op: Any) -> SpectralSVD:
    """The aliasing-block SVD of a :class:`~.superres.SuperRes` (module docstring)."""
    f = int(op.factor)
    h, w = op.shape
    if h % f or w % f:
        raise InputError(f"ddrm super-resolution needs an image size divisible by the factor "
                         f"{f}, got {h}x{w}; crop the image or use dps, diffpir or score-dc")
    blur = op.blur
    kernel = torch.fft.irfft2(blur.transfer_function, s=op.shape)
    k_full = torch.fft.fft2(kernel).to(torch.complex64)
    svd = SpectralSVD(op, torch.zeros(op.shape, device=op.device), "blocks", factor=f)
    a = svd._blocks(k_full) / f                                    # (M1, M2, f^2)
    s_k = torch.linalg.vector_norm(a, dim=-1)                      # (M1, M2)
    ok = s_k > 1e-12
    e1 = torch.zeros_like(a)
    e1[..., 0] = 1.0
    v = torch.where(ok[..., None], torch.conj(a) / s_k.clamp_min(1e-30)[..., None], e1)
    v0 = v[..., 0]
    alpha = torch.where(v0.abs() > 1e-12, v0 / v0.abs().clamp_min(1e-30),
                        torch.ones_like(v0))
    hh = v + alpha[..., None] * e1
    svd._w = hh / torch.linalg.vector_norm(hh, dim=-1, keepdim=True)
    svd._phase = -alpha
    s_blocks = torch.zeros(a.shape, device=op.device)
    s_blocks[..., 0] = torch.where(ok, s_k, 0.0).real
    svd.s = svd._unblocks(s_blocks)
    return svd
