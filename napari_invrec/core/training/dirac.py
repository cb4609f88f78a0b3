r"""Training of the incremental-reconstruction network (:class:`~..models.dirac.DiracNet`)
for one operator's degradation schedule: :func:`train_dirac`.

Each step draws clean patches :math:`x`, a level :math:`t \sim U(0, 1)` and a noise std
:math:`\sigma` per patch (log-uniform on :math:`[\sigma_0 / 3, 3 \sigma_0]` around the
operator's noise :math:`\sigma_0`: the sampler's inputs carry the errors of earlier steps, and
data normalised to :math:`[0, 1]` carry more or less noise than the raw measurement), and the
schedule of the step's operator (:func:`~..operators.degradation.make_schedule`; a new mask
and new drop times for inpainting), degrades

.. math::

    z = A_t x + \sigma\, k_t \odot n, \qquad n \sim \mathcal N(0, I),

(:math:`k_t` the pixels level :math:`t` keeps, so missing pixels stay zero as in a
measurement) and minimises :math:`\|\Phi_\theta(z, t, k_t) - x\|^2`: the network learns to
undo any part of the schedule, which the sampler then undoes a little at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..operators.degradation import make_schedule
from .datasets import PatchSource
from .loops import TrainState, _loop, _psnr, step_operator
from .operator_nets import _operator_meta, operator_setup

Tensor = torch.Tensor

__all__ = ["train_dirac", "degraded_pairs"]


#: the training noise std spans [sigma / NOISE_SPREAD, sigma * NOISE_SPREAD] (log-uniform)
NOISE_SPREAD = 3.0


def degraded_pairs(source: PatchSource, n: int, patch: int, rng: np.random.Generator,
                   op: Any, sigma: float, device: Any,
                   levels: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    r"""``(z, t, known, x)``: ``n`` clean patches :math:`x`, levels :math:`t` and noise stds
    (``levels`` and ``sigma`` itself, or draws: uniform levels, noise log-uniform within
    :data:`NOISE_SPREAD` of ``sigma``), and :math:`z = A_t x + \sigma k_t \odot n` under
    ``op``'s schedule, all seeded from ``rng``."""
    x = source.sample(n, patch, rng, device)
    gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
    sched = make_schedule(op, gen, batch=n)
    if levels is None:
        t = torch.rand(n, generator=gen)
        spread = NOISE_SPREAD ** (2.0 * torch.rand(n, generator=gen) - 1.0)
    else:
        t, spread = levels.to(torch.float32).cpu(), torch.ones(n)
    noise = torch.randn(x.shape, generator=gen) * (float(sigma) * spread).reshape(-1, 1, 1, 1)
    t, noise = t.to(device), noise.to(device)
    with torch.no_grad():
        known = sched.known(t).to(device)
        z = sched.degrade(x, t) + known * noise
    return z, t, known, x


def train_dirac(model: torch.nn.Module, source: PatchSource,
                operator_factory: Callable[[tuple[int, int], torch.device], Any], *,
                noise_sigma: float = 0.01, steps: int = 1000, batch: int = 8,
                patch: int = 48, lr: float = 1e-3, seed: int = 0, device: Any = None,
                val_every: int = 50, val_size: int = 8, resume: str | Path | None = None,
                checkpoint: str | Path | None = None, checkpoint_every: int = 100
                ) -> Iterator[TrainState]:
    r"""Train ``model`` (``model(z, t, known)``) to restore any level of the schedule of
    ``operator_factory((patch, patch), device)`` (module docstring).

    Validation: PSNR of the network's one-shot estimate on ``val_size`` fixed pairs at levels
    evenly spread over :math:`(0, 1]` and the noise ``noise_sigma``; ``extras["init_psnr"]``:
    the PSNR of the degraded inputs :math:`z`.

    Raises
    ------
    InputError
        Bad sizes / learning rate / noise level, or an operator without a schedule.
    """
    dev, op = operator_setup(model, operator_factory, steps, batch, patch, lr, noise_sigma,
                             device)
    make_schedule(op)  # refuse an operator without a schedule before any step

    levels = (torch.arange(val_size, dtype=torch.float32) + 1.0) / val_size
    zv, tv, kv, xv = degraded_pairs(source, val_size, patch, np.random.default_rng([int(seed), 1]),
                                    op, noise_sigma, dev, levels)
    init_psnr = _psnr(zv, xv)

    def step_loss(rng: np.random.Generator) -> Tensor:
        z, t, known, x = degraded_pairs(source, batch, patch, rng, step_operator(op, rng),
                                        noise_sigma, dev)
        return (model(z, t, known) - x).square().mean()

    def validate() -> dict:
        return {"val_psnr": _psnr(model(zv, tv, kv), xv), "init_psnr": init_psnr}

    meta = {"batch": batch, "patch": patch, "noise_sigma": noise_sigma,
            "data": getattr(source, "spec", "?"), "operator": _operator_meta(op)}
    return _loop(model, step_loss, validate, task="dirac", steps=steps, lr=lr, seed=seed,
                 val_every=val_every, resume=resume, checkpoint=checkpoint,
                 checkpoint_every=checkpoint_every, meta=meta, device=dev)
