r"""Learned acquisition for coded-diffraction phase retrieval: the masks trained together with
their reconstruction network (in the spirit of Kellman et al.'s physics-based learned design).

The design is :math:`K` phase maps :math:`\theta_k \in \mathbb R^{S \times S}` at the training
patch size :math:`S`; the masks are :math:`D_k = e^{i s \phi_k}` with the stored parameter
:math:`\phi = \theta / s`, :math:`s` = :data:`PHASE_SCALE` (so that Adam moves the phases by
about :math:`s \cdot \mathrm{lr}` radians a step, as LOUPE's slope does for its logits). Unit
modulus holds by construction, so a learned mask is as realisable as a random one (a phase
plate or a spatial light modulator). The design starts from the operator's own masks (its
``mask`` and ``seed``), so the comparison with the start is at equal everything else.

Each step draws clean patches :math:`x`, measures them through the current masks,
:math:`y = |\mathcal F(D_k x)|^2 + \sigma n` (Gaussian intensity noise), and minimises
:math:`\|f_\vartheta(y, A_\theta) - x\|^2` over the network :math:`\vartheta` and the phases
:math:`\theta` together: the gradient reaches :math:`\theta` through the measurement, through
the network's spectral start and through every stage's magnitude projection. Validation
measures fixed held-out patches through the current masks (PSNR of the magnitude of the
output; ``extras["start_psnr"]``: that of the network's spectral start).

The network is an unrolled phase-retrieval network (:class:`~..models.unrolled_phase.
UnrolledPhase`); the same architecture trained on random masks (``train --task unrolled
--operator phase``, a fresh random design each step) is the comparison of
``benchmarks/run.py acquisition``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import InputError
from .acquisition import _Joint
from .datasets import PatchSource
from .loops import TrainState, _loop, _psnr
from .operator_nets import _operator_meta, operator_setup

__all__ = ["CodedMaskDesign", "train_coded_masks", "PHASE_SCALE"]

Tensor = torch.Tensor
#: phases are stored divided by this scale (module docstring)
PHASE_SCALE = 50.0


class CodedMaskDesign(nn.Module):
    """Learnable unit-modulus masks :math:`D_k = e^{i\\theta_k}`, started at ``masks``.

    Parameters
    ----------
    masks
        ``(K, S, S)`` complex unit-modulus masks the design starts from.
    """

    def __init__(self, masks: Tensor) -> None:
        super().__init__()
        if masks.dim() != 3 or masks.shape[1] != masks.shape[2] or not masks.is_complex():
            raise InputError(f"a coded mask design starts from complex (K, S, S) masks, got "
                             f"{tuple(masks.shape)} {masks.dtype}")
        self.phi = nn.Parameter(torch.angle(masks).to(torch.float32) / PHASE_SCALE)

    @property
    def phases(self) -> Tensor:
        """:math:`\\theta` ``(K, S, S)`` in radians."""
        return PHASE_SCALE * self.phi

    def masks(self) -> Tensor:
        """The ``(K, S, S)`` complex64 masks :math:`e^{i\\theta}` (differentiable)."""
        theta = self.phases
        return torch.polar(torch.ones_like(theta), theta)

    #: the key of :meth:`record` in a training sidecar
    record_key = "coded_masks"

    def operator_params(self, sidecar: str) -> dict:
        """Operator parameters that measure through this design: the learned masks read from
        the training's ``sidecar`` (:func:`~..operators.phase.learned_masks` reads it)."""
        return {"mask": "learned", "design": sidecar}

    def record(self) -> dict:
        """The design as saved (the format :func:`~..operators.phase.learned_masks` reads):
        ``n_patterns``, ``size`` and ``phases`` wrapped to :math:`[0, 2\\pi)`, 1e-4 rad."""
        theta = torch.remainder(self.phases.detach().double().cpu(), 2 * math.pi)
        return {"n_patterns": int(theta.shape[0]), "size": int(theta.shape[1]),
                "phases": np.round(theta.numpy(), 4).tolist()}


def train_coded_masks(model: nn.Module, source: PatchSource,
                      operator_factory: Callable[[tuple[int, int], torch.device], Any], *,
                      noise_sigma: float = 0.01, steps: int = 1000, batch: int = 8,
                      patch: int = 48, lr: float = 1e-3, seed: int = 0, device: Any = None,
                      val_every: int = 50, val_size: int = 8,
                      resume: str | Path | None = None, checkpoint: str | Path | None = None,
                      checkpoint_every: int = 100
                      ) -> tuple[Iterator[TrainState], CodedMaskDesign]:
    """Train a phase-retrieval network and its coded masks together (module docstring).

    ``operator_factory`` must build coded ``phase`` operators; their ``n_patterns``, ``mask``
    and ``seed`` give the design's start.

    Returns
    -------
    (Iterator[TrainState], CodedMaskDesign)
        The loop generator (as :func:`.operator_nets.train_unrolled`) and the design it trains.

    Raises
    ------
    InputError
        Bad schedule or noise level, an operator that is not coded phase retrieval, or a model
        that is not an unrolled phase-retrieval network.
    """
    dev, op = operator_setup(model, operator_factory, steps, batch, patch, lr, noise_sigma,
                             device)
    if getattr(op, "name", None) != "phase" or not getattr(op, "coded", False):
        raise InputError(f"coded masks are learned for the 'phase' operator in coded mode, "
                         f"not {getattr(op, 'name', op)!r}")
    if getattr(model, "kind", None) != "unrolled" or not hasattr(model, "start"):
        raise InputError("coded masks are learned with an unrolled phase-retrieval network "
                         "(arch unrolled-phase)")
    design = CodedMaskDesign(op.masks.detach().cpu())
    joint = _Joint(model, design).to(dev)
    sigma = float(noise_sigma)

    def measure(x: Tensor, gen: torch.Generator) -> tuple[Tensor, Any]:
        op_d = op.with_masks(design.masks())
        y = op_d.A(x)
        noise = torch.randn(y.shape, generator=gen, device=gen.device).to(y.device)
        return y + sigma * noise, op_d

    gv = torch.Generator(device=dev)
    xv = op.as_image(source.sample(val_size, patch, np.random.default_rng([int(seed), 1]), dev))

    def step_loss(rng: np.random.Generator) -> Tensor:
        x = op.as_image(source.sample(batch, patch, rng, dev))
        y, op_d = measure(x, torch.Generator(device=dev).manual_seed(int(rng.integers(2**62))))
        d = model(y, op_d) - x
        return (d.real.square() + d.imag.square()).mean()

    def validate() -> dict:
        yv, op_d = measure(xv, gv.manual_seed(int(seed)))
        return {"val_psnr": _psnr(model(yv, op_d).abs(), xv.abs()),
                "start_psnr": _psnr(model.start(yv, op_d).abs(), xv.abs())}

    meta = {"batch": batch, "patch": patch, "noise_sigma": sigma,
            "data": getattr(source, "spec", "?"), "operator": _operator_meta(op)}
    loop = _loop(joint, step_loss, validate, task="acquisition", steps=steps, lr=lr, seed=seed,
                 val_every=val_every, resume=resume, checkpoint=checkpoint,
                 checkpoint_every=checkpoint_every, meta=meta, device=dev)
    return loop, design
