r"""Supervised training of unrolled networks (:mod:`..models.unrolled`) for one operator.

The operator is part of the network's forward pass, so a network is trained for one operator
configuration :math:`A` (family and parameters) and the manifest entry records its ``spec()``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import InputError
from .datasets import PatchSource
from .loops import (
    TrainState,
    _check_common,
    _loop,
    _psnr,
    _resolve_device,
    step_operator,
)

__all__ = ["train_unrolled"]

Tensor = torch.Tensor


def _mag(x: Tensor) -> Tensor:
    return x.abs() if x.is_complex() else x


def train_unrolled(model: torch.nn.Module, source: PatchSource,
                   operator_factory: Callable[[tuple[int, int], torch.device], Any], *,
                   noise_sigma: float = 0.01, steps: int = 1000, batch: int = 8,
                   patch: int = 48, lr: float = 1e-3, seed: int = 0, device: Any = None,
                   val_every: int = 50, val_size: int = 8, resume: str | Path | None = None,
                   checkpoint: str | Path | None = None, checkpoint_every: int = 100
                   ) -> Iterator[TrainState]:
    r"""Train an unrolled network :math:`f_\theta(y, A)` on simulated measurements.

    For the operator :math:`A` = ``operator_factory((patch, patch), device)`` each step draws
    clean patches :math:`x` from ``source`` and simulates :math:`y = A x + \sigma n`
    (Gaussian, :math:`\sigma` = ``noise_sigma``, complex Gaussian for a complex measurement);
    the loss is

    .. math::

        \mathcal L = \frac{1}{B\,HW} \sum_b \big| f_\theta(y_b, A) - x_b \big|^2,

    with :math:`x` cast to the operator's image dtype (complex for MRI); operators with a
    random pattern draw a new one every step (:func:`.loops.step_operator`). Validation: PSNR of
    the magnitude :math:`|f_\theta(y, A)|` on ``val_size`` fixed held-out pairs;
    ``extras["adjoint_psnr"]`` is the PSNR of :math:`|A^H y|` on the same pairs. Steps, data
    and checkpoints follow :mod:`.loops` (same seed, same losses; ``resume`` continues a run
    exactly).

    Returns
    -------
    Iterator[TrainState]
        A generator yielding the state after every step (arguments are checked and the
        validation set simulated when this function is called).

    Raises
    ------
    InputError
        Bad sizes / learning rate / noise level, a model that is not an unrolled network, or a
        network whose real/complex kind does not match the operator.
    """
    _check_common(steps, batch, patch, lr)
    if not noise_sigma >= 0:
        raise InputError(f"noise_sigma must be >= 0, got {noise_sigma}")
    if getattr(model, "kind", None) != "unrolled":
        raise InputError(f"{type(model).__name__} is not an unrolled network (UnrolledPGD, "
                         "VarNet, NeumannNet); use train_end_to_end for post-processing nets")
    from ..operators.noise import NoiseParams

    dev = _resolve_device(model, device)
    model.to(dev)
    op = operator_factory((patch, patch), dev)
    if bool(op.complex_image) != bool(getattr(model, "complex_images", False)):
        kind = "complex" if op.complex_image else "real"
        raise InputError(f"operator {op.name!r} has {kind} images; build the network with "
                         f"complex_images={bool(op.complex_image)}")
    noise = NoiseParams(model="gaussian", sigma=float(noise_sigma))

    def pairs(n: int, rng: np.random.Generator, op_n: Any) -> tuple[Tensor, Tensor]:
        x = op_n.as_image(source.sample(n, patch, rng, dev))
        gen = torch.Generator(device=dev).manual_seed(int(rng.integers(2**62)))
        return op_n.measure(x, noise, gen), x

    yv, xv = pairs(val_size, np.random.default_rng([int(seed), 1]), op)
    with torch.no_grad():
        adjoint_psnr = _psnr(_mag(op.A_adjoint(yv)), _mag(xv))

    def step_loss(rng: np.random.Generator) -> Tensor:
        op_k = step_operator(op, rng)
        y, x = pairs(batch, rng, op_k)
        d = model(y, op_k) - x
        return (d.abs().square() if d.is_complex() else d.square()).mean()

    def validate() -> dict:
        return {"val_psnr": _psnr(_mag(model(yv, op)), _mag(xv)), "adjoint_psnr": adjoint_psnr}

    meta = {"batch": batch, "patch": patch, "noise_sigma": noise_sigma,
            "data": getattr(source, "spec", "?"),
            "operator": json.dumps(op.spec() if hasattr(op, "spec") else type(op).__name__,
                                   default=str)}
    return _loop(model, step_loss, validate, task="unrolled", steps=steps, lr=lr, seed=seed,
                 val_every=val_every, resume=resume, checkpoint=checkpoint,
                 checkpoint_every=checkpoint_every, meta=meta, device=dev)
