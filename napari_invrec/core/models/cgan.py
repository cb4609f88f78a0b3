r"""Conditional GAN for end-to-end reconstruction (pix2pix-style; Isola et al., CVPR 2017).

A generator :math:`G` (the project's :class:`~.unet.UNet`) maps the initial reconstruction
:math:`x_0` to the image, and a patch discriminator :math:`D(x_0, x)` scores, for every
overlapping patch of about :math:`2^{L+2}` pixels, whether :math:`x` is a real image for that
:math:`x_0`. Training (:func:`~..training.adversarial.cgan_loss`) adds to the generator's
squared error an adversarial term that rewards outputs :math:`D` cannot tell from real
images. That term asks for texture and edges that *look* right, whether or not the
measurement supports them: the conditional GAN is the textbook example of a network that
fills the null space of :math:`A` with plausible structure, which is why the project ships
one next to the U-Net trained on the same data.

At inference only the generator runs: ``forward(x0) = G(x0)``; the discriminator is kept in
the weights so that a training run can be resumed.
"""

from __future__ import annotations

import torch
from torch import nn

from .unet import UNet

Tensor = torch.Tensor

__all__ = ["PatchDiscriminator", "ConditionalGAN"]


class PatchDiscriminator(nn.Module):
    r"""Conditional patch discriminator :math:`D(x_0, x)`: ``layers`` stride-2 4x4
    convolutions (LeakyReLU 0.2) on the two images stacked as channels, then a 3x3
    convolution to one score per patch (least-squares GAN: about 1 for real, 0 for
    generated). No normalisation layers, so each sample's score depends on that sample only.

    Parameters
    ----------
    in_channels
        Channels of each of :math:`x_0` and :math:`x`.
    width
        Channels of the first layer, doubled per layer.
    layers
        Number of stride-2 layers (the receptive field grows about :math:`2^L`).
    """

    def __init__(self, in_channels: int = 1, width: int = 32, layers: int = 3) -> None:
        super().__init__()
        if layers < 1:
            raise ValueError("PatchDiscriminator needs layers >= 1")
        ch = [2 * in_channels] + [width * 2 ** i for i in range(layers)]
        mods: list[nn.Module] = []
        for cin, cout in zip(ch[:-1], ch[1:]):
            mods += [nn.Conv2d(cin, cout, 4, stride=2, padding=1), nn.LeakyReLU(0.2, True)]
        mods.append(nn.Conv2d(ch[-1], 1, 3, padding=1))
        self.net = nn.Sequential(*mods)

    def forward(self, x0: Tensor, x: Tensor) -> Tensor:
        """Scores ``(B, 1, H / 2^L, W / 2^L)`` for ``x`` given ``x0`` (both ``(B, C, H, W)``)."""
        return self.net(torch.cat([x0, x], dim=1))


class ConditionalGAN(nn.Module):
    r"""Generator and discriminator of a conditional GAN; ``forward(x0)`` is the generator.

    Parameters
    ----------
    in_channels
        Image channels (input and output of the generator).
    width, scales
        The generator U-Net's width and number of scales (residual: :math:`G(x_0) = x_0 +
        \mathrm{UNet}(x_0)`).
    disc_width, disc_layers
        The discriminator's first width and number of stride-2 layers.
    adversarial
        Weight :math:`\lambda` of the adversarial term in the generator's loss
        (:func:`~..training.adversarial.cgan_loss`); a training setting, recorded with the
        weights so that a run is reproducible from them.
    """

    noise_conditional = False

    def __init__(self, in_channels: int = 1, width: int = 16, scales: int = 4,
                 disc_width: int = 32, disc_layers: int = 3, adversarial: float = 0.01) -> None:
        super().__init__()
        if not adversarial > 0:
            raise ValueError("ConditionalGAN needs adversarial > 0 (a U-Net without it is "
                             "the 'unet' architecture)")
        self.config = {"in_channels": in_channels, "width": width, "scales": scales,
                       "disc_width": disc_width, "disc_layers": disc_layers,
                       "adversarial": float(adversarial)}
        self.in_channels = in_channels
        self.adversarial = float(adversarial)
        self.generator = UNet(in_channels, in_channels, width, scales, residual=True)
        self.discriminator = PatchDiscriminator(in_channels, disc_width, disc_layers)

    def forward(self, x0: Tensor) -> Tensor:
        """The generator's image ``(B, C, H, W)`` for the initial reconstruction ``x0``."""
        return self.generator(x0)
