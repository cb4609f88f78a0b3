r"""Padding to a multiple of the network's down-sampling factor, and complex-as-channels helpers.

A U-Net with :math:`S` scales halves the image :math:`S - 1` times, so it needs
:math:`H, W` divisible by :math:`m = 2^{S-1}`. :func:`pad_to_multiple` pads the bottom/right
edges by reflection (replication where the image is too small to reflect) and :func:`crop`
undoes it, so every network here accepts any :math:`H \times W`, odd sizes included.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as nnf

Tensor = torch.Tensor

__all__ = ["pad_to_multiple", "crop", "complex_to_channels", "channels_to_complex",
           "apply_real_network"]


def pad_to_multiple(x: Tensor, m: int) -> tuple[Tensor, tuple[int, int]]:
    """Pad ``(B, C, H, W)`` at the bottom and right so that H and W are multiples of ``m``.

    Returns
    -------
    padded
        ``(B, C, H', W')`` with :math:`H' = m \\lceil H / m \\rceil` (same for W).
    size
        The original ``(H, W)``, for :func:`crop`.
    """
    h, w = x.shape[-2:]
    ph, pw = (-h) % m, (-w) % m
    if ph == 0 and pw == 0:
        return x, (h, w)
    mode = "reflect" if ph < h and pw < w else "replicate"
    return nnf.pad(x, (0, pw, 0, ph), mode=mode), (h, w)


def crop(x: Tensor, size: tuple[int, int]) -> Tensor:
    """Undo :func:`pad_to_multiple`: keep the top-left ``size = (H, W)``."""
    return x[..., :size[0], :size[1]]


def complex_to_channels(x: Tensor) -> Tensor:
    """Complex ``(B, C, H, W)`` -> real ``(B, 2C, H, W)``: channels ``[re_1..re_C, im_1..im_C]``."""
    return torch.cat([x.real, x.imag], dim=1)


def channels_to_complex(x: Tensor) -> Tensor:
    """Inverse of :func:`complex_to_channels`: real ``(B, 2C, H, W)`` -> complex ``(B, C, H, W)``.
    """
    c = x.shape[1] // 2
    return torch.complex(x[:, :c].contiguous(), x[:, c:].contiguous())


def apply_real_network(fn: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
    r"""Run a real-valued network ``fn`` on a complex image by stacking re/im as channels.

    :math:`x = a + i b \mapsto \mathrm{fn}([a, b]) = [a', b'] \mapsto a' + i b'`; real inputs
    are passed through unchanged. ``fn`` must map ``2C`` channels to ``2C`` channels.
    """
    if not x.is_complex():
        return fn(x)
    return channels_to_complex(fn(complex_to_channels(x)))
