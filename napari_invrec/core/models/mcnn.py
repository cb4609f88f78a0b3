r"""Multi-scale (multi-column) CNN.

Follows the multi-column CNN of Zhang et al., "Single-image crowd counting via multi-column
convolutional neural network" (CVPR 2016): parallel columns with large, medium and small
kernels (9x9, 7x7, 5x5 there) whose feature maps are concatenated and merged by a 1x1
convolution. Adapted to image restoration: the columns' pooling is dropped (output at full
resolution, fully convolutional, any :math:`H \times W`), columns keep their kernel size for
all layers, and the output is residual,

.. math::

    M_\theta(x) = x + W_{1\times1} \big[ C_9(x), C_7(x), C_5(x) \big],

with :math:`C_k` a column of ``depth`` k x k convolutions with ReLU (``residual=False``
drops the :math:`x +`). Kernel sizes and widths are parameters.
"""

from __future__ import annotations

import torch
from torch import nn

Tensor = torch.Tensor

__all__ = ["MCNN"]


class MCNN(nn.Module):
    """Multi-column CNN ``forward(x)``.

    Parameters
    ----------
    in_channels, out_channels
        Input and output channels.
    kernels
        One odd kernel size per column (largest first).
    width
        Feature channels of every column.
    depth
        Convolutions per column (>= 1).
    residual
        Add the input to the output (requires equal channel counts).
    """

    noise_conditional = False

    def __init__(self, in_channels: int = 1, out_channels: int = 1,
                 kernels: tuple[int, ...] = (9, 7, 5), width: int = 16, depth: int = 3,
                 residual: bool = True) -> None:
        super().__init__()
        kernels = tuple(int(k) for k in kernels)
        if not kernels or any(k % 2 == 0 for k in kernels) or depth < 1:
            raise ValueError("MCNN needs odd kernel sizes and depth >= 1")
        if residual and in_channels != out_channels:
            raise ValueError("a residual MCNN needs in_channels == out_channels")
        self.config = {"in_channels": in_channels, "out_channels": out_channels,
                       "kernels": list(kernels), "width": width, "depth": depth,
                       "residual": residual}
        self.in_channels, self.out_channels = in_channels, out_channels
        self.residual = residual
        self.columns = nn.ModuleList()
        for k in kernels:
            layers: list[nn.Module] = []
            for i in range(depth):
                layers += [nn.Conv2d(in_channels if i == 0 else width, width, k,
                                     padding=k // 2, padding_mode="replicate"),
                           nn.ReLU(inplace=True)]
            self.columns.append(nn.Sequential(*layers))
        self.merge = nn.Conv2d(width * len(kernels), out_channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        """Map ``x`` ``(B, in_channels, H, W)`` to ``(B, out_channels, H, W)``."""
        out = self.merge(torch.cat([col(x) for col in self.columns], dim=1))
        return x + out if self.residual else out
