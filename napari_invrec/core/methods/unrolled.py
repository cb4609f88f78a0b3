r"""Unrolled networks as reconstruction methods: one yielded iterate per stage.

* ``unrolled-pgd``: :math:`x_{k+1} = x_k - \eta_k(A^H(Ax_k - y) + R_k(x_k))`
  (:class:`~..models.unrolled.UnrolledPGD`), any linear operator;
* ``varnet``: :math:`x_{k+1} = x_k - \eta_k A^H(Ax_k - y) - U_k(x_k)`
  (:class:`~..models.unrolled.VarNet`), single- and multi-coil MRI;
* ``humus-net``: the VarNet cascades with hybrid convolution / shifted-window attention
  denoisers (:class:`~..models.humus.HumusNet`), single- and multi-coil MRI;
* ``learned-admm``: unrolled ADMM with a learned penalty, dual step and CNN proximal map per
  stage (:class:`~..models.unrolled.LearnedADMM`), any linear operator;
* ``unrolled-phase``: unrolled error reduction with a CNN correction per stage
  (:class:`~..models.unrolled_phase.UnrolledPhase`), coded-diffraction phase retrieval;
* ``neumann``: partial sums of :math:`\sum_j (I - \eta A^H A - R)^j \eta A^H y`
  (:class:`~..models.unrolled.NeumannNet`), any linear operator.

A network is trained for one operator family (and configuration): the ``weights`` parameter
names an installed manifest entry of task ``"unrolled"`` trained for the operator's family
(:func:`~..models.registry.load_operator_network`). Missing weights and a family mismatch are
:class:`~..errors.InputError` saying how to train them (``napari-invrec train --task unrolled
...``). The network runs on the measurement's device; the output is in the operator's image
dtype (complex64 for MRI, like the other MRI methods).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

from ..errors import InputError
from ..models.registry import load_operator_network
from ..state import IterState
from .classical import check_finite, prepare, relative_residual
from .registry import register_method, weights_param

Tensor = torch.Tensor

__all__ = ["unrolled_pgd", "varnet", "humus_net", "learned_admm", "neumann",
           "UnrolledPGDParams", "VarNetParams", "HumusNetParams", "LearnedADMMParams",
           "NeumannParams", "UnrolledPhaseParams", "unrolled_phase", "load_unrolled"]

_DOC = "installed unrolled network (train one: napari-invrec train --task unrolled)"


def load_unrolled(name: str, arch: str, op: Any, device: torch.device) -> torch.nn.Module:
    """Load the unrolled network ``name`` (architecture ``arch``) for the operator ``op``.

    Raises
    ------
    InputError
        What :func:`~..models.registry.load_operator_network` refuses, or a real network for
        a complex operator (or the reverse).
    """
    _, model = load_operator_network(name, task="unrolled", architecture=arch,
                                     operator=op.name, device=device)
    if bool(getattr(model, "complex_images", False)) != bool(op.complex_image):
        kind = "complex" if op.complex_image else "real"
        other = "real" if op.complex_image else "complex"
        raise InputError(f"network {name!r} is for {other} images but {op.name!r} has {kind} "
                         f"images; train one with `napari-invrec train --task unrolled --arch "
                         f"{arch} --operator {op.name} ...`")
    return model


def _run(arch: str, y: Tensor, op: Any, weights: str,
         x0: Tensor | None) -> Iterator[IterState]:
    """One step per stage of unrolled method ``arch`` (method and architecture share the
    name)."""
    y, x0 = prepare(y, op, x0)
    model = load_unrolled(weights, arch, op, y.device)
    total = int(model.n_stages)
    state = None
    for k, x in enumerate(model.stages(y, op, x0), start=1):
        x = op.as_image(x)
        check_finite(x, arch, k, f"the network {weights!r} may not suit this measurement "
                     "(noise level, intensity scale); retrain it for these data")
        state = IterState(k, total, x, {}, {"residual": relative_residual(op.A(x), y)})
        yield state
    return state


# ---------------------------------------------------------------------- unrolled-pgd
@dataclass
class UnrolledPGDParams:
    r"""Unrolled PGD: :math:`x_{k+1} = x_k - \eta_k(A^H(Ax_k - y) + R_k(x_k))`."""

    weights: str = weights_param("unrolled-pgd-inpaint50-natural", _DOC, task="unrolled",
                                 architecture="unrolled-pgd")


@register_method("unrolled-pgd", UnrolledPGDParams)
@torch.no_grad()
def unrolled_pgd(y: Tensor, op: Any, p: UnrolledPGDParams, *, x0: Tensor | None = None,
                 generator: torch.Generator | None = None) -> Iterator[IterState]:
    r"""Learned unrolled proximal gradient, one step per stage.

    .. math::

        x_{k+1} = x_k - \eta_k\big(A^H(A x_k - y) + R_k(x_k)\big), \quad k = 0..K-1,

    from :math:`x_0 = A^H y` (or ``x0``), with learned step sizes :math:`\eta_k` and CNNs
    :math:`R_k`; yields :math:`x_1..x_K`.
    """
    return (yield from _run("unrolled-pgd", y, op, p.weights, x0))


# ---------------------------------------------------------------------- varnet
@dataclass
class VarNetParams:
    r"""VarNet: :math:`x_{k+1} = x_k - \eta_k A^H(Ax_k - y) - U_k(x_k)`."""

    weights: str = weights_param("varnet-mri4x", _DOC, task="unrolled",
                                 architecture="varnet")


@register_method("varnet", VarNetParams, operators=("mri", "mri-multicoil"))
@torch.no_grad()
def varnet(y: Tensor, op: Any, p: VarNetParams, *, x0: Tensor | None = None,
           generator: torch.Generator | None = None) -> Iterator[IterState]:
    r"""Variational network (Hammernik et al. 2018), one cascade per step.

    .. math::

        x_{k+1} = x_k - \eta_k A^H(A x_k - y) - U_k(x_k),

    from :math:`x_0 = A^H y` (the zero-filled image; or ``x0``), :math:`U_k` a U-Net on
    (real, imaginary) channels. The output is complex like the operator's images.
    """
    return (yield from _run("varnet", y, op, p.weights, x0))


# ---------------------------------------------------------------------- humus-net
@dataclass
class HumusNetParams:
    r"""HUMUS-Net: VarNet cascades whose denoisers mix convolutions and shifted-window
    self-attention."""

    weights: str = weights_param("humus-net-mri4x", _DOC, task="unrolled",
                                 architecture="humus-net")


@register_method("humus-net", HumusNetParams, operators=("mri", "mri-multicoil"))
@torch.no_grad()
def humus_net(y: Tensor, op: Any, p: HumusNetParams, *, x0: Tensor | None = None,
              generator: torch.Generator | None = None) -> Iterator[IterState]:
    r"""Hybrid unrolled MRI network (HUMUS-Net style, Fabian et al. 2022), one cascade per
    step.

    .. math::

        x_{k+1} = x_k - \eta_k A^H(A x_k - y) - D_k(x_k),

    from :math:`x_0 = A^H y` (or ``x0``), :math:`D_k` a U-Net with convolutions at the fine
    scales and Swin (shifted-window self-attention) blocks at the coarsest
    (:class:`~..models.humus.HumusNet`). The output is complex like the operator's images.
    """
    return (yield from _run("humus-net", y, op, p.weights, x0))


# ---------------------------------------------------------------------- learned ADMM
@dataclass
class LearnedADMMParams:
    r"""Learned ADMM: data step, CNN proximal step and dual step with learned constants."""

    weights: str = weights_param("learned-admm-lensless", _DOC, task="unrolled",
                                 architecture="learned-admm")


@register_method("learned-admm", LearnedADMMParams)
@torch.no_grad()
def learned_admm(y: Tensor, op: Any, p: LearnedADMMParams, *, x0: Tensor | None = None,
                 generator: torch.Generator | None = None) -> Iterator[IterState]:
    r"""Learned (unrolled) ADMM (ADMM-Net / Le-ADMM), one ADMM iteration per step.

    .. math::

        x_{k+1} = (A^H A + \rho_k I)^{-1}(A^H y + \rho_k(z_k - u_k)), \quad
        z_{k+1} = v - R_k(v),\ v = x_{k+1} + u_k, \quad
        u_{k+1} = u_k + \eta_k(x_{k+1} - z_{k+1}),

    with learned :math:`\rho_k`, :math:`\eta_k` and CNNs :math:`R_k`
    (:class:`~..models.unrolled.LearnedADMM`); yields :math:`z_1..z_K`. Shipped for the
    lensless camera (``learned-admm-lensless``), the forward model it is known for.
    """
    return (yield from _run("learned-admm", y, op, p.weights, x0))


# ---------------------------------------------------------------------- unrolled phase
@dataclass
class UnrolledPhaseParams:
    r"""Unrolled error reduction for coded diffraction patterns, a learned correction per
    stage."""

    weights: str = weights_param("unrolled-phase-random2-phantoms",
                                 "installed phase-retrieval network: *-random2-* for random "
                                 "masks, *-learned2-* for the learned masks (mask 'learned')",
                                 task="unrolled", architecture="unrolled-phase")


@register_method("unrolled-phase", UnrolledPhaseParams, operators=("phase",))
@torch.no_grad()
def unrolled_phase(y: Tensor, op: Any, p: UnrolledPhaseParams, *, x0: Tensor | None = None,
                   generator: torch.Generator | None = None) -> Iterator[IterState]:
    r"""Unrolled error reduction (:class:`~..models.unrolled_phase.UnrolledPhase`), one stage
    per step.

    .. math::

        u_n = E^H \tfrac1K G^H\big(a \odot G E x_n / |G E x_n|\big), \qquad
        x_{n+1} = \max(\mathrm{Re}(u_n + R_n(u_n)), 0),

    from the spectral start :math:`x_0` (or ``x0``), :math:`a = \sqrt{y}`. Trained for coded
    diffraction patterns of real non-negative images; ``*-learned2-*`` weights were trained
    together with the shipped learned masks (``mask="learned"``), ``*-random2-*`` weights on
    fresh random masks.
    """
    if getattr(op.params, "mode", None) != "coded":
        raise InputError("unrolled-phase is trained for coded diffraction patterns; set the "
                         "phase operator's mode to 'coded'")
    return (yield from _run("unrolled-phase", y, op, p.weights, x0))


# ---------------------------------------------------------------------- neumann
@dataclass
class NeumannParams:
    r"""Neumann network: truncated series :math:`\sum_j (I - \eta A^H A - R)^j \eta A^H y`."""

    weights: str = weights_param("neumann-blur2-natural", _DOC, task="unrolled",
                                 architecture="neumann")


@register_method("neumann", NeumannParams)
@torch.no_grad()
def neumann(y: Tensor, op: Any, p: NeumannParams, *, x0: Tensor | None = None,
            generator: torch.Generator | None = None) -> Iterator[IterState]:
    r"""Neumann network (Gilton, Ongie, Willett 2019), one series term per step.

    .. math::

        x^{(0)} = \eta A^H y, \quad x^{(j+1)} = x^{(j)} - \eta A^H A x^{(j)} - R(x^{(j)}),
        \quad \hat x_J = \sum_{j < J} x^{(j)};

    yields the partial sums :math:`\hat x_1..\hat x_T`.
    """
    return (yield from _run("neumann", y, op, p.weights, x0))
