r"""The network of incremental-reconstruction diffusion (DiracDiffusion, Fabian, Tinaz &
Soltanolkotabi 2023): :class:`DiracNet`.

:math:`\Phi_\theta(z, t, k)` predicts the clean image from an image :math:`z` degraded to
level :math:`t` of a schedule :math:`A_t` (:mod:`..operators.degradation`), with :math:`k`
the map of pixels the level keeps (all ones for blur, the grown mask for inpainting):

.. math::

    \Phi_\theta(z, t, k) = z + \mathrm{UNet}_\theta\big([z,\ t \mathbb 1,\ k]\big),

the level entering as a constant channel (as DRUNet takes its noise level). The sampler
(:func:`~..methods.dirac.dirac`) runs it from :math:`t = 1` (the measurement) towards
:math:`t = 0`.
"""

from __future__ import annotations

import torch
from torch import nn

from .unet import UNet

Tensor = torch.Tensor

__all__ = ["DiracNet"]


class DiracNet(nn.Module):
    """Level-conditional restoration network ``forward(z, t, known)`` -> clean image.

    Parameters
    ----------
    width, scales
        The U-Net's width and number of scales.
    """

    noise_conditional = False
    in_channels = 1

    def __init__(self, width: int = 24, scales: int = 4) -> None:
        super().__init__()
        self.config = {"width": width, "scales": scales}
        self.net = UNet(3, 1, width, scales, residual=False)

    def forward(self, z: Tensor, t: Tensor, known: Tensor) -> Tensor:
        """``z`` ``(B, 1, H, W)``, levels ``t`` ``(B,)`` in [0, 1], ``known`` broadcastable to
        ``z`` -> the predicted clean image ``(B, 1, H, W)``."""
        level = t.reshape(-1, 1, 1, 1).to(z.dtype).expand_as(z)
        return z + self.net(torch.cat([z, level, known.to(z.dtype).expand_as(z)], dim=1))
