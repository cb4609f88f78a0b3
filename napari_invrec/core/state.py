"""The state every reconstruction method yields at each step."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class IterState:
    """One step of a method.

    Attributes
    ----------
    step
        1-based step number (iteration, unrolled stage or diffusion step).
    total
        Number of steps the method will run (``step == total`` at the end).
    x
        Current estimate, ``(B, C, H, W)``; for stochastic methods the running posterior mean.
    extras
        Other images of the same shape, by name: ``"std"`` (posterior standard deviation),
        ``"samples"`` (``(N, C, H, W)`` current chains), ``"x0_hat"``, ``"x_t"``...
    metrics
        Scalars for convergence plots: ``"objective"``, ``"residual"`` (``||A x - y|| / ||y||``)...
    """

    step: int
    total: int
    x: torch.Tensor
    extras: dict[str, torch.Tensor] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
