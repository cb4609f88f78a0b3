r"""SwinIR-style transformer restoration network (Liang et al., ICCVW 2021), small and
CPU-sized, for end-to-end reconstruction.

.. math::

    h_0 = C_{\mathrm{in}}(x), \qquad
    h_g = h_{g-1} + C_g\big(S_{g,d} \circ \dots \circ S_{g,1}(h_{g-1})\big), \ g = 1..G,
    \qquad \hat x = x + C_{\mathrm{out}}\big(h_0 + C_{\mathrm{body}}(h_G)\big),

with :math:`C` 3x3 convolutions and :math:`S` Swin blocks
(:class:`~.humus.SwinBlock`: windowed multi-head self-attention and an MLP, the windows of
every second block shifted by half a window with the attention mask) working at the full
resolution, where SwinIR differs from a U-Net: no down-sampling, and attention relates every
pixel to the :math:`w \times w` window around it. The groups :math:`g` are SwinIR's residual
Swin transformer blocks (RSTB). The output convolution starts at zero, so an untrained
network is the identity (:math:`\hat x = x`, the initial reconstruction). Any
:math:`H \times W` is padded to a multiple of the window and cropped back.
"""

from __future__ import annotations

import torch
from torch import nn

from .drunet import conv3
from .humus import SwinBlock
from .padding import crop, pad_to_multiple

Tensor = torch.Tensor

__all__ = ["SwinIR"]


class _RSTB(nn.Module):
    """Residual Swin transformer block: ``depth`` Swin blocks (alternately shifted), a
    convolution, and the group's input added back."""

    def __init__(self, width: int, depth: int, heads: int, window: int, mlp_ratio: float) -> None:
        super().__init__()
        self.blocks = nn.Sequential(*(SwinBlock(width, heads, window, shift=i % 2 == 1,
                                                mlp_ratio=mlp_ratio) for i in range(depth)))
        self.conv = conv3(width, width)

    def forward(self, h: Tensor) -> Tensor:
        return h + self.conv(self.blocks(h))


class SwinIR(nn.Module):
    """SwinIR-style restoration network ``forward(x)``, ``in_channels`` -> ``in_channels``.

    Parameters
    ----------
    in_channels
        Image channels.
    width
        Feature channels (token dimension); must divide by ``heads``.
    groups
        Residual Swin transformer blocks (RSTB).
    depth
        Swin blocks per group.
    heads, window
        Attention heads and window side.
    mlp_ratio
        Hidden width of each block's MLP relative to ``width``.
    """

    noise_conditional = False

    def __init__(self, in_channels: int = 1, width: int = 32, groups: int = 2, depth: int = 4,
                 heads: int = 4, window: int = 8, mlp_ratio: float = 2.0) -> None:
        super().__init__()
        if groups < 1 or depth < 1 or window < 2 or heads < 1 or width % heads:
            raise ValueError("SwinIR needs groups >= 1, depth >= 1, window >= 2 and width "
                             "divisible by heads")
        self.config = {"in_channels": in_channels, "width": width, "groups": groups,
                       "depth": depth, "heads": heads, "window": window,
                       "mlp_ratio": float(mlp_ratio)}
        self.in_channels = in_channels
        self.multiple = int(window)
        self.head = conv3(in_channels, width)
        self.body = nn.Sequential(*(_RSTB(width, depth, heads, window, mlp_ratio)
                                    for _ in range(groups)))
        self.body_conv = conv3(width, width)
        self.out = conv3(width, in_channels)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, in_channels, H, W)`` -> same shape."""
        xp, size = pad_to_multiple(x, self.multiple)
        h0 = self.head(xp)
        h = h0 + self.body_conv(self.body(h0))
        return x + crop(self.out(h), size)
