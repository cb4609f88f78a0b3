r"""Unrolled error reduction: a phase-retrieval network for coded diffraction patterns.

For the nonlinear ``phase`` operator :math:`y = |G E x|^2`
(:mod:`napari_invrec.core.operators.phase`) with amplitudes :math:`a = \sqrt{\max(y, 10^{-12})}`,
each of the :math:`N` stages is one step of error reduction followed by a learned correction:

.. math::

    u_n = E^H \tfrac1K G^H\!\Big(a \odot \frac{G E x_n}{\sqrt{|G E x_n|^2 + \epsilon}}\Big),
    \qquad x_{n+1} = P\big(u_n + R_n(u_n)\big),

where :math:`R_n` is a :class:`~.unrolled.RegCNN` on the real and imaginary parts (its last
layer starts at zero, so an untrained network is plain error reduction),
:math:`\epsilon = 10^{-8}\,\mathrm{mean}|G E x_n|^2` keeps the magnitude projection
differentiable where a field vanishes, and :math:`P` is the constraint: :math:`\max(\mathrm{Re}
\,\cdot, 0)` for real non-negative objects (``nonneg_real``, the default) or the identity. The
start :math:`x_0` is the truncated spectral initialisation
(:func:`~..operators.phase_start.spectral_init`, ``power_iters`` iterations from a fixed seed,
so the network is deterministic) with its global phase turned so that :math:`\sum x_0` is real
and positive, the phase a non-negative object has. The start depends on the masks through
:math:`G`, so a design trained with the network
(:mod:`napari_invrec.core.training.coded_masks`) learns through the start as well as through
every stage.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from ..errors import InputError
from ..operators.phase_start import spectral_init
from .unrolled import RegCNN, _Unrolled

Tensor = torch.Tensor
#: smallest intensity under the square root of the amplitudes
_TINY = 1e-12

__all__ = ["UnrolledPhase"]


class UnrolledPhase(_Unrolled):
    """Unrolled error reduction with a learned correction per stage (module docstring).

    Parameters
    ----------
    stages
        Number of stages :math:`N`.
    width, depth
        Feature channels and convolutions of each :class:`~.unrolled.RegCNN`.
    power_iters
        Power iterations of the spectral start.
    truncation
        Intensity truncation of the spectral start (see
        :func:`~..operators.phase_start.spectral_init`).
    nonneg_real
        Project every stage onto real non-negative images.
    """

    def __init__(self, stages: int = 8, width: int = 32, depth: int = 4,
                 power_iters: int = 30, truncation: float = 9.0,
                 nonneg_real: bool = True) -> None:
        super().__init__(True, stages)
        if stages < 1 or power_iters < 1:
            raise ValueError("UnrolledPhase needs stages >= 1 and power_iters >= 1")
        self.config = {"stages": stages, "width": width, "depth": depth,
                       "power_iters": power_iters, "truncation": float(truncation),
                       "nonneg_real": bool(nonneg_real)}
        self.power_iters, self.truncation = int(power_iters), float(truncation)
        self.nonneg_real = bool(nonneg_real)
        self.nets = nn.ModuleList(RegCNN(self.channels, width, depth) for _ in range(stages))

    def _constrain(self, x: Tensor) -> Tensor:
        return x.real.clamp_min(0).to(x.dtype) if self.nonneg_real else x

    def start(self, y: Tensor, op: Any) -> Tensor:
        """:math:`x_0`: the spectral start with :math:`\\sum x_0` real and positive."""
        gen = torch.Generator(device=y.device).manual_seed(0)
        x = spectral_init(y, op, self.power_iters, gen, self.truncation)
        s = x.sum(dim=(-2, -1), keepdim=True)
        return x * (s.conj() / s.abs().clamp_min(1e-30))

    def stages(self, y: Tensor, op: Any, x0: Tensor | None = None) -> Iterator[Tensor]:
        """Yield :math:`x_1, \\dots, x_N` for the prepared measurement ``y``
        ``(B, 1, *measurement_shape)``."""
        if not hasattr(op, "propagate") or not hasattr(op, "as_fields"):
            raise InputError(f"UnrolledPhase reconstructs the phase operator, not "
                             f"{getattr(op, 'name', op)!r}")
        # (clamped above 0: sqrt'(0) is infinite, and 0 * inf would put NaN into the gradient
        # of a design trained through the measurement wherever noise makes an intensity <= 0)
        amp = op.as_fields(y).clamp_min(_TINY).sqrt()
        x = self.start(y, op) if x0 is None else x0.to(torch.complex64)
        for net in self.nets:
            z = op.propagate(op.embed(x))
            power = z.real.square() + z.imag.square()
            eps = 1e-8 * power.mean().detach() + 1e-30
            u = op.crop(op.backpropagate(amp * z * torch.rsqrt(power + eps))) / op.gram
            x = self._constrain(u + self._cnn(net, u))
            yield x
