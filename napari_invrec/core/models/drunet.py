r"""DRUNet-like noise-conditional residual U-Net (Zhang et al., "Plug-and-play image restoration
with deep denoiser prior", IEEE TPAMI 2021).

The network sees the noisy image and a constant channel holding the noise level
:math:`\sigma`, so one set of weights denoises at every level:

.. math::

    D_\theta(x, \sigma) = \mathrm{UNet}_\theta\big([x, \sigma \mathbf 1]\big).

Structure (as in the paper, smaller by default): a 3x3 head to ``width`` channels; per scale
``blocks`` residual blocks then a 2x2 stride-2 convolution doubling the channels; residual
blocks at the bottom; per scale a 2x2 stride-2 transposed convolution, the skip added (not
concatenated) and ``blocks`` residual blocks; a 3x3 tail. No batch norm, no biases in the
convolutions (as DRUNet), ReLU activations. Any :math:`H \times W` is padded to a multiple of
:math:`2^{\text{scales}-1}` and cropped back.
"""

from __future__ import annotations

import torch
from torch import nn

from .padding import crop, pad_to_multiple

Tensor = torch.Tensor

__all__ = ["DRUNet", "ResBlock", "noise_map", "conv3"]


def conv3(cin: int, cout: int, bias: bool = True) -> nn.Conv2d:
    """3x3 convolution with zero padding 1 (keeps H, W)."""
    return nn.Conv2d(cin, cout, 3, padding=1, bias=bias)


class ResBlock(nn.Module):
    r"""Residual block :math:`x + \mathrm{conv}(\mathrm{ReLU}(\mathrm{conv}(x)))`."""

    def __init__(self, c: int, bias: bool = True) -> None:
        super().__init__()
        self.body = nn.Sequential(conv3(c, c, bias), nn.ReLU(inplace=True), conv3(c, c, bias))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


def noise_map(x: Tensor, sigma: float | Tensor) -> Tensor:
    r"""Constant noise-level channel :math:`\sigma_b \mathbf 1`, ``(B, 1, H, W)`` like ``x``.

    ``sigma`` is a float or a tensor with 1 or ``B`` entries (one level per batch element).
    """
    b, _, h, w = x.shape
    s = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).reshape(-1)
    if s.numel() not in (1, b):
        raise ValueError(f"sigma has {s.numel()} entries for a batch of {b}")
    return s.expand(b).reshape(b, 1, 1, 1).expand(b, 1, h, w)


def _res_stack(c: int, n: int) -> nn.Sequential:
    return nn.Sequential(*[ResBlock(c, bias=False) for _ in range(n)])


class DRUNet(nn.Module):
    """Noise-conditional residual U-Net; ``forward(x, sigma)``.

    Parameters
    ----------
    in_channels, out_channels
        Image channels (the noise map is added internally).
    width
        Channels at the finest scale; doubled at every coarser scale.
    scales
        Number of scales (3 or 4 typical); inputs are padded to multiples of
        ``2 ** (scales - 1)``.
    blocks
        Residual blocks per scale (and at the bottom).
    """

    noise_conditional = True

    def __init__(self, in_channels: int = 1, out_channels: int = 1, width: int = 16,
                 scales: int = 4, blocks: int = 2) -> None:
        super().__init__()
        if scales < 1 or width < 1 or blocks < 0:
            raise ValueError("DRUNet needs scales >= 1, width >= 1, blocks >= 0")
        self.config = {"in_channels": in_channels, "out_channels": out_channels,
                       "width": width, "scales": scales, "blocks": blocks}
        self.in_channels, self.out_channels = in_channels, out_channels
        self.multiple = 2 ** (scales - 1)
        ch = [width * 2 ** i for i in range(scales)]
        self.head = conv3(in_channels + 1, ch[0], bias=False)
        self.down = nn.ModuleList(
            nn.Sequential(_res_stack(ch[i], blocks),
                          nn.Conv2d(ch[i], ch[i + 1], 2, stride=2, bias=False))
            for i in range(scales - 1))
        self.body = _res_stack(ch[-1], blocks)
        self.up = nn.ModuleList(nn.ConvTranspose2d(ch[i + 1], ch[i], 2, stride=2, bias=False)
                                for i in range(scales - 1))
        self.up_blocks = nn.ModuleList(_res_stack(ch[i], blocks) for i in range(scales - 1))
        self.tail = conv3(ch[0], out_channels, bias=False)

    def forward(self, x: Tensor, sigma: float | Tensor) -> Tensor:
        """Denoise ``x`` ``(B, in_channels, H, W)`` at noise level(s) ``sigma``."""
        xp, size = pad_to_multiple(x, self.multiple)
        h = self.head(torch.cat([xp, noise_map(xp, sigma)], dim=1))
        skips = []
        for down in self.down:
            skips.append(h)
            h = down(h)
        h = self.body(h)
        for i in reversed(range(len(self.up))):
            h = self.up_blocks[i](self.up[i](h) + skips[i])
        return crop(self.tail(h), size)
