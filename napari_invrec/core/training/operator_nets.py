r"""Training of networks for one operator: end-to-end post-processing networks
(:func:`train_end_to_end`) and unrolled networks (:func:`train_unrolled`,
:mod:`..models.unrolled`), with ground truth or from measurements alone (:func:`ssdu_loss`,
:func:`ei_loss`), on simulated measurements or on a stack of real ones
(:func:`train_from_measurements`).

Each step of the simulated path draws :math:`y = A x + \sigma n` from clean patches
(:func:`simulate_pairs`), so a network is trained for one operator configuration :math:`A`
(family and parameters) and the manifest entry records its ``spec()``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import InputError
from ..operators.noise import NoiseParams
from .adversarial import cgan_loss, is_adversarial
from .datasets import PatchSource
from .loops import (
    TrainState,
    _check_common,
    _loop,
    _psnr,
    _resolve_device,
    step_operator,
)

__all__ = ["train_end_to_end", "train_unrolled", "train_from_measurements", "simulate_pairs",
           "SUPERVISIONS", "SELF_SUPERVISIONS", "SSDU_SPLIT", "split_samples", "ssdu_loss",
           "ei_loss", "random_transform"]

#: how :func:`train_unrolled` learns: from ground truth, or from the measurements alone by
#: splitting their samples (SSDU) or by equivariance (EI)
SUPERVISIONS = ("supervised", "ssdu", "ei")
#: SSDU: the default fraction of a measurement's samples held out for the loss
SSDU_SPLIT = 0.4
SELF_SUPERVISIONS = ("ssdu", "ei")

Tensor = torch.Tensor


def _mag(x: Tensor) -> Tensor:
    return x.abs() if x.is_complex() else x


def _sq(d: Tensor) -> Tensor:
    return d.abs().square() if d.is_complex() else d.square()


def simulate_pairs(source: PatchSource, n: int, patch: int, rng: np.random.Generator,
                   op: Any, sigma: float, device: Any) -> tuple[Tensor, Tensor]:
    r"""``n`` pairs :math:`(y, x)`: clean patches :math:`x` from ``source`` (cast to the
    operator's image dtype) and :math:`y = A x + \sigma n`, the noise seeded from ``rng``."""
    x = op.as_image(source.sample(n, patch, rng, device))
    gen = torch.Generator(device=device).manual_seed(int(rng.integers(2**62)))
    with torch.no_grad():
        return op.measure(x, NoiseParams(model="gaussian", sigma=float(sigma)), gen), x


def _operator_meta(op: Any) -> str:
    return json.dumps(op.spec() if hasattr(op, "spec") else type(op).__name__, default=str)


def operator_setup(model: torch.nn.Module,
                   operator_factory: Callable[[tuple[int, int], torch.device], Any],
                   steps: int, batch: int, patch: int, lr: float, noise_sigma: float,
                   device: Any) -> tuple[torch.device, Any]:
    """Check the schedule and noise level of a training for one operator, move ``model`` to
    its device and build the operator at the patch size: ``(device, operator)``."""
    _check_common(steps, batch, patch, lr)
    if not noise_sigma >= 0:
        raise InputError(f"noise_sigma must be >= 0, got {noise_sigma}")
    dev = _resolve_device(model, device)
    model.to(dev)
    return dev, operator_factory((patch, patch), dev)


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
    ``model(x0)``. A conditional GAN (a model with a ``discriminator``,
    :class:`~..models.cgan.ConditionalGAN`) is trained with the adversarial loss
    :func:`.adversarial.cgan_loss` instead (the squared error plus its adversarial term).
    Operators with a random pattern draw a new one every step (:func:`.loops.step_operator`).
    Validation: PSNR on fixed held-out pairs with the factory's operator
    (``extras["init_psnr"]``: PSNR of :math:`x_0`).
    """
    if init not in ("pinv", "adjoint"):
        raise InputError(f"init must be 'pinv' or 'adjoint', got {init!r}")
    dev, op = operator_setup(model, operator_factory, steps, batch, patch, lr, noise_sigma,
                             device)

    def pairs(n: int, rng: np.random.Generator, op_n: Any) -> tuple[Tensor, Tensor]:
        y, x = simulate_pairs(source, n, patch, rng, op_n, noise_sigma, dev)
        with torch.no_grad():
            x0 = op_n.A_pinv(y) if init == "pinv" else op_n.A_adjoint(y)
        return _mag(x0).to(torch.float32), _mag(x).to(torch.float32)

    x0v, xv = pairs(val_size, np.random.default_rng([int(seed), 1]), op)
    init_psnr = _psnr(x0v, xv)

    adversarial = is_adversarial(model)

    def step_loss(rng: np.random.Generator) -> Tensor:
        x0, x = pairs(batch, rng, step_operator(op, rng))
        if adversarial:
            return cgan_loss(model, x0, x)
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
                  columns: bool = False, keep: Tensor | None = None) -> Tensor:
    r"""A random subset :math:`\Lambda` of the samples of ``mask`` (``(B, 1, H, W)`` or
    ``(1, H, W)`` 0/1, broadcast to ``B``), each sample (each column with ``columns``) kept
    independently with probability ``fraction``, drawn per batch element, never one of the
    columns ``keep`` (``(W,)`` bool; they stay in the input): returns the ``(B, 1, H, W)``
    float mask :math:`\Lambda \subseteq M` (the loss samples of SSDU;
    :math:`\Theta = M - \Lambda`)."""
    shape = (*mask.shape[:-2], 1, mask.shape[-1]) if columns else mask.shape
    u = torch.rand(shape, generator=generator).to(mask.device)
    lam = mask * (u < fraction).to(mask.dtype)
    return lam if keep is None else lam * (~keep.to(mask.device)).to(mask.dtype)


def ssdu_loss(model: torch.nn.Module, y: Tensor, op: Any, split: float,
              generator: torch.Generator, masks: int = 1, lines: bool = True) -> Tensor:
    r"""The SSDU loss of ``model`` on measurements ``y`` ``(B, 1, ...)`` of ``op`` (an operator
    that measures a mask :math:`M` of samples): :math:`M` is split into :math:`\Lambda`
    (:func:`split_samples`, whole k-space columns for MRI) and :math:`\Theta = M - \Lambda`,
    and

    .. math::

        \mathcal L = \frac{\sum_b \| \Lambda_b \odot (A_M f_\theta(y_{\Theta,b},
        A_\Theta) - y_b) \|^2}{\sum_b \|\Lambda_b \odot y_b\|^2},

    the squared error of the held-out samples relative to their energy over the whole batch.
    The numerator is, up to the constant noise energy, the squared error of the predicted
    samples, which (Parseval) is the image-domain error those samples carry: minimising it
    aims at the supervised network's target, the mean-squared error. (Yaman et al. 2020
    normalise per measurement instead; that weighs a measurement whose held-out samples hold
    little energy, e.g. only high k-space frequencies, many times more per unit of error and
    trained a VarNet 1.75 dB below its supervised twin.) For MRI the fully sampled centre
    columns always stay in :math:`\Theta`, as in Yaman et al.: the network then always sees
    the k-space centre, as it will at inference, and learns to predict the outer columns. It
    estimates the error of predicting samples the network did not see; it never looks at an
    image. ``masks`` > 1 splits each measurement that many times independently (multi-mask
    SSDU, Yaman et al. 2021): the batch is ``y`` repeated ``masks`` times, more held-out
    samples per measurement and step for ``masks`` times the work. ``lines=False`` splits MRI
    samples one by one instead of whole columns (as Yaman et al. select :math:`\Lambda`): the
    network then learns from inputs with partly measured columns, a wider variety of masks."""
    if masks > 1:
        y = y.repeat(masks, *([1] * (y.dim() - 1)))
    batch = y.shape[0]
    m = op.mask_tensor().expand(batch, 1, *op.shape)
    keep = None
    if op.name == "mri":
        from ..operators.mri import centre_columns

        keep = torch.zeros(op.shape[-1], dtype=torch.bool)
        keep[centre_columns(op.shape[-1], op.params.center_fraction)] = True
    lam = split_samples(m, split, generator, columns=lines and op.name == "mri", keep=keep)
    theta = op.with_mask_stack((m - lam)[:, 0])
    d = _sq(lam * (op.A(model((m - lam) * y, theta)) - y)).sum()
    return d / _sq(lam * y).sum().clamp_min(1e-12)


def random_transform(x: Tensor, generator: torch.Generator) -> Tensor:
    r""":math:`T_g x` per batch element: a rotation by a random multiple of 90 degrees (of 180
    for a non-square image) followed by a random circular shift, both drawn from
    ``generator``. These maps keep the set of images (the equivariance of equivariant
    imaging) and move the null space of masks, k-space lines and few-angle projections."""
    h, w = x.shape[-2:]
    out = []
    for xb in x:
        turns = (0, 1, 2, 3) if h == w else (0, 2)
        k = turns[int(torch.randint(len(turns), (1,), generator=generator))]
        dy, dx = (int(v) for v in torch.randint(max(h, w), (2,), generator=generator))
        out.append(torch.roll(torch.rot90(xb, k, dims=(-2, -1)), (dy % h, dx % w), (-2, -1)))
    return torch.stack(out)


def ei_loss(model: torch.nn.Module, y: Tensor, op: Any, sigma: float,
            generator: torch.Generator) -> Tensor:
    r"""The equivariant-imaging loss (Chen, Tachella & Davies 2021) of ``model`` on
    measurements ``y`` of ``op``:

    .. math::

        x_1 = f_\theta(y, A), \quad x_2 = T_g x_1, \quad
        x_3 = f_\theta(A x_2 + \sigma n, A), \qquad
        \mathcal L = \frac{\|A x_1 - y\|^2}{m} + \frac{\|x_3 - x_2\|^2}{n}

    with :math:`T_g` a random rotation and shift (:func:`random_transform`). The first term
    (measurement consistency) sees only the range of :math:`A^H`; the second asks the network
    to be equivariant to transforms that move the null space, which is how it learns the
    missing part. It is blind where no transform moves the null space (e.g. the frequencies a
    shift-invariant blur removes)."""
    x1 = model(y, op)
    mc = _sq(op.A(x1) - y).mean()
    x2 = random_transform(x1, generator)
    z = op.A(x2)
    if z.is_complex():  # drawn on the CPU generator, then moved: the same on any device
        re, im = torch.randn((2, *z.shape), generator=generator)
        noise = torch.complex(re, im) * (float(sigma) / 2 ** 0.5)
    else:
        noise = torch.randn(z.shape, generator=generator) * float(sigma)
    return mc + _sq(model(z + noise.to(device=z.device, dtype=z.dtype), op) - x2).mean()


def _check_unrolled(model: torch.nn.Module, op: Any, supervision: str, split: float,
                    masks: int = 1) -> None:
    """Refuse a model, operator or supervision :func:`train_unrolled` cannot train."""
    if getattr(model, "kind", None) != "unrolled":
        raise InputError(f"{type(model).__name__} is not an unrolled network (UnrolledPGD, "
                         "VarNet, NeumannNet); use train_end_to_end for post-processing nets")
    if supervision not in SUPERVISIONS:
        raise InputError(f"supervision must be one of {', '.join(SUPERVISIONS)}, got "
                         f"{supervision!r}")
    if not 0 < split < 1:
        raise InputError(f"the SSDU loss fraction split must be in (0, 1), got {split}")
    if isinstance(masks, bool) or not isinstance(masks, int) or not 1 <= masks <= 16:
        raise InputError(f"masks (SSDU splits per measurement and step) must be a whole "
                         f"number from 1 to 16, got {masks!r}")
    if bool(op.complex_image) != bool(getattr(model, "complex_images", False)):
        kind = "complex" if op.complex_image else "real"
        raise InputError(f"operator {op.name!r} has {kind} images; build the network with "
                         f"complex_images={bool(op.complex_image)}")
    if supervision == "ssdu" and not getattr(model, "final_dc", False):
        raise InputError(f"a network trained by SSDU must end with a data-consistency step: "
                         f"build {type(model).__name__} with final_dc=True")
    if supervision == "ssdu" and not hasattr(op, "with_mask_stack"):
        raise InputError(f"SSDU splits measured samples: it needs an operator that measures a "
                         f"mask of samples (inpaint, mri), not {op.name!r}; learn by "
                         "equivariance (ei) instead")


def _self_supervised_loss(model: torch.nn.Module, y: Tensor, op: Any, supervision: str,
                          split: float, sigma: float, rng: np.random.Generator,
                          masks: int = 1, lines: bool = True) -> Tensor:
    gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
    if supervision == "ssdu":
        return ssdu_loss(model, y, op, split, gen, masks, lines)
    return ei_loss(model, y, op, sigma, gen)


def train_unrolled(model: torch.nn.Module, source: PatchSource,
                   operator_factory: Callable[[tuple[int, int], torch.device], Any], *,
                   supervision: str = "supervised", split: float = SSDU_SPLIT,
                   masks: int = 1, split_lines: bool = True, noise_sigma: float = 0.01,
                   steps: int = 1000, batch: int = 8,
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
    (inpainting, single-coil MRI): the samples of each measurement are split into an input set
    and a loss set and the network is scored on predicting the held-out samples
    (:func:`ssdu_loss`, ``split`` the loss fraction, ``masks`` the independent splits of each
    measurement per step, ``split_lines`` whole k-space columns or single samples). At
    inference the network sees all the
    samples; it must end with a data-consistency step (``final_dc=True``), which puts back
    every measured sample (a network that only learned to add the held-out part would
    otherwise add it on top of the measured samples). ``supervision="ei"`` learns by
    equivariant imaging (:func:`ei_loss`: measurement consistency plus equivariance to
    rotations and shifts, for any linear operator whose null space they move). In both, the
    clean :math:`x` is used only to simulate :math:`y` (and to report the validation PSNR,
    which the optimisation never sees); :func:`train_from_measurements` learns from a stack
    of real measurements instead.

    Validation: PSNR of the magnitude :math:`|f_\theta(y, A)|` on ``val_size`` fixed held-out
    pairs; ``extras["adjoint_psnr"]`` is the PSNR of :math:`|A^H y|` on the same pairs. Steps,
    data and checkpoints follow :mod:`.loops` (same seed, same losses; ``resume`` continues a
    run exactly).

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
    dev, op = operator_setup(model, operator_factory, steps, batch, patch, lr, noise_sigma,
                             device)
    _check_unrolled(model, op, supervision, split, masks)

    def pairs(n: int, rng: np.random.Generator, op_n: Any) -> tuple[Tensor, Tensor]:
        return simulate_pairs(source, n, patch, rng, op_n, noise_sigma, dev)

    yv, xv = pairs(val_size, np.random.default_rng([int(seed), 1]), op)
    adjoint_psnr = None  # (a nonlinear operator, phase retrieval, has no adjoint)
    if hasattr(op, "A_adjoint"):
        with torch.no_grad():
            adjoint_psnr = _psnr(_mag(op.A_adjoint(yv)), _mag(xv))

    def step_loss(rng: np.random.Generator) -> Tensor:
        op_k = step_operator(op, rng)
        y, x = pairs(batch, rng, op_k)
        if supervision != "supervised":
            return _self_supervised_loss(model, y, op_k, supervision, split, noise_sigma, rng,
                                         masks, split_lines)
        return _sq(model(y, op_k) - x).mean()

    def validate() -> dict:
        return {"val_psnr": _psnr(_mag(model(yv, op)), _mag(xv)), "adjoint_psnr": adjoint_psnr}

    meta = {"batch": batch, "patch": patch, "noise_sigma": noise_sigma,
            "supervision": supervision, "split": split, "masks": masks,
            "split_lines": split_lines,
            "data": getattr(source, "spec", "?"),
            "operator": _operator_meta(op)}
    return _loop(model, step_loss, validate, task="unrolled", steps=steps, lr=lr, seed=seed,
                 val_every=val_every, resume=resume, checkpoint=checkpoint,
                 checkpoint_every=checkpoint_every, meta=meta, device=dev)


def train_from_measurements(model: torch.nn.Module, measurements: Tensor, op: Any, *,
                            supervision: str = "ssdu", split: float = SSDU_SPLIT,
                            masks: int = 1, split_lines: bool = True,
                            noise_sigma: float = 0.01, steps: int = 1000, batch: int = 4,
                            lr: float = 1e-3, seed: int = 0, device: Any = None,
                            val_every: int = 50, val_size: int = 8,
                            resume: str | Path | None = None,
                            checkpoint: str | Path | None = None, checkpoint_every: int = 100
                            ) -> Iterator[TrainState]:
    r"""Train an unrolled network on a stack of measurements alone, with no image anywhere.

    ``measurements`` is ``(N, *op.measurement_shape)`` (real, or complex for k-space), all
    taken through the one operator ``op`` (its mask, at the images' full size), in the units
    the network will run in (images in about :math:`[0, 1]`; the engine normalises them as a
    run would). Each step draws ``batch`` of them (with replacement when there are fewer) and
    minimises the SSDU loss (:func:`ssdu_loss`) or the equivariant-imaging loss
    (:func:`ei_loss`, re-measuring with Gaussian noise of std ``noise_sigma``).

    Validation has no ground truth: ``extras["val_loss"]`` is the same loss on up to
    ``val_size`` of the measurements with one fixed draw of splits / transforms, so that
    successive values compare (for SSDU: the relative error of predicting held-out
    samples). The state's ``val_psnr`` is ``None``.

    Raises
    ------
    InputError
        ``supervision`` ``"supervised"`` (there is no ground truth), measurements of the wrong
        shape or with NaN/inf, or what :func:`train_unrolled` refuses.
    """
    _check_common(steps, batch, 8, lr)
    if supervision not in SELF_SUPERVISIONS:
        raise InputError(f"measurements alone have no ground truth: learn by "
                         f"{' or '.join(SELF_SUPERVISIONS)}, not {supervision!r}")
    if not noise_sigma >= 0:
        raise InputError(f"noise_sigma must be >= 0, got {noise_sigma}")
    dev = _resolve_device(model, device)
    model.to(dev)
    op = op.to(dev)
    _check_unrolled(model, op, supervision, split, masks)
    y_all = torch.as_tensor(measurements)
    mshape = tuple(op.measurement_shape)
    if y_all.dim() == len(mshape):
        y_all = y_all[None]
    if tuple(y_all.shape[1:]) != mshape:
        raise InputError(f"measurements of {op.name} are {mshape}; got a stack of "
                         f"{tuple(y_all.shape[1:])}")
    if not bool(torch.isfinite(y_all).all()):
        raise InputError("the measurements contain NaN or inf; remove or fill those samples")
    y_all = y_all.to(device=dev, dtype=op.measurement_dtype)[:, None]
    n = y_all.shape[0]
    yv = y_all[:val_size]

    def step_loss(rng: np.random.Generator) -> Tensor:
        idx = rng.choice(n, size=batch, replace=n < batch)
        return _self_supervised_loss(model, y_all[torch.as_tensor(idx, device=dev)], op,
                                     supervision, split, noise_sigma, rng, masks, split_lines)

    def validate() -> dict:
        rng = np.random.default_rng([int(seed), 2])  # the same draw at every validation
        return {"val_loss": float(_self_supervised_loss(model, yv, op, supervision, split,
                                                        noise_sigma, rng, masks,
                                                        split_lines))}

    meta = {"batch": batch, "noise_sigma": noise_sigma, "supervision": supervision,
            "split": split, "masks": masks, "split_lines": split_lines,
            "data": f"{n} measurements",
            "operator": _operator_meta(op)}
    return _loop(model, step_loss, validate, task="unrolled", steps=steps, lr=lr, seed=seed,
                 val_every=val_every, resume=resume, checkpoint=checkpoint,
                 checkpoint_every=checkpoint_every, meta=meta, device=dev)
