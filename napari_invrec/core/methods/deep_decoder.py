r"""Deep decoder (Heckel & Hand, ICLR 2019): fit an under-parameterised untrained generator.

The image is :math:`x = s\, G_\theta(z)`, :math:`G` a :class:`~..models.deep_decoder.DeepDecoder`
(1x1 convolutions, fixed bilinear upsampling, ReLU, channel normalisation) with a fixed random
input :math:`z \sim U(0, 1)` on a grid :math:`2^L` times coarser than the image, and only the
weights are fitted,

.. math::

    \min_\theta \ \frac1m \big\| A\, s\, G_\theta(z) - y \big\|^2

by Adam (:func:`~.dip.fit_untrained`, the loop of the deep image prior, with the same
discrepancy metrics when the noise std is given and the same scale :math:`s`). Where the deep
image prior has millions of weights and needs an early stop, the deep decoder has
:math:`L k^2 + O(Lk)` (about 20 000 at the defaults, a third of a 256 x 256 image's pixels):
it cannot represent noise, so running longer costs time, not quality. Its images are smooth
between edges (the fixed upsampling), and the output-average (``ema``) is off by default.

Each batch element gets its own network; weights and :math:`z` come from ``generator`` (the
same seed gives the same result on one machine).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..errors import InputError
from ..models.deep_decoder import DeepDecoder
from ..params import param
from ..state import IterState
from .classical import prepare
from .dip import check_fit_params, draw_input, draw_seed, fit_untrained
from .registry import register_method

Tensor = torch.Tensor

__all__ = ["DeepDecoderParams", "deep_decoder", "decoder_networks"]


@dataclass
class DeepDecoderParams:
    r"""Deep decoder: fit :math:`x = s\, G_\theta(z)` with a small untrained decoder."""

    iters: int = param(2000, "Adam steps (the decoder is too small to fit noise: more steps "
                       "cost time, not quality)", min=1, max=100000)
    lr: float = param(0.01, "Adam learning rate", min=1e-6, max=1.0, step=0.001)
    channels: int = param(64, "channels k of every layer (weights grow as k^2: more "
                          "channels fit finer detail, and more noise)", min=2, max=512)
    layers: int = param(5, "upsampling layers L (z is 2^L times coarser than the image)",
                        min=1, max=10)
    input_noise: float = param(0.0, "std of the noise added to z at every step (0: none)",
                               min=0.0, max=1.0, step=0.01)
    sigma: float = param(0.01, "noise std of the measurement for the discrepancy metric "
                         "(0 = unknown)", min=0.0, max=10.0, step=0.005, noise=True)
    ema: float = param(0.0, "exponential moving average weight of the outputs (0 = off)",
                       min=0.0, max=0.9999, step=0.01)


def decoder_networks(n: int, shape: tuple[int, int], channels: int, layers: int,
                     out_channels: int, seed: int) -> nn.ModuleList:
    """``n`` fresh deep decoders initialised from ``seed`` (global RNG left untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return nn.ModuleList(DeepDecoder(shape, channels, layers, out_channels)
                             for _ in range(n))


@register_method("deep-decoder", DeepDecoderParams)
def deep_decoder(y: Tensor, op: Any, p: DeepDecoderParams, *, x0: Tensor | None = None,
                 generator: torch.Generator | None = None) -> Iterator[IterState]:
    r"""Deep decoder: Adam on :math:`\tfrac1m\|A s G_\theta(z) - y\|^2`, a tiny untrained net.

    Yields every step ``x`` and metrics ``residual``, ``loss`` and, when ``sigma > 0``,
    ``discrepancy``, ``discrepancy_reached`` and ``stop_step`` (as ``dip``). ``x0`` is
    ignored (the decoder starts from random weights).
    """
    check_fit_params(p, "deep-decoder")
    if p.channels < 1 or p.layers < 1:
        raise InputError("deep-decoder channels and layers must be >= 1")
    h, w = op.shape
    if min(h, w) < 2 ** int(p.layers):
        raise InputError(f"deep-decoder with {p.layers} layers needs an image of at least "
                         f"{2 ** int(p.layers)} px a side, got {h}x{w}; use fewer layers")
    y, _ = prepare(y, op)
    b, c = y.shape[0], y.shape[1]
    nets_seed = draw_seed(generator)
    nets = decoder_networks(b, (h, w), int(p.channels), int(p.layers),
                            2 * c if op.complex_image else c, nets_seed)
    zshape = nets[0].input_shape(int(p.channels))
    z = draw_input(generator, (b, *zshape), y.device)
    return (yield from fit_untrained(y, op, p, nets, z, nets_seed, "deep-decoder"))
