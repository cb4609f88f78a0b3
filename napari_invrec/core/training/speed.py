r"""CPU throughput of a training step: batch shards on worker threads, channels-last weights.

A step's loss is an average over the batch, so its gradient is a sum over any partition of the
batch into shards :math:`S_1, \dots, S_m`:

.. math::

    \mathcal L = \frac{1}{T} \sum_{i \in \text{batch}} \ell_i
    = \sum_{s=1}^{m} \underbrace{\frac{1}{T} \sum_{i \in S_s} \ell_i}_{\mathcal L_s},
    \qquad \nabla_\theta \mathcal L = \sum_s \nabla_\theta \mathcal L_s,

with :math:`T` the normaliser of the whole batch (its number of pixels, or of masked pixels).
A :class:`BatchLoss` says how to draw a step's batch and how to compute
:math:`\mathcal L_s` of a slice of it; :func:`sharded_step` computes the shards' gradients
on worker threads, each running torch with few intra-op threads, and adds them in shard order.
The training loops also keep the weights channels-last meanwhile (:mod:`..models.layout`).

Why threads of whole shards: on a small machine shared with other work, OpenMP's per-operator
thread teams wait at a barrier after every convolution for a thread the OS has descheduled
(measured here on 2 shared cores: a DRUNet step 4-5x slower with 2 threads than with 1 under
load); a shard per thread synchronises once per step and degrades to one core's speed.

Reproducibility: the shards depend only on the batch size (:func:`shard_slices`), never on
the number of threads, and the gradients are added in shard order, so a seed gives the same
losses bit for bit whatever the number of workers (each shard runs with the same intra-op
thread count). The result differs from one full-batch backward pass only by float32 rounding
(another summation order).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = ["SHARD_SIZE", "BatchLoss", "shard_slices", "shardable", "ShardPool", "sharded_step",
           "make_adam"]

Tensor = torch.Tensor

#: largest shard (samples); a batch of 16 runs as two shards of 8
SHARD_SIZE = 8

#: modules whose training-mode result depends on the whole batch or on the global RNG
_BATCH_COUPLED = (nn.modules.batchnorm._BatchNorm, nn.modules.dropout._DropoutNd)


@dataclass(frozen=True)
class BatchLoss:
    """A training step's loss in two parts: drawing the batch and the loss of a slice of it.

    Attributes
    ----------
    draw
        ``draw(rng) -> tuple`` of tensors with the batch as first dimension.
    loss
        ``loss(*batch, total=None)``: the loss of (a slice of) the batch; ``total=None``
        gives the plain average over the tensors passed, otherwise the sum divided by
        ``total``.
    total
        ``total(batch)``: the normaliser :math:`T` of the whole batch.
    batch
        Samples per step (sizes the worker pool before the first draw).
    """

    draw: Callable[[np.random.Generator], tuple[Tensor, ...]]
    loss: Callable[..., Tensor]
    total: Callable[[tuple[Tensor, ...]], Any]
    batch: int

    def __call__(self, rng: np.random.Generator) -> Tensor:
        """The plain, unsharded loss of the batch drawn from ``rng``."""
        return self.loss(*self.draw(rng))


def shard_slices(batch: int, size: int = SHARD_SIZE) -> list[slice]:
    """Split ``batch`` samples into ``ceil(batch / size)`` near-equal consecutive slices."""
    n = max(1, math.ceil(int(batch) / max(1, int(size))))
    bounds = [(i * int(batch)) // n for i in range(n + 1)]
    return [slice(bounds[i], bounds[i + 1]) for i in range(n)]


def shardable(model: nn.Module) -> bool:
    """Whether shards of a batch give the model's full-batch gradient: no batch norm (batch
    statistics) and no dropout (global random state shared by the threads)."""
    return not any(isinstance(m, _BATCH_COUPLED) for m in model.modules())




class ShardPool:
    """Worker threads for the shards of a step, each running torch with ``intra`` threads.

    ``workers <= 1`` runs the shards one after the other in the calling thread. Gradient mode
    is thread-local in torch; the work function sets the mode it needs.
    """

    def __init__(self, workers: int, intra: int = 1) -> None:
        self.workers, self.intra = max(1, int(workers)), max(1, int(intra))
        self._pool: ThreadPoolExecutor | None = None

    @classmethod
    def for_shards(cls, shards: int, threads: int | None = None) -> ShardPool:
        """A pool for ``shards`` shards sharing ``threads`` CPU threads (default: torch's
        current intra-op setting): ``min(threads, shards)`` workers with
        ``threads // workers`` intra-op threads each."""
        n = torch.get_num_threads() if threads is None else max(1, int(threads))
        workers = max(1, min(n, int(shards)))
        return cls(workers, max(1, n // workers))

    def _run(self, fn: Callable[[Any], Any], item: Any) -> Any:
        # sets this worker's OpenMP team size (and torch's default for new threads, which the
        # caller restores after the step)
        torch.set_num_threads(self.intra)
        return fn(item)

    def map(self, fn: Callable[[Any], Any], items: Sequence[Any]) -> list:
        """``[fn(item) for item in items]``, on the workers, results in order."""
        if self.workers <= 1 or len(items) <= 1:
            return [fn(item) for item in items]
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="invrec-shard")
        n = torch.get_num_threads()
        try:
            return list(self._pool.map(lambda item: self._run(fn, item), items))
        finally:
            torch.set_num_threads(n)  # torch's default for threads started later

    def close(self) -> None:
        """Stop the worker threads (a later :meth:`map` starts new ones)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None


def sharded_step(batch_loss: BatchLoss, rng: np.random.Generator,
                 params: Sequence[nn.Parameter], pool: ShardPool,
                 size: int = SHARD_SIZE) -> Tensor:
    r"""Draw the batch, compute :math:`\nabla \mathcal L_s` per shard on ``pool`` and store
    :math:`\sum_s \nabla \mathcal L_s` (shard order) in each parameter's ``.grad``.

    Parameters that no shard's loss depends on keep ``.grad`` as it was (``None`` after
    ``zero_grad(set_to_none=True)``), as after ``loss.backward()``. Each ``.grad`` has its
    parameter's memory layout (fused optimisers read raw memory).

    Returns
    -------
    Tensor
        The step's loss :math:`\sum_s \mathcal L_s` (detached).
    """
    batch = batch_loss.draw(rng)
    total = batch_loss.total(batch)
    params = list(params)

    def shard(sl: slice) -> tuple[Tensor, tuple]:
        with torch.enable_grad():
            part = batch_loss.loss(*(t[sl] for t in batch), total=total)
            grads = torch.autograd.grad(part, params, allow_unused=True)
        return part.detach(), grads

    results = pool.map(shard, shard_slices(int(batch[0].shape[0]), size))
    loss = results[0][0]
    for part, _ in results[1:]:
        loss = loss + part
    for i, p in enumerate(params):
        grads = [g[i] for _, g in results if g[i] is not None]
        if not grads:
            continue
        acc = torch.empty_like(p, memory_format=torch.preserve_format)
        acc.copy_(grads[0])
        for g in grads[1:]:
            acc.add_(g)
        p.grad = acc
    return loss


def make_adam(params: Sequence[nn.Parameter], lr: float, fast: bool = True
              ) -> torch.optim.Adam:
    """Adam; ``fast`` uses the multi-tensor (``foreach``) update: the same numbers, one
    kernel per operation over all parameters instead of one per parameter (1.4x on the update
    here). The ``fused`` kernel is faster still but reads raw memory and silently mixes up
    elements when a gradient's layout differs from its parameter's, so it is not used."""
    params = list(params)
    if not fast:
        return torch.optim.Adam(params, lr=lr)
    return torch.optim.Adam(params, lr=lr, foreach=True)
