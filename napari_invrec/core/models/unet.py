r"""Plain end-to-end U-Net (Ronneberger et al., MICCAI 2015), smaller and padding-safe.

:math:`x \mapsto \mathrm{UNet}_\theta(x)`: per scale two 3x3 convolutions with ReLU, 2x2 max
pooling down, 2x2 stride-2 transposed convolutions up, skip connections concatenated, a 1x1
output convolution; optionally residual (:math:`x + \mathrm{UNet}_\theta(x)`, needs
``out_channels == in_channels``). Used for end-to-end reconstruction from a simple
initial estimate (e.g. the adjoint). Any :math:`H \times W` is padded to a multiple of
:math:`2^{\text{scales}-1}` and cropped back.
"""

from __future__ import annotations

import torch
from torch import nn

from .drunet import conv3
from .padding import crop, pad_to_multiple

Tensor = torch.Tensor

__all__ = ["UNet"]


def _double_conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(conv3(cin, cout), nn.ReLU(inplace=True), conv3(cout, cout),
                         nn.ReLU(inplace=True))


class UNet(nn.Module):
    """U-Net ``forward(x)`` with ``in_channels`` -> ``out_channels``.

    Parameters
    ----------
    in_channels, out_channels
        Input and output channels.
    width
        Channels at the finest scale, doubled per coarser scale.
    scales
        Number of scales (>= 1).
    residual
        Add the input to the output (requires equal channel counts).
    """

    noise_conditional = False

    def __init__(self, in_channels: int = 1, out_channels: int = 1, width: int = 16,
                 scales: int = 4, residual: bool = True) -> None:
        super().__init__()
        if scales < 1 or (residual and in_channels != out_channels):
            raise ValueError("UNet needs scales >= 1 (and equal channels when residual)")
        self.config = {"in_channels": in_channels, "out_channels": out_channels,
                       "width": width, "scales": scales, "residual": residual}
        self.in_channels, self.out_channels = in_channels, out_channels
        self.residual = residual
        self.multiple = 2 ** (scales - 1)
        ch = [width * 2 ** i for i in range(scales)]
        self.enc = nn.ModuleList(_double_conv(in_channels if i == 0 else ch[i - 1], ch[i])
                                 for i in range(scales))
        self.pool = nn.MaxPool2d(2)
        self.up = nn.ModuleList(nn.ConvTranspose2d(ch[i + 1], ch[i], 2, stride=2)
                                for i in range(scales - 1))
        self.dec = nn.ModuleList(_double_conv(2 * ch[i], ch[i]) for i in range(scales - 1))
        self.out = nn.Conv2d(ch[0], out_channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        """Map ``x`` ``(B, in_channels, H, W)`` to ``(B, out_channels, H, W)``."""
        xp, size = pad_to_multiple(x, self.multiple)
        h, skips = xp, []
        for i, enc in enumerate(self.enc):
            h = enc(h if i == 0 else self.pool(h))
            skips.append(h)
        h = skips.pop()
        for i in reversed(range(len(self.up))):
            h = self.dec[i](torch.cat([self.up[i](h), skips[i]], dim=1))
        out = crop(self.out(h), size)
        return x + out if self.residual else out
