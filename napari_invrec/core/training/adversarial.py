r"""The adversarial training loss of a conditional GAN
(:class:`~..models.cgan.ConditionalGAN`): :func:`cgan_loss`.

Least-squares GAN (Mao et al. 2017) in pix2pix's conditional form: with the generator
:math:`G`, the patch discriminator :math:`D` and pairs :math:`(x_0, x)` of initial
reconstruction and truth,

.. math::

    \mathcal L_G = \frac{1}{n}\|G(x_0) - x\|^2 + \lambda\, \overline{(D(x_0, G(x_0)) - 1)^2},
    \qquad
    \mathcal L_D = \tfrac12\, \overline{(D(x_0, x) - 1)^2} + \tfrac12\,
    \overline{D(x_0, G(x_0))^2},

(bars: means over the patch scores). Both are minimised at once by one optimiser step on
:math:`\mathcal L_G + \mathcal L_D`: :math:`\mathcal L_G` is computed through a detached copy
of :math:`D`'s weights and :math:`\mathcal L_D` through a detached :math:`G(x_0)`, so the
generator's weights receive only :math:`\nabla \mathcal L_G` and the discriminator's only
:math:`\nabla \mathcal L_D` (simultaneous gradient descent). Adam scales each weight's step
by its own gradient's size, so the two terms' magnitudes do not trade off against each
other; :math:`\lambda` alone sets how much the generator favours fooling :math:`D` over the
squared error.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.func import functional_call

Tensor = torch.Tensor

__all__ = ["cgan_loss", "is_adversarial"]


def is_adversarial(model: Any) -> bool:
    """Whether ``model`` trains adversarially (it has a discriminator)."""
    return isinstance(getattr(model, "discriminator", None), torch.nn.Module)


def cgan_loss(model: Any, x0: Tensor, x: Tensor) -> Tensor:
    r""":math:`\mathcal L_G + \mathcal L_D` (module docstring) for a batch ``x0``, ``x``
    ``(B, C, H, W)``; ``model`` has ``generator``, ``discriminator`` and ``adversarial``
    (:math:`\lambda`)."""
    d = model.discriminator
    fake = model.generator(x0)
    frozen = {k: v.detach() for k, v in d.named_parameters()}
    fooled = (functional_call(d, frozen, (x0, fake)) - 1.0).square().mean()
    loss_g = (fake - x).square().mean() + float(model.adversarial) * fooled
    loss_d = 0.5 * ((d(x0, x) - 1.0).square().mean() + d(x0, fake.detach()).square().mean())
    return loss_g + loss_d
