r"""Training loops as generators yielding a :class:`TrainState` after every optimiser step.

Like the reconstruction methods (DESIGN §4), a loop is cancellable between steps (stop
iterating or call ``close()``), streams progress for free and returns its final state.

Common to every loop:

* Adam with a cosine-decayed learning rate,
  :math:`\eta_k = \tfrac{\eta_0}{2}\big(1 + \cos(\pi (k - 1) / K)\big)` for step
  :math:`k = 1..K`, computed from the step number;
* the data of step :math:`k` comes from ``numpy.random.default_rng([seed, 0, k])`` and a fixed
  held-out validation set from ``default_rng([seed, 1])``, so the same seed gives the same
  losses (bit for bit on CPU) and a run resumed from a checkpoint (``resume=path``) continues
  with exactly the losses of an uninterrupted run;
* a checkpoint is written every ``checkpoint_every`` steps and at the end when ``checkpoint``
  is given; validation runs every ``val_every`` steps and at the last step;
* the denoiser loops (``fast=True``, default) split each batch into fixed shards computed on
  worker threads (:mod:`.speed`): the losses are those of one full-batch pass to float32
  rounding, and bit for bit the same for a seed whatever the number of CPU threads.

Noise-conditional models (DRUNet-like) are called ``model(x, sigma)`` with ``sigma`` the noise
std of each batch element as a ``(B, 1, 1, 1)`` tensor (broadcastable to the ``(B, 1, H, W)``
noise-level map the model builds); other models ``model(x)``. ``conditional=None``
decides from ``model.noise_conditional`` when the model has that attribute, otherwise from
whether ``model.forward`` takes a second positional argument.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn.functional import conv2d, pad

from ..errors import DivergenceError, InputError
from ..models.layout import to_channels_last, to_contiguous
from ..threads import torch_threads
from .checkpoint import load_checkpoint, save_checkpoint
from .datasets import ArrayPatches, PatchSource
from .speed import (
    SHARD_SIZE,
    BatchLoss,
    ShardPool,
    make_adam,
    shard_slices,
    shardable,
    sharded_step,
)

__all__ = ["TrainState", "train_denoiser", "train_noise2self", "cosine_lr", "is_conditional",
           "call_model", "blind_spot_input", "blind_spot_passes",
           "blind_spot_predict", "drain", "step_operator"]

Tensor = torch.Tensor


@dataclass
class TrainState:
    """Progress after one optimiser step.

    ``val_psnr`` (dB, data range 1) is the latest validation value (``None`` before the first
    validation or when the loop has no ground truth); ``extras`` holds loop-specific values
    such as the validation input's PSNR.
    """

    step: int
    total: int
    loss: float
    val_psnr: float | None
    lr: float
    elapsed: float
    extras: dict = field(default_factory=dict)


def cosine_lr(lr: float, step: int, total: int) -> float:
    r"""Cosine decay :math:`\eta_k = \tfrac{\eta_0}{2}(1 + \cos(\pi (k - 1)/K))`, k from 1."""
    return 0.5 * lr * (1.0 + math.cos(math.pi * (step - 1) / max(total, 1)))


def is_conditional(model: torch.nn.Module) -> bool:
    """Whether ``model`` takes a noise-level map as second argument (see module docstring)."""
    flag = getattr(model, "noise_conditional", None)
    if flag is not None:
        return bool(flag)
    params = [p for p in inspect.signature(model.forward).parameters.values()
              if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(params) >= 2


def call_model(model: torch.nn.Module, x: Tensor, sigma: Tensor | float | None,
               conditional: bool) -> Tensor:
    """``model(x, sigma)`` with ``sigma`` a ``(B, 1, 1, 1)`` tensor if ``conditional``.

    Otherwise ``model(x)``. ``sigma`` may be a float or hold 1 or ``B`` levels.
    """
    if not conditional:
        return model(x)
    if sigma is None:
        raise InputError("a noise-conditional model needs the noise level sigma; give sigma")
    s = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).reshape(-1)
    if s.numel() not in (1, x.shape[0]):
        raise InputError(f"sigma has {s.numel()} levels for a batch of {x.shape[0]}")
    return model(x, s.expand(x.shape[0]).reshape(-1, 1, 1, 1))


def _psnr(x: Tensor, ref: Tensor) -> float:
    """Mean over the batch of :math:`10 \\log_{10}(1 / \\mathrm{MSE})` (data range 1)."""
    mse = (x - ref).square().flatten(1).mean(1).clamp_min(1e-12)
    return float((10.0 * torch.log10(1.0 / mse)).mean())


def drain(gen: Iterator[TrainState]) -> TrainState | None:
    """Run a loop to the end and return its last state."""
    last = None
    for state in gen:
        last = state
    return last


def _resolve_device(model: torch.nn.Module, device: Any) -> torch.device:
    if device is not None:
        return torch.device(device)
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def step_operator(op: Any, rng: np.random.Generator) -> Any:
    """The operator of one training step: ``op`` itself, or, when its parameters have a
    ``seed`` (a random inpainting mask, MRI sampling pattern, CS matrix...), the same
    configuration with a pattern drawn from ``rng``. Networks then learn the operator's
    configuration rather than one pattern, and work on the patterns of other image sizes."""
    if not dataclasses.is_dataclass(getattr(op, "params", None)) or \
            "seed" not in {f.name for f in dataclasses.fields(op.params)}:
        return op
    params = dataclasses.replace(op.params, seed=int(rng.integers(2**31 - 1)))
    return type(op)(op.shape, params, device=op.device)


def _check_common(steps: int, batch: int, patch: int, lr: float) -> None:
    for name, v in (("steps", steps), ("batch", batch), ("patch", patch)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise InputError(f"{name} must be a positive integer, got {v!r}")
    if not lr > 0:
        raise InputError(f"lr must be > 0, got {lr}")


def _loop(model: torch.nn.Module, step_loss: Callable[[np.random.Generator], Tensor],
          validate: Callable[[], dict], *, task: str, steps: int, lr: float, seed: int,
          val_every: int, resume: str | Path | None, checkpoint: str | Path | None,
          checkpoint_every: int, meta: dict, device: torch.device, fast: bool = False
          ) -> Iterator[TrainState]:
    """The shared optimisation loop (see the module docstring).

    The optimiser is built and a checkpoint to resume from is loaded when this is called, so
    a bad checkpoint raises at once; the returned generator runs the steps. ``fast`` (a
    :class:`~.speed.BatchLoss` ``step_loss`` only) trains with the throughput settings of
    :func:`_fast_steps`; otherwise each step is one ``step_loss(rng).backward()``.
    """
    fast = bool(fast) and isinstance(step_loss, BatchLoss)
    opt = make_adam(model.parameters(), lr, fast=fast)
    start = 0
    meta = {"task": task, "seed": int(seed), "steps": int(steps), "lr": float(lr), **meta}
    if resume is not None:
        rec = load_checkpoint(resume, model, opt, map_location=device)
        if rec["meta"].get("task") != task:
            raise InputError(f"checkpoint {str(resume)!r} is from a {rec['meta'].get('task')!r} "
                             f"run, not {task!r}")
        start = int(rec["step"])
    run = _fast_steps if fast else _steps
    return run(model, opt, step_loss, validate, start=start, steps=steps, lr=lr, seed=seed,
               val_every=val_every, checkpoint=checkpoint,
               checkpoint_every=checkpoint_every, meta=meta)


def _fast_steps(model: torch.nn.Module, opt: torch.optim.Optimizer, step_loss: BatchLoss,
                validate: Callable[[], dict], **kw: Any) -> Iterator[TrainState]:
    """:func:`_steps` with the batch in shards on worker threads on the CPU
    (:func:`~.speed.sharded_step`; the CPU threads torch has when the first step runs, e.g.
    under a caller's thread cap), channels-last weights on the CPU, and the rest of the step
    (optimiser, validation) on one worker's thread count. The model is back in the usual
    memory layout when the generator ends or is closed; the caller's thread setting is
    untouched between steps."""
    p0 = next(model.parameters(), None)
    cpu = p0 is None or p0.device.type == "cpu"
    # shards are for CPU cores; batch norm / dropout couple the samples: then one shard
    size = SHARD_SIZE if cpu and shardable(model) else step_loss.batch
    pool = ShardPool.for_shards(len(shard_slices(step_loss.batch, size)))
    if cpu:
        to_channels_last(model, opt)
    params = [p for p in model.parameters() if p.requires_grad]

    def backward(rng: np.random.Generator) -> Tensor:
        return sharded_step(step_loss, rng, params, pool, size)

    try:
        return (yield from _steps(model, opt, step_loss, validate, backward=backward,
                                  threads=pool.intra, **kw))
    finally:
        pool.close()
        if cpu and not sys.is_finalizing():  # an unclosed loop collected at exit: no imports
            to_contiguous(model, opt)


def _plain_backward(step_loss: Callable[[np.random.Generator], Tensor]
                    ) -> Callable[[np.random.Generator], Tensor]:
    def backward(rng: np.random.Generator) -> Tensor:
        loss = step_loss(rng)
        if torch.isfinite(loss):
            loss.backward()
        return loss

    return backward


def _steps(model: torch.nn.Module, opt: torch.optim.Optimizer,
           step_loss: Callable[[np.random.Generator], Tensor], validate: Callable[[], dict], *,
           start: int, steps: int, lr: float, seed: int, val_every: int,
           checkpoint: str | Path | None, checkpoint_every: int, meta: dict,
           backward: Callable[[np.random.Generator], Tensor] | None = None,
           threads: int | None = None) -> Iterator[TrainState]:
    """The steps; ``backward(rng)`` computes the gradients and returns the loss (default:
    ``step_loss(rng).backward()``); ``threads`` sets torch's threads during each step."""
    backward = backward or _plain_backward(step_loss)
    t0 = time.perf_counter()
    val: dict = {}
    state = None
    for k in range(start + 1, steps + 1):
        with torch_threads(threads or None):
            lr_k, loss, val = _one_step(model, opt, backward, validate, val, k=k, steps=steps,
                                        lr=lr, seed=seed, val_every=val_every)
            if checkpoint is not None and (k % max(1, checkpoint_every) == 0 or k == steps):
                save_checkpoint(checkpoint, model, opt, k, meta)
        extras = {key: v for key, v in val.items() if key != "val_psnr"}
        state = TrainState(step=k, total=steps, loss=float(loss.detach()),
                           val_psnr=val.get("val_psnr"), lr=lr_k,
                           elapsed=time.perf_counter() - t0, extras=extras)
        yield state
    return state


def _one_step(model: torch.nn.Module, opt: torch.optim.Optimizer,
              backward: Callable[[np.random.Generator], Tensor], validate: Callable[[], dict],
              val: dict, *, k: int, steps: int, lr: float, seed: int, val_every: int
              ) -> tuple[float, Tensor, dict]:
    """Optimiser step ``k`` (and validation when due): ``(lr_k, loss, latest validation)``."""
    lr_k = cosine_lr(lr, k, steps)
    for g in opt.param_groups:
        g["lr"] = lr_k
    model.train()
    opt.zero_grad(set_to_none=True)
    # grad mode is thread-local: a worker thread may come from a pool whose previous job
    # ran without gradients
    with torch.enable_grad():
        loss = backward(np.random.default_rng([int(seed), 0, k]))
    if not torch.isfinite(loss):
        raise DivergenceError(f"training loss became {float(loss)} at step {k}; "
                              "lower the learning rate")
    opt.step()
    if k % max(1, val_every) == 0 or k == steps:
        model.eval()
        with torch.no_grad():
            val = validate()
        model.train()
    return lr_k, loss, val


# ---------------------------------------------------------------- supervised denoiser
#: noise-level distributions of :func:`train_denoiser`
SIGMA_DISTS = ("uniform", "log-uniform")
#: the log-uniform loss weight is 1/4 at this noise level
SIGMA_WEIGHT = 0.05

def train_denoiser(model: torch.nn.Module, source: PatchSource, *,
                   sigma_range: tuple[float, float] = (0.0, 0.2),
                   sigma_dist: str = "uniform", steps: int = 1000,
                   batch: int = 16, patch: int = 48, lr: float = 1e-3, seed: int = 0,
                   device: Any = None, conditional: bool | None = None, val_every: int = 50,
                   val_size: int = 16, resume: str | Path | None = None,
                   checkpoint: str | Path | None = None, checkpoint_every: int = 100,
                   fast: bool = True) -> Iterator[TrainState]:
    r"""Supervised Gaussian denoiser training on clean patches.

    Each step draws clean patches :math:`x` from ``source``, a noise level per patch
    :math:`\sigma \sim U(\sigma_{\min}, \sigma_{\max})` and :math:`n \sim \mathcal N(0, I)`, and
    minimises

    .. math::

        \mathcal L = \frac{1}{B\,HW} \sum_b \| f_\theta(x_b + \sigma_b n_b, \sigma_b) - x_b \|^2,

    where the noise-level argument is passed only to noise-conditional models.

    ``sigma_dist="log-uniform"`` (a score model for diffusion sampling, whose noise levels
    span decades) draws :math:`\log\sigma \sim U(\log\sigma_{\min}, \log\sigma_{\max})`
    and weights each patch's squared error by :math:`\lambda(\sigma) = (\sigma_w / (\sigma +
    \sigma_w))^2`, :math:`\sigma_w` = :data:`SIGMA_WEIGHT`: the error of a good denoiser grows
    with :math:`\sigma` (like :math:`\sigma^2` at low noise, up to the data variance), so
    unweighted the high levels would dominate the gradient; the bound
    :math:`\lambda \le 1` keeps the untrained network's low-noise errors from exploding. Validation:
    PSNR of :math:`f_\theta` on ``val_size`` fixed held-out patches with noise levels at the
    midpoints of ``val_size`` equal bins of ``sigma_range`` (of its logarithm for
    ``log-uniform``) (``extras["noisy_psnr"]``: the
    PSNR of the noisy inputs themselves).

    ``fast`` (default) trains with the CPU throughput settings of :mod:`.speed` (batch shards
    on worker threads, channels-last weights, multi-tensor Adam): the same data and loss,
    gradients equal to float32 rounding; ``fast=False`` is the plain single-pass step.

    Returns
    -------
    Iterator[TrainState]
        A generator yielding the state after every step (arguments are checked and the
        validation set drawn when this function is called).
    """
    _check_common(steps, batch, patch, lr)
    lo, hi = (float(v) for v in sigma_range)
    if not 0.0 <= lo <= hi:
        raise InputError(f"sigma_range must satisfy 0 <= min <= max, got {sigma_range}")
    if sigma_dist not in SIGMA_DISTS:
        raise InputError(f"sigma_dist must be one of {', '.join(SIGMA_DISTS)}, got "
                         f"{sigma_dist!r}")
    log = sigma_dist == "log-uniform"
    if log and lo <= 0:
        raise InputError(f"a log-uniform noise range needs sigma_min > 0, got {lo}")
    dev = _resolve_device(model, device)
    model.to(dev)
    cond = is_conditional(model) if conditional is None else bool(conditional)

    vrng = np.random.default_rng([int(seed), 1])
    xv = source.sample(val_size, patch, vrng, dev)
    mids = (np.arange(val_size) + 0.5) / val_size
    levels = lo * (hi / lo) ** mids if log else lo + (hi - lo) * mids
    sv = torch.tensor(levels, dtype=torch.float32, device=dev).reshape(-1, 1, 1, 1)
    nv = torch.from_numpy(vrng.standard_normal(xv.shape).astype(np.float32)).to(dev)
    yv = xv + sv * nv
    noisy_psnr = _psnr(yv, xv)

    def draw(rng: np.random.Generator) -> tuple[Tensor, Tensor, Tensor]:
        x = source.sample(batch, patch, rng, dev)
        u = rng.uniform(0.0, 1.0, size=(batch, 1, 1, 1))
        s = lo * (hi / lo) ** u if log else lo + (hi - lo) * u
        s = torch.from_numpy(s.astype(np.float32))
        n = torch.from_numpy(rng.standard_normal(x.shape).astype(np.float32))
        return x, s.to(dev), n.to(dev)

    def loss(x: Tensor, s: Tensor, n: Tensor, total: int | None = None) -> Tensor:
        out = call_model(model, x + s * n, s, cond)
        err = (out - x).square()
        if log:
            err = err * (SIGMA_WEIGHT / (s + SIGMA_WEIGHT)).square()
        return err.mean() if total is None else err.sum() / total

    step_loss = BatchLoss(draw, loss, lambda b: b[0].numel(), batch)

    def validate() -> dict:
        return {"val_psnr": _psnr(call_model(model, yv, sv, cond), xv), "noisy_psnr": noisy_psnr}

    meta = {"batch": batch, "patch": patch, "sigma_range": [lo, hi], "sigma_dist": sigma_dist,
            "data": getattr(source, "spec", "?"), "conditional": cond}
    return _loop(model, step_loss, validate, task="denoiser", steps=steps, lr=lr,
                 seed=seed, val_every=val_every, resume=resume, checkpoint=checkpoint,
                 checkpoint_every=checkpoint_every, meta=meta, device=dev, fast=fast)


# ---------------------------------------------------------------- Noise2Self
_DONUT = torch.tensor([[0.5, 1.0, 0.5], [1.0, 0.0, 1.0], [0.5, 1.0, 0.5]]) / 6.0


def blind_spot_input(x: Tensor, mask: Tensor) -> Tensor:
    r"""Replace the pixels where ``mask`` is true by the weighted mean of their 8 neighbours.

    .. math::

        \tilde x = (1 - J) \odot x + J \odot (k * x), \quad
        k = \tfrac16 \begin{pmatrix} 1/2 & 1 & 1/2 \\ 1 & 0 & 1 \\ 1/2 & 1 & 1/2 \end{pmatrix},

    with reflecting borders. The centre weight is 0, so :math:`\tilde x_j` for :math:`j \in J`
    does not depend on :math:`x_j` (the blind spot of Noise2Self).
    """
    c = x.shape[1]
    k = _DONUT.to(device=x.device, dtype=x.dtype).expand(c, 1, 3, 3)
    interp = conv2d(pad(x, (1, 1, 1, 1), mode="reflect"), k, groups=c)
    return torch.where(mask, interp, x)


def blind_spot_passes(model: torch.nn.Module, y: Tensor, *, grid: int = 4,
                      sigma: float | None = None, conditional: bool = False
                      ) -> Iterator[Tensor]:
    r"""The passes of :func:`blind_spot_predict`: after pass :math:`(a, b)` (row-major, ``grid**2``
    in all) the estimate holds :math:`f(\tilde y_{J_{ab}})` on every subset done so far and
    :math:`y` elsewhere; the last one is the whole :math:`J`-invariant prediction."""
    h, w = y.shape[-2:]
    rows = torch.arange(h, device=y.device)[:, None] % grid
    cols = torch.arange(w, device=y.device)[None, :] % grid
    out = y.clone()
    for a in range(grid):
        for b in range(grid):
            j = ((rows == a) & (cols == b)).expand_as(y)
            out = torch.where(j, call_model(model, blind_spot_input(y, j), sigma, conditional),
                              out)
            yield out


def blind_spot_predict(model: torch.nn.Module, y: Tensor, *, grid: int = 4,
                       sigma: float | None = None, conditional: bool = False) -> Tensor:
    r"""The :math:`J`-invariant prediction of Noise2Self on the whole noisy image ``y``.

    The pixels are split into ``grid**2`` subsets
    :math:`J_{ab} = \{(r, c) : r \equiv a, c \equiv b \pmod{g}\}`; for each, the model runs
    on :func:`blind_spot_input` (pixels of :math:`J_{ab}` replaced by neighbour values) and its
    output is kept on :math:`J_{ab}`:
    :math:`\hat x = \sum_{a,b} \mathbb 1_{J_{ab}} \odot f(\tilde y_{J_{ab}})`. No output
    pixel depends on its own noisy value (``grid**2`` forward passes,
    :func:`blind_spot_passes`).
    """
    return deque(blind_spot_passes(model, y, grid=grid, sigma=sigma, conditional=conditional),
                 maxlen=1)[0]


def train_noise2self(model: torch.nn.Module, noisy_images: Sequence[Any] | np.ndarray, *,
                     steps: int = 2000, batch: int = 16, patch: int = 48, lr: float = 1e-3,
                     seed: int = 0, device: Any = None, mask_fraction: float = 1 / 16,
                     sigma: float | None = None, conditional: bool | None = None,
                     reference: Any = None, val_every: int = 50,
                     resume: str | Path | None = None, checkpoint: str | Path | None = None,
                     checkpoint_every: int = 100, fast: bool = True) -> Iterator[TrainState]:
    r"""Self-supervised blind-spot training on the noisy data itself (Noise2Self).

    Batson & Royer (ICML 2019): for noise independent between pixels, a :math:`J`-invariant
    denoiser minimising the self-supervised loss also minimises the supervised one up to a
    constant. Each step crops noisy patches :math:`y` (intensities as given, not rescaled),
    draws a random pixel subset :math:`J` (each pixel with probability ``mask_fraction``),
    replaces :math:`y_J` by neighbour values (:func:`blind_spot_input`) and minimises the
    error on :math:`J` only:

    .. math::

        \mathcal L = \frac{1}{|J|} \sum_{j \in J} \big(f_\theta(\tilde y)_j - y_j\big)^2.

    The model is called ``model(y_tilde)``, or ``model(y_tilde, sigma)`` for a
    noise-conditional model with ``sigma`` (the noise std, required then). At inference use
    :func:`blind_spot_predict` (the :math:`J`-invariant estimate); applying the model to the
    unmasked image also works for networks without an identity skip connection, but a residual
    network (:math:`x + g(x)`) then passes the noise through.

    Validation: with a clean ``reference`` (same shape as the first noisy image; for tests and
    benchmarks) ``val_psnr`` is the PSNR of :func:`blind_spot_predict` on the first image and
    ``extras["noisy_psnr"]`` that of the image itself; without one ``val_psnr`` is ``None`` and
    ``extras["val_loss"]`` is the masked loss on fixed held-out patches and masks. ``fast``:
    as for :func:`train_denoiser`.
    """
    _check_common(steps, batch, patch, lr)
    if not 0.0 < mask_fraction < 1.0:
        raise InputError(f"mask_fraction must be in (0, 1), got {mask_fraction}")
    dev = _resolve_device(model, device)
    model.to(dev)
    cond = is_conditional(model) if conditional is None else bool(conditional)
    if cond and sigma is None:
        raise InputError("this model is noise-conditional: give sigma, the noise std of the data")
    source = ArrayPatches(noisy_images, spec="noisy-arrays", normalize=False)

    def mask(y: Tensor, rng: np.random.Generator) -> Tensor:
        j = torch.from_numpy(rng.random(y.shape) < mask_fraction).to(dev)
        if not bool(j.any()):
            j[..., patch // 2, patch // 2] = True
        return j

    def loss(y: Tensor, j: Tensor, total: Tensor | None = None) -> Tensor:
        out = call_model(model, blind_spot_input(y, j), sigma, cond)
        return ((out - y).square() * j).sum() / (j.sum() if total is None else total)

    def masked_loss(y: Tensor, rng: np.random.Generator) -> Tensor:
        return loss(y, mask(y, rng))

    def draw(rng: np.random.Generator) -> tuple[Tensor, Tensor]:
        y = source.sample(batch, patch, rng, dev)
        return y, mask(y, rng)

    step_loss = BatchLoss(draw, loss, lambda b: b[1].sum(), batch)

    if reference is not None:
        ref = torch.as_tensor(np.asarray(reference, dtype=np.float32), device=dev)
        first = torch.as_tensor(source.images[0], device=dev)
        if ref.shape[-2:] != first.shape:
            raise InputError(f"reference shape {tuple(ref.shape)} differs from the first noisy "
                             f"image {tuple(first.shape)}")
        ref, first = ref.reshape(1, 1, *first.shape), first[None, None]
        noisy_psnr = _psnr(first, ref)

        def validate() -> dict:
            est = blind_spot_predict(model, first, sigma=sigma, conditional=cond)
            return {"val_psnr": _psnr(est, ref), "noisy_psnr": noisy_psnr}
    else:
        vrng = np.random.default_rng([int(seed), 1])
        yv = source.sample(max(batch, 8), patch, vrng, dev)

        def validate() -> dict:
            return {"val_loss": float(masked_loss(yv, np.random.default_rng([int(seed), 2])))}

    meta = {"batch": batch, "patch": patch, "mask_fraction": mask_fraction, "sigma": sigma,
            "conditional": cond}
    return _loop(model, step_loss, validate, task="noise2self", steps=steps, lr=lr,
                 seed=seed, val_every=val_every, resume=resume, checkpoint=checkpoint,
                 checkpoint_every=checkpoint_every, meta=meta, device=dev, fast=fast)
