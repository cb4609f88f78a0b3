r"""Starting points for phase retrieval from the intensities alone: the spectral start.

Shared by the classical solvers (:mod:`napari_invrec.core.methods.phase`) and the unrolled
phase-retrieval network (:mod:`napari_invrec.core.models.unrolled_phase`), which differentiates
through it (the power iterations are plain linear algebra on the operator's fields).
"""

from __future__ import annotations

import math
from typing import Any

import torch

Tensor = torch.Tensor

__all__ = ["spectral_init", "default_generator", "complex_normal", "sq_norms"]


def default_generator(y: Tensor, generator: torch.Generator | None) -> torch.Generator:
    """``generator``, or a fresh one seeded with 0 on the device of ``y`` (reproducible)."""
    return generator if generator is not None else \
        torch.Generator(device=y.device).manual_seed(0)


def complex_normal(shape: tuple[int, ...], g: torch.Generator, device: torch.device) -> Tensor:
    """Circular complex standard normal samples (:math:`E|n|^2 = 1`)."""
    xi = torch.randn((*shape, 2), generator=g, device=g.device) / math.sqrt(2)
    return torch.view_as_complex(xi).to(device)


def sq_norms(t: Tensor) -> Tensor:
    """Squared norm per (batch, channel), shaped for broadcasting on ``(B, C, H, W)``."""
    return t.abs().square().flatten(2).sum(2)[..., None, None]


def spectral_init(y: Tensor, op: Any, iters: int = 50,
                  generator: torch.Generator | None = None, truncate: float = 0.0) -> Tensor:
    r"""Spectral initialisation of Wirtinger flow, per batch element and channel.

    The leading eigenvector :math:`v` of
    :math:`Y = \tfrac1m \sum_r y_r a_r a_r^H \propto A^H \mathrm{diag}(y) A` (``A`` =
    :meth:`~.phase.Phase.fourier`, negative noisy intensities clipped to 0) by
    ``iters`` power iterations from a random start, scaled to the norm that Parseval gives,
    :math:`\|z_0\| = \sqrt{\sum_r y_r / K}` (the paper's :math:`\sqrt{\mathrm{mean}(y)}` for
    rows normalised to :math:`\tfrac1m\sum_r a_r a_r^H = I`).

    With ``truncate`` :math:`= \tau > 0` only the intensities
    :math:`y_r \le \tau\, \mathrm{mean}(y)` enter :math:`Y` (the truncated spectral
    initialisation of Chen & Candès 2015, :math:`\tau = \alpha_y^2 = 9`). With coded patterns
    one bright intensity :math:`y_r` adds a rank-one spike :math:`y_r a_r a_r^H` of norm
    :math:`y_r \|a_r\|^2`, which beats the signal eigenvalue when
    :math:`y_r \gtrsim 2K\,\mathrm{mean}(y)`; the eigenvector is then a single demodulated
    Fourier mode, whose huge :math:`|a_r^H z_0|` makes the first gradient steps diverge.
    """
    yf = op.as_fields(y).clamp_min(0)
    if truncate > 0:
        mean = yf.flatten(2).mean(2)[..., None, None, None]
        yf = yf * (yf <= truncate * mean)
    g = default_generator(y, generator)
    v = complex_normal((*y.shape[:2], *op.shape), g, y.device)
    for _ in range(iters):
        v = op.fourier_adjoint(yf * op.fourier(v))
        v = v / sq_norms(v).sqrt().clamp_min(1e-30)
    # (clamped above 0: a gradient through sqrt at 0 would be 0 * inf = NaN)
    scale = (y.flatten(2).sum(2).clamp_min(1e-30) / op.gram).sqrt()[..., None, None]
    return v * scale
