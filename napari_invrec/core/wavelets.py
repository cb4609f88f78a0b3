r"""Orthogonal 2-D discrete wavelet transform (Daubechies filters, periodic boundary).

One level of the 1-D transform of a signal of even length :math:`N` is

.. math::

    a_k = \sum_{n=0}^{L-1} h_n\, x_{(2k + n) \bmod N}, \qquad
    d_k = \sum_{n=0}^{L-1} g_n\, x_{(2k + n) \bmod N}, \qquad
    g_n = (-1)^n h_{L-1-n},

for :math:`k = 0, \dots, N/2 - 1`, with the Daubechies lowpass filter :math:`h` of
:math:`p` vanishing moments (:math:`L = 2p` taps). Because :math:`h` satisfies
:math:`\sum_n h_n h_{n+2k} = \delta_k` and the boundary is periodic, the map
:math:`x \mapsto (a, d)` is an orthogonal :math:`N \times N` matrix: the synthesis
(:func:`idwt2`) is its transpose and its inverse, exactly.

The 2-D transform applies the 1-D one along the width, then the height, and recurses on the
low-low band (Mallat's pyramid). Coefficients are stored in one tensor of the image's shape
("Mallat layout"): after ``levels`` levels the top-left
:math:`H / 2^{J} \times W / 2^{J}` block is the approximation, and each level :math:`j`
contributes the three detail blocks around the top-left :math:`H/2^{j-1} \times W/2^{j-1}`
block. So :math:`\|W x\| = \|x\|` and thresholding is elementwise.

A periodic transform of ``levels`` levels needs :math:`H` and :math:`W` divisible by
:math:`2^{J}`; :func:`padded_size` and :func:`pad_symmetric` extend other images. :math:`W` is
orthogonal on the *padded* domain only; callers that need an exact prox (``wavelet-fista``)
optimise over the padded image and crop (see :mod:`.methods.sparsity`).

Everything is vectorised by strided 1-D convolutions (no per-pixel Python loop), and
works for any leading batch shape, real or complex dtype, on any device.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812

from .errors import InputError

Tensor = torch.Tensor

#: Wavelet names and their number of vanishing moments ``p`` (filter length ``2 p``).
WAVELETS: dict[str, int] = {"haar": 1, "db1": 1, "db2": 2, "db4": 4}

__all__ = ["WAVELETS", "wavelet_filters", "dwt2", "idwt2", "approx_shape", "max_levels",
           "padded_size", "pad_symmetric", "check_wavelet"]


def check_wavelet(name: str) -> int:
    """Number of vanishing moments of ``name``; :class:`InputError` if it is unknown."""
    if name not in WAVELETS:
        raise InputError(f"unknown wavelet {name!r}; choose one of {', '.join(WAVELETS)}")
    return WAVELETS[name]


@functools.cache
def _daubechies(p: int) -> tuple[float, ...]:
    r"""Daubechies lowpass filter with ``p`` vanishing moments, by spectral factorisation.

    :math:`|H(\omega)|^2 = 2 \cos^{2p}(\omega/2)\, P(\sin^2(\omega/2))` with
    :math:`P(t) = \sum_{k<p} \binom{p-1+k}{k} t^k`. Each root :math:`t_r` of :math:`P` gives
    the pair of roots of :math:`z^2 - (2 - 4 t_r) z + 1` (in :math:`z = e^{i\omega}`); keeping
    the one inside the unit circle gives the minimum-phase (extremal-phase) filter,
    normalised to :math:`\sum_n h_n = \sqrt 2`. Computed in float64.
    """
    coeffs = [math.comb(p - 1 + k, k) for k in range(p)]
    poly = np.array([1.0 + 0j])
    for _ in range(p):
        poly = np.convolve(poly, [1.0, 1.0])  # the p zeros at z = -1 (omega = pi)
    for t in (np.roots(coeffs[::-1]) if p > 1 else []):
        pair = np.roots([1.0, -(2.0 - 4.0 * t), 1.0])
        poly = np.convolve(poly, [1.0, -pair[np.argmin(np.abs(pair))]])
    h = np.real(poly)
    h = h * math.sqrt(2.0) / h.sum()
    return tuple(float(v) for v in h)


def wavelet_filters(name: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    r"""Analysis filters ``(h, g)`` of a wavelet, float64 tuples of length :math:`2p`.

    :math:`h` is the Daubechies lowpass (:math:`\sum h_n^2 = 1`, :math:`\sum h_n = \sqrt2`,
    :math:`\sum_n h_n h_{n+2k} = 0` for :math:`k \ne 0`), :math:`g_n = (-1)^n h_{L-1-n}`.
    ``"haar"`` and ``"db1"`` are the same filter.
    """
    h = _daubechies(check_wavelet(name))
    n = len(h)
    g = tuple((-1.0) ** i * h[n - 1 - i] for i in range(n))
    return h, g


def max_levels(h: int, w: int) -> int:
    """Largest ``J`` with :math:`2^J` dividing both ``h`` and ``w``."""
    j = 0
    while h % 2 ** (j + 1) == 0 and w % 2 ** (j + 1) == 0:
        j += 1
    return j


def padded_size(n: int, levels: int) -> int:
    """Smallest multiple of :math:`2^{levels}` that is :math:`\\ge n`."""
    m = 2 ** levels
    return -(-n // m) * m


def approx_shape(h: int, w: int, levels: int) -> tuple[int, int]:
    """Shape of the approximation (low-low) band of an ``(h, w)`` image after ``levels``."""
    return h >> levels, w >> levels


def _check_levels(h: int, w: int, levels: int) -> None:
    if levels < 0:
        raise InputError(f"wavelet levels must be >= 0, got {levels}")
    if h % 2 ** levels or w % 2 ** levels:
        raise InputError(f"a periodic {levels}-level wavelet transform needs the image sides "
                         f"divisible by {2 ** levels}, got ({h}, {w}); pad the image "
                         f"(wavelets.pad_symmetric) or use at most {max_levels(h, w)} levels")


def _mirror_index(n: int, m: int, device: torch.device) -> Tensor:
    """Indices of the half-sample symmetric extension of length ``m`` of a length-``n`` axis."""
    i = torch.arange(m, device=device) % (2 * n)
    return torch.where(i < n, i, 2 * n - 1 - i)


def pad_symmetric(x: Tensor, h: int, w: int) -> Tensor:
    """Extend the last two axes of ``x`` to ``(h, w)`` by half-sample mirroring at the far end.

    ``x[..., :H, :W]`` of the result is ``x`` itself (so cropping undoes the padding).
    """
    hi = _mirror_index(x.shape[-2], h, x.device)
    wi = _mirror_index(x.shape[-1], w, x.device)
    return x.index_select(-2, hi).index_select(-1, wi)


def _filter_bank(name: str, like: Tensor) -> Tensor:
    """Conv weight ``(2, 1, L)`` holding ``h`` and ``g``, real, on the device of ``like``."""
    h, g = wavelet_filters(name)
    f = torch.tensor([h, g], dtype=torch.float64).unsqueeze(1)
    return f.to(device=like.device, dtype=like.real.dtype)


def _analysis_1d(x: Tensor, bank: Tensor) -> Tensor:
    """One periodic level along the last axis: ``(..., N) -> (..., N)`` as ``[a | d]``.

    Periodic extension by ``L - 2`` samples, then a stride-2 correlation with ``h`` and ``g``.
    """
    if x.is_complex():  # real filters: the transform acts on real and imaginary parts alike
        return torch.complex(_analysis_1d(x.real, bank), _analysis_1d(x.imag, bank))
    n, taps = x.shape[-1], bank.shape[-1]
    wrap = torch.arange(n + taps - 2, device=x.device) % n
    xp = x.reshape(-1, 1, n).index_select(-1, wrap)
    return F.conv1d(xp, bank, stride=2).reshape(x.shape)  # (M, 2, N/2): [a | d]


def _synthesis_1d(c: Tensor, bank: Tensor) -> Tensor:
    r"""Transpose of :func:`_analysis_1d`: :math:`x_m = \sum_{2k + n \equiv m} h_n a_k +
    g_n d_k`, by a stride-2 transposed convolution whose tail is folded back periodically."""
    if c.is_complex():
        return torch.complex(_synthesis_1d(c.real, bank), _synthesis_1d(c.imag, bank))
    n = c.shape[-1]
    full = F.conv_transpose1d(c.reshape(-1, 2, n // 2), bank, stride=2)  # (M, 1, N + L - 2)
    reps = -(-full.shape[-1] // n)
    full = F.pad(full, (0, reps * n - full.shape[-1]))
    return full.reshape(-1, reps, n).sum(1).reshape(c.shape)


def _level(x: Tensor, bank: Tensor, inverse: bool) -> Tensor:
    f = _synthesis_1d if inverse else _analysis_1d
    if inverse:  # transpose of (width, then height) is (height, then width)
        return f(f(x.transpose(-1, -2), bank).transpose(-1, -2), bank)
    return f(f(x, bank).transpose(-1, -2), bank).transpose(-1, -2)


def dwt2(x: Tensor, wavelet: str = "haar", levels: int = 1) -> Tensor:
    r"""Multilevel orthogonal 2-D DWT :math:`c = W x` in Mallat layout.

    Parameters
    ----------
    x
        ``(..., H, W)``, real or complex, ``H`` and ``W`` divisible by :math:`2^{levels}`.
    wavelet
        ``"haar"`` (= ``"db1"``), ``"db2"`` or ``"db4"``.
    levels
        Number of decomposition levels :math:`J \ge 0`.

    Returns
    -------
    Tensor
        Coefficients, same shape and dtype as ``x``.

    Raises
    ------
    InputError
        Unknown wavelet, negative levels, or sides not divisible by :math:`2^J`.
    """
    h, w = x.shape[-2:]
    _check_levels(h, w, levels)
    bank = _filter_bank(wavelet, x)
    c = x.clone()
    for j in range(levels):
        hj, wj = h >> j, w >> j
        c[..., :hj, :wj] = _level(c[..., :hj, :wj], bank, inverse=False)
    return c


def idwt2(c: Tensor, wavelet: str = "haar", levels: int = 1) -> Tensor:
    r"""Inverse (= adjoint) of :func:`dwt2`: :math:`x = W^T c`, exact for orthogonal :math:`W`.

    Same parameters as :func:`dwt2`, with ``c`` in Mallat layout.
    """
    h, w = c.shape[-2:]
    _check_levels(h, w, levels)
    bank = _filter_bank(wavelet, c)
    x = c.clone()
    for j in reversed(range(levels)):
        hj, wj = h >> j, w >> j
        x[..., :hj, :wj] = _level(x[..., :hj, :wj], bank, inverse=True)
    return x
