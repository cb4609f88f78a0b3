r"""DnCNN-style residual denoiser with a noise-level input (Zhang et al., IEEE TIP 2017;
the noise-map input as in FFDNet, Zhang et al., IEEE TIP 2018).

.. math::

    D_\theta(x, \sigma) = x - R_\theta\big([x, \sigma \mathbf 1]\big),

where :math:`R_\theta` is ``depth`` 3x3 convolutions (ReLU between them) predicting the noise.
Light by default (about 75k parameters). Batch normalisation of the original DnCNN is left out
(it adds nothing at inference and complicates small-batch training). Fully convolutional at
full resolution, so any :math:`H \times W` works without padding.
"""

from __future__ import annotations

import torch
from torch import nn

from .drunet import conv3, noise_map

Tensor = torch.Tensor

__all__ = ["DnCNN"]


class DnCNN(nn.Module):
    """Residual CNN denoiser; ``forward(x, sigma)``.

    Parameters
    ----------
    in_channels, out_channels
        Image channels (``out_channels`` must equal ``in_channels`` for the residual).
    width
        Feature channels.
    depth
        Number of convolutions (>= 2).
    """

    noise_conditional = True

    def __init__(self, in_channels: int = 1, out_channels: int = 1, width: int = 32,
                 depth: int = 10) -> None:
        super().__init__()
        if depth < 2 or out_channels != in_channels:
            raise ValueError("DnCNN needs depth >= 2 and out_channels == in_channels")
        self.config = {"in_channels": in_channels, "out_channels": out_channels,
                       "width": width, "depth": depth}
        self.in_channels, self.out_channels = in_channels, out_channels
        layers: list[nn.Module] = [conv3(in_channels + 1, width), nn.ReLU(inplace=True)]
        for _ in range(depth - 2):
            layers += [conv3(width, width), nn.ReLU(inplace=True)]
        layers.append(conv3(width, out_channels))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor, sigma: float | Tensor) -> Tensor:
        """Denoise ``x`` ``(B, C, H, W)`` at noise level(s) ``sigma``."""
        return x - self.net(torch.cat([x, noise_map(x, sigma)], dim=1))
