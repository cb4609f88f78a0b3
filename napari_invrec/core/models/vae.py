r"""A small fully convolutional variational auto-encoder (Kingma & Welling, ICLR 2014).

The latent is a spatial map: an image :math:`x \in [0, 1]^{C \times H \times W}` is encoded to
a Gaussian :math:`q(z \mid x) = \mathcal N\big(\mu(x), \operatorname{diag} e^{\ell(x)}\big)`
over :math:`z \in \mathbb R^{C_z \times H/8 \times W/8}` (three stride-2 convolutions), and the
decoder maps a latent map back to an image through three nearest-neighbour up-samplings,

.. math::

    G(z) = \operatorname{sigmoid}\big(g_\theta(z)\big) \in [0, 1]^{C \times 8h \times 8w},

so one network serves every image size. Sizes that are not multiples of 8 are padded by
reflection before encoding (:func:`~.padding.pad_to_multiple`) and the output cropped back.
The prior is :math:`p(z) = \mathcal N(0, I)`; see
:func:`~napari_invrec.core.training.vae.train_vae` for the training objective. Used as the
generator of the ``csgm`` method (:mod:`napari_invrec.core.methods.generative`).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .padding import crop, pad_to_multiple

Tensor = torch.Tensor

__all__ = ["VAE"]

FACTOR = 8
"""Down-sampling factor between the image and the latent map."""


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1)


class VAE(nn.Module):
    """Convolutional VAE with a ``(latent_channels, H/8, W/8)`` latent map.

    Parameters
    ----------
    in_channels
        Image channels.
    width
        Feature channels at full resolution; ``2 * width`` and ``4 * width`` at the coarser
        scales (about 0.23M parameters at ``width=16``, 0.9M at 32).
    latent_channels
        Channels :math:`C_z` of the latent map.
    """

    kind = "vae"
    noise_conditional = False

    def __init__(self, in_channels: int = 1, width: int = 16, latent_channels: int = 8) -> None:
        super().__init__()
        if min(in_channels, width, latent_channels) < 1:
            raise ValueError("VAE needs in_channels, width and latent_channels >= 1")
        self.config = {"in_channels": in_channels, "width": width,
                       "latent_channels": latent_channels}
        self.in_channels = self.out_channels = in_channels
        self.latent_channels = latent_channels
        w1, w2, w3 = width, 2 * width, 4 * width
        act = nn.SiLU
        self.encoder = nn.Sequential(
            _conv(in_channels, w1), act(), _conv(w1, w2, 2), act(),
            _conv(w2, w2), act(), _conv(w2, w3, 2), act(),
            _conv(w3, w3), act(), _conv(w3, w3, 2), act(),
            nn.Conv2d(w3, 2 * latent_channels, 1))
        up = nn.Upsample(scale_factor=2, mode="nearest")
        self.decoder = nn.Sequential(
            _conv(latent_channels, w3), act(), _conv(w3, w3), act(),
            up, _conv(w3, w2), act(), _conv(w2, w2), act(),
            up, _conv(w2, w1), act(), _conv(w1, w1), act(),
            up, _conv(w1, w1), act(), _conv(w1, in_channels))

    def latent_shape(self, h: int, w: int) -> tuple[int, int, int]:
        r"""Shape ``(C_z, ceil(H/8), ceil(W/8))`` of the latent map of an ``H x W`` image."""
        return (self.latent_channels, math.ceil(h / FACTOR), math.ceil(w / FACTOR))

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        r"""Mean :math:`\mu` and log-variance :math:`\ell` of :math:`q(z \mid x)`, each
        ``(B, C_z, ceil(H/8), ceil(W/8))`` (``x`` padded by reflection to a multiple of 8)."""
        xp, _ = pad_to_multiple(x, FACTOR)
        out = self.encoder(xp)
        mu, logvar = out.chunk(2, dim=1)
        return mu, logvar.clamp(-30.0, 20.0)

    def decode(self, z: Tensor, size: tuple[int, int] | None = None) -> Tensor:
        r""":math:`G(z) \in [0, 1]`, ``(B, C, 8h, 8w)`` for ``z`` of shape ``(B, C_z, h, w)``,
        cropped to ``size = (H, W)`` when given."""
        x = torch.sigmoid(self.decoder(z))
        return crop(x, size) if size is not None else x

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        r"""Deterministic reconstruction :math:`G(\mu(x))` (cropped to ``x``'s size), with
        :math:`\mu` and :math:`\ell`."""
        mu, logvar = self.encode(x)
        return self.decode(mu, tuple(x.shape[-2:])), mu, logvar
