r"""Supervised training of networks for one operator: end-to-end post-processing networks
(:func:`train_end_to_end`) and unrolled networks (:func:`train_unrolled`,
:mod:`..models.unrolled`).

Each step simulates :math:`y = A x + \sigma n` from clean patches (:func:`simulate_pairs`), so
a network is trained for one operator configuration :math:`A` (family and parameters) and the
manifest entry records its ``spec()``.
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

__all__ = ["train_end_to_end", "train_unrolled", "simulate_pairs", "SUPERVISIONS",
           "split_samples"]

#: how :func:`train_unrolled` learns: from ground truth, or from the measurements alone
SUPERVISIONS = ("supervised", "ssdu")

Tensor = torch.Tensor


def _mag(x: Tensor) -> Tensor:
    return x.abs() if x.is_complex() else x


def _sq(d: Tensor) -> Tensor:
    return d.abs().square() if d.is_complex() else d.square()


def simulate_pairs(source: PatchSource, n: int, patch: int, rng: np.random.Generator,
                   op: Any, sigma: float, device: Any) -> tuple[Tensor, Tensor]:
    r"""``n`` pairs :math:`(y, x)`: clean patches :math:`x` from ``source`` (cast to the
    operator's image dtype) and :math:`y = A x + \sigma n`, the noise seeded from ``rng``."""
    from ..operators.noise import NoiseParams

    x = op.as_image(source.sample(n, patch, rng, device))
    gen = torch.Generator(device=device).manual_seed(int(rng.integers(2**62)))
    with torch.no_grad():
        return op.measure(x, NoiseParams(model="gaussian", sigma=float(sigma)), gen), x


def _operator_meta(op: Any) -> str:
    return json.dumps(op.spec() if hasattr(op, "spec") else type(op).__name__, default=str)


def train_end_to_end(model: torch.nn.Module, source: PatchSource,
                     operator_factory: Callable[[tuple[int, int], torch.device], Any], *,
                     init: str = "pinv", noise_sigma: float = 0.01, steps: int = 1000,
                     batch: int = 8, patch: int = 48, lr: float = 1e-3, seed: int = 0,
                     device: Any = None, val_every: int = 50, val_size: int = 8,
                     resume: str | Path | None = None, checkpoint: str | Path | None = None,
                     checkpoint_every: int = 100) -> Iterator[TrainState]:
    r"""Train a post-processing network :math:`f_\theta` on (initial reconstruction, truth) pairs.

    For one operator configuration :math:`A` = ``operator_factory((patch, patch), device)``
    (a :class:`~napari_invrec.core.operators.base.LinearOperator`), each step simulates
    :math:`y = A x + \sigma n` and the initial reconstruction :math:`x_0 = A^+ y`
    (``init="pinv"``) or :math:`A^H y` (``init="adjoint"``); complex :math:`x_0` (MRI) is fed
    as its magnitude. The loss is :math:`\mathrm{MSE}(f_\theta(x_0), x)`; the model is called
    ``model(x0)``. Operators with a random pattern draw a new one every step
    (:func:`.loops.step_operator`). Validation: PSNR on fixed held-out pairs with the factory's
    operator (``extras["init_psnr"]``: PSNR of :math:`x_0`).
    """
    _check_common(steps, batch, patch, lr)
    if init not in ("pinv", "adjoint"):
        raise InputError(f"init must be 'pinv' or 'adjoint', got {init!r}")
    if noise_sigma < 0:
        raise InputError(f"noise_sigma must be >= 0, got {noise_sigma}")
    dev = _resolve_device(model, device)
    model.to(dev)
    op = operator_factory((patch, patch), dev)

    def pairs(n: int, rng: np.random.Generator, op_n: Any) -> tuple[Tensor, Tensor]:
        y, x = simulate_pairs(source, n, patch, rng, op_n, noise_sigma, dev)
        with torch.no_grad():
            x0 = op_n.A_pinv(y) if init == "pinv" else op_n.A_adjoint(y)
        return _mag(x0).to(torch.float32), _mag(x).to(torch.float32)

    x0v, xv = pairs(val_size, np.random.default_rng([int(seed), 1]), op)
    init_psnr = _psnr(x0v, xv)

    def step_loss(rng: np.random.Generator) -> Tensor:
        x0, x = pairs(batch, rng, step_operator(op, rng))
        return (model(x0) - x).square().mean()

    def validate() -> dict:
        return {"val_psnr": _psnr(model(x0v), xv), "init_psnr": init_psnr}

    meta = {"batch": batch, "patch": patch, "init": init, "noise_sigma": noise_sigma,
            "data": getattr(source, "spec", "?"),
            "operator": _operator_meta(op)}
    return _loop(model, step_loss, validate, task="end-to-end", steps=steps, lr=lr, seed=seed,
                 val_every=val_every, resume=resume, checkpoint=checkpoint,
                 checkpoint_every=checkpoint_every, meta=meta, device=dev)


def split_samples(mask: Tensor, fraction: float, generator: torch.Generator,
                  columns: bool = False) -> Tensor:
    r"""A random subset :math:`\Lambda` of the samples of ``mask`` (``(B, 1, H, W)`` or
    ``(1, H, W)`` 0/1, broadcast to ``B``), each sample kept independently with probability
    ``fraction``, drawn per batch element: returns the ``(B, 1, H, W)`` float mask
    :math:`\Lambda \subseteq M` (the loss samples of SSDU; :math:`\Theta = M - \Lambda`)."""
    shape = (*mask.shape[:-2], 1, mask.shape[-1]) if columns else mask.shape
    u = torch.rand(shape, generator=generator).to(mask.device)
    return mask * (u < fraction).to(mask.dtype)


def train_unrolled(model: torch.nn.Module, source: PatchSource,
                   operator_factory: Callable[[tuple[int, int], torch.device], Any], *,
                   supervision: str = "supervised", split: float = 0.4,
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
    random pattern draw a new one every step (:func:`.loops.step_operator`).

    ``supervision="ssdu"`` learns from the measurements alone (self-supervision via data
    undersampling, Yaman et al. 2020), for operators that measure a mask of samples
    (inpainting, single-coil MRI): the samples :math:`M` of each measurement are split at
    random into :math:`\Lambda` (each sample with probability ``split``,
    :func:`split_samples`) and :math:`\Theta = M \setminus \Lambda`; the network
    reconstructs from :math:`y_\Theta` through :math:`A_\Theta` and is scored on the held-out
    samples,

    .. math::

        \mathcal L = \frac1B \sum_b \frac{\| \Lambda_b \odot (A_M f_\theta(y_{\Theta,b},
        A_\Theta) - y_b) \|^2}{\|\Lambda_b \odot y_b\|^2}

    (the normalised error of Yaman et al., so that k-space's large low frequencies and an
    image's pixels weigh alike),

    so :math:`x` is used only to simulate :math:`y` (and to report the validation PSNR, which
    the optimisation never sees). At inference the network sees all of :math:`M`; it must end
    with a data-consistency step (``final_dc=True``), which at inference puts back every
    measured sample (a network that only learned to add the :math:`\Lambda` part would
    otherwise add it on top of the measured samples). Validation: PSNR of the magnitude
    :math:`|f_\theta(y, A)|` on ``val_size`` fixed held-out pairs;
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
    if supervision not in SUPERVISIONS:
        raise InputError(f"supervision must be one of {', '.join(SUPERVISIONS)}, got "
                         f"{supervision!r}")
    if not 0 < split < 1:
        raise InputError(f"the SSDU loss fraction split must be in (0, 1), got {split}")

    dev = _resolve_device(model, device)
    model.to(dev)
    op = operator_factory((patch, patch), dev)
    if bool(op.complex_image) != bool(getattr(model, "complex_images", False)):
        kind = "complex" if op.complex_image else "real"
        raise InputError(f"operator {op.name!r} has {kind} images; build the network with "
                         f"complex_images={bool(op.complex_image)}")
    if supervision == "ssdu" and not getattr(model, "final_dc", False):
        raise InputError(f"a network trained by SSDU must end with a data-consistency step: "
                         f"build {type(model).__name__} with final_dc=True")
    if supervision == "ssdu" and not hasattr(op, "with_mask_stack"):
        raise InputError(f"SSDU splits measured samples: it needs an operator that measures a "
                         f"mask of samples (inpaint, mri), not {op.name!r}")

    def pairs(n: int, rng: np.random.Generator, op_n: Any) -> tuple[Tensor, Tensor]:
        return simulate_pairs(source, n, patch, rng, op_n, noise_sigma, dev)

    yv, xv = pairs(val_size, np.random.default_rng([int(seed), 1]), op)
    with torch.no_grad():
        adjoint_psnr = _psnr(_mag(op.A_adjoint(yv)), _mag(xv))

    def step_loss(rng: np.random.Generator) -> Tensor:
        op_k = step_operator(op, rng)
        y, x = pairs(batch, rng, op_k)
        if supervision == "ssdu":
            gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
            m = op_k.mask_tensor().expand(batch, 1, *op_k.shape)
            lam = split_samples(m, split, gen, columns=op.name == "mri")
            theta = op_k.with_mask_stack((m - lam)[:, 0])
            d = _sq(lam * (op_k.A(model((m - lam) * y, theta)) - y)).flatten(1).sum(1)
            return (d / _sq(lam * y).flatten(1).sum(1).clamp_min(1e-12)).mean()
        return _sq(model(y, op_k) - x).mean()

    def validate() -> dict:
        return {"val_psnr": _psnr(_mag(model(yv, op)), _mag(xv)), "adjoint_psnr": adjoint_psnr}

    meta = {"batch": batch, "patch": patch, "noise_sigma": noise_sigma,
            "supervision": supervision, "split": split,
            "data": getattr(source, "spec", "?"),
            "operator": _operator_meta(op)}
    return _loop(model, step_loss, validate, task="unrolled", steps=steps, lr=lr, seed=seed,
                 val_every=val_every, resume=resume, checkpoint=checkpoint,
                 checkpoint_every=checkpoint_every, meta=meta, device=dev)
