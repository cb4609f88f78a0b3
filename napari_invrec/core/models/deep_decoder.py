r"""The deep decoder (Heckel & Hand, ICLR 2019): an untrained, under-parameterised generator.

From a fixed random tensor :math:`z` of :math:`k` channels at a coarse grid, each of
``layers`` blocks applies

.. math::

    B_i = \mathrm{cn}\big(\mathrm{ReLU}(U_i\, C_i B_{i-1})\big),

a :math:`1\times1` convolution :math:`C_i` (:math:`k \times k` weights: no spatial kernels),
bilinear upsampling :math:`U_i` (by two, the last one onto the image grid), a ReLU and a
channel normalisation :math:`\mathrm{cn}` (each channel to zero mean and unit variance over
the image, then a learned scale and shift); a last :math:`1\times1` convolution maps the
:math:`k` channels to the image. With :math:`k^2` weights per layer the network has far fewer
parameters than pixels (``parameter_count``), so it cannot fit noise well: the prior is the
architecture, not an early stop. All spatial structure comes from the fixed upsampling,
which is why the paper's images are smooth between edges.

The output layer is linear (the paper ends in a sigmoid for images in [0, 1]); the methods
scale it to the data, so negative values and complex parts (two channels) stay possible.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional

__all__ = ["DeepDecoder", "grid_sizes", "parameter_count"]


def grid_sizes(shape: tuple[int, int], layers: int) -> list[tuple[int, int]]:
    """Grid of each block's input, coarsest first: :math:`\\lceil n / 2^{L-i}\\rceil`, so
    that ``layers`` doublings reach ``shape`` (the last one onto it exactly)."""
    h, w = shape
    return [(max(1, -(-h // 2 ** (layers - i))), max(1, -(-w // 2 ** (layers - i))))
            for i in range(layers)]


class DeepDecoder(nn.Module):
    """``layers`` blocks of 1x1 conv, upsampling, ReLU and channel norm, then a 1x1 output.

    Parameters
    ----------
    shape
        Output image ``(H, W)``.
    channels
        :math:`k`, channels of every block (and of the input :math:`z`).
    layers
        Number of upsampling blocks; the input grid is ``shape / 2**layers`` (rounded up).
    out_channels
        Image channels (2 for a complex image as real and imaginary parts).
    """

    def __init__(self, shape: tuple[int, int], channels: int = 64, layers: int = 5,
                 out_channels: int = 1) -> None:
        super().__init__()
        self.shape = (int(shape[0]), int(shape[1]))
        self.sizes = grid_sizes(self.shape, layers)[1:] + [self.shape]
        self.convs = nn.ModuleList(nn.Conv2d(channels, channels, 1, bias=False)
                                   for _ in range(layers))
        self.norms = nn.ModuleList(nn.GroupNorm(channels, channels) for _ in range(layers))
        self.out = nn.Conv2d(channels, out_channels, 1)

    def input_shape(self, channels: int) -> tuple[int, int, int]:
        """Shape ``(k, h, w)`` of the fixed input :math:`z` (one batch element)."""
        return (channels, *grid_sizes(self.shape, len(self.convs))[0])

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        b = z
        for conv, norm, size in zip(self.convs, self.norms, self.sizes):
            b = functional.interpolate(conv(b), size=size, mode="bilinear", align_corners=False)
            b = norm(functional.relu(b))
        return self.out(b)


def parameter_count(channels: int, layers: int, out_channels: int = 1) -> int:
    """Weights of a :class:`DeepDecoder`: :math:`L k^2 + 2 L k + (k + 1) c`."""
    return layers * channels * channels + 2 * layers * channels + (channels + 1) * out_channels
