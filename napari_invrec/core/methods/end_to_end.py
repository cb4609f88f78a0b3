r"""End-to-end post-processing networks trained for one operator configuration.

A network :math:`f_\theta` trained by
:func:`~napari_invrec.core.training.operator_nets.train_end_to_end` maps a simple initial
reconstruction to the image,

.. math::

    x_0 = A^+ y \ (\text{init} = \texttt{pinv}) \quad\text{or}\quad x_0 = A^H y
    \ (\text{init} = \texttt{adjoint}), \qquad \hat x = f_\theta(|x_0|),

with :math:`|x_0|` the magnitude when :math:`x_0` is complex (MRI). The init is the one the
network was trained with, as recorded with the weights (see :func:`trained_init`).

* ``unet``: a U-Net (Jin et al., "Deep convolutional neural network for inverse problems in
  imaging", IEEE TIP 2017, trained on filtered back-projections);
* ``mcnn``: a multi-column CNN (:class:`~napari_invrec.core.models.mcnn.MCNN`);
* ``swinir``: a SwinIR-style transformer (:class:`~napari_invrec.core.models.swinir.SwinIR`,
  Liang et al. 2021): shifted-window self-attention at full resolution;
* ``cgan``: the generator of a conditional GAN (pix2pix-style,
  :class:`~napari_invrec.core.models.cgan.ConditionalGAN`), a U-Net trained with an
  adversarial loss besides the squared error: sharper, and the method of this family most
  likely to invent structure the measurement does not contain (compare its null-space
  difference to a data-consistent reference with the U-Net's in the Trust dock).

The network only knows the operator it was trained for: a different operator family is an
:class:`~..errors.InputError` that says how to train one; different parameters of the same
family still run (the result is then outside the training distribution).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

from ..errors import InputError
from ..models.registry import WeightsEntry, load_operator_network
from ..state import IterState
from .classical import check_finite, prepare, relative_residual
from .registry import register_method, weights_param

Tensor = torch.Tensor

__all__ = ["unet", "mcnn", "swinir", "cgan", "UNetParams", "MCNNParams", "SwinIRParams",
           "CGANParams", "trained_init",
           "apply_network"]

_INITS = ("pinv", "adjoint")


def trained_init(entry: WeightsEntry) -> str:
    """Initial reconstruction the network expects: ``entry.metrics["init"]`` as recorded by
    ``napari-invrec train`` (``"pinv"`` when not recorded).

    Raises
    ------
    InputError
        A recorded init that is neither ``pinv`` nor ``adjoint``.
    """
    init = (entry.metrics or {}).get("init") or "pinv"
    if init not in _INITS:
        raise InputError(f"weights {entry.name!r} record init={init!r}; expected one of "
                         f"{list(_INITS)}: retrain them with `napari-invrec train --task "
                         "end-to-end --init pinv ...`")
    return str(init)


def apply_network(net: torch.nn.Module, x0: Tensor) -> Tensor:
    r"""Run ``net`` on the real image ``x0`` ``(B, C, H, W)``.

    A one-channel network is applied to every channel separately (channels folded into the
    batch: :math:`(B C, 1, H, W)`); otherwise ``C`` must equal its ``in_channels``.
    """
    cin = int(getattr(net, "in_channels", x0.shape[1]))
    b, c, h, w = x0.shape
    if cin == c:
        return net(x0)
    if cin == 1:
        return net(x0.reshape(b * c, 1, h, w)).reshape(b, c, h, w)
    raise InputError(f"the network takes {cin} channels but the image has {c}; use an image "
                     f"with {cin} channels or a network trained for {c}")


def _run(arch: str, y: Tensor, op: Any, weights: str) -> Iterator[IterState]:
    """The two steps of end-to-end method ``arch`` (method and architecture share the name)."""
    y, _ = prepare(y, op)
    entry, net = load_operator_network(weights, task="end-to-end", architecture=arch,
                                       operator=op.name, device=y.device)
    init = trained_init(entry)
    x0 = op.A_pinv(y) if init == "pinv" else op.A_adjoint(y)
    what = "pseudo-inverse" if init == "pinv" else "adjoint"
    check_finite(x0, arch, 1, f"the operator's {what} failed; check the operator settings")
    state = IterState(1, 2, x0, {}, {"residual": relative_residual(op.A(x0), y)})
    yield state
    inp = (x0.abs() if x0.is_complex() else x0).to(torch.float32)
    out = apply_network(net, inp)
    check_finite(out, arch, 2, f"the network produced NaN/inf; retrain {weights!r}")
    x = op.as_image(out)
    state = IterState(2, 2, x, {"x0": op.as_image(inp)},
                      {"residual": relative_residual(op.A(x), y)})
    yield state
    return state


_W_DOC = "trained end-to-end network (for the current operator family; see napari-invrec train)"


def _end_to_end(arch: str, params: type, doc: str) -> Any:
    """Register the end-to-end method ``arch`` (its network has the same architecture key):
    the two steps of :func:`_run`, documented by ``doc``."""

    def method(y: Tensor, op: Any, p: Any, *, x0: Tensor | None = None,
               generator: torch.Generator | None = None) -> Iterator[IterState]:
        return (yield from _run(arch, y, op, p.weights))

    method.__name__ = method.__qualname__ = arch
    method.__doc__ = doc
    return register_method(arch, params)(torch.no_grad()(method))


@dataclass
class UNetParams:
    r"""Post-processing U-Net :math:`\hat x = f_\theta(x_0)`, :math:`x_0 = A^+ y` or
    :math:`A^H y` (fixed by the weights)."""

    weights: str = weights_param("unet-blur2-natural", _W_DOC, task="end-to-end",
                                 architecture="unet")


@dataclass
class MCNNParams:
    r"""Post-processing multi-column CNN :math:`\hat x = f_\theta(x_0)`."""

    weights: str = weights_param("mcnn-blur2-natural", _W_DOC, task="end-to-end",
                                 architecture="mcnn")


@dataclass
class SwinIRParams:
    r"""SwinIR-style transformer :math:`\hat x = x_0 + f_\theta(x_0)`."""

    weights: str = weights_param("swinir-blur2-natural", _W_DOC, task="end-to-end",
                                 architecture="swinir")


@dataclass
class CGANParams:
    r"""Conditional-GAN generator :math:`\hat x = G_\theta(x_0)` (trained adversarially)."""

    weights: str = weights_param("cgan-blur2-natural", _W_DOC, task="end-to-end",
                                 architecture="cgan")


unet = _end_to_end("unet", UNetParams, r"""End-to-end U-Net: :math:`\hat x = f_\theta(x_0)`.

    With :math:`x_0 = A^+ y` or :math:`A^H y`. Two steps: (1) the initial reconstruction
    :math:`x_0`, (2) the network output (``extras["x0"]``: the network's input
    :math:`|x_0|`). ``x0`` is ignored: the network expects the initial reconstruction it was
    trained on.
    """)
mcnn = _end_to_end("mcnn", MCNNParams, r"""End-to-end multi-column CNN (MCNN).

    :math:`\hat x = x_0 + W[C_9, C_7, C_5](x_0)`. Same two steps as ``unet`` (initial
    reconstruction, network output).
    """)
swinir = _end_to_end("swinir", SwinIRParams, r"""End-to-end SwinIR-style transformer.

    :math:`\hat x = x_0 + f_\theta(x_0)`, with residual groups of shifted-window attention
    blocks at full resolution. Same two steps as ``unet``.
    """)
cgan = _end_to_end("cgan", CGANParams, r"""End-to-end conditional GAN (pix2pix-style).

    :math:`\hat x = G_\theta(x_0)`, the generator of
    :class:`~napari_invrec.core.models.cgan.ConditionalGAN`. Same two steps as ``unet``.
    Trained to fool a discriminator as well as to match the truth, it produces sharp texture
    that the measurement may not support: read it with the trust maps.
    """)
