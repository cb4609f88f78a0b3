r"""Data-consistent start images for methods that work on any operator family they support.

Generative priors (``csgm``'s encoder start) and the diffusion samplers' ``"measurement"``
start need one image that already explains the measurement roughly:

* a linear operator: the smooth least-squares image
  :math:`\arg\min_x \|Ax - y\|^2 + 0.05\|\nabla x\|^2` (:func:`~.pnp.smooth_start`);
* phase retrieval (:mod:`..operators.phase`, no adjoint): the magnitude :math:`|\hat x|` of
  hybrid input-output with the ``nonneg-real`` constraint at its defaults (:func:`~.phase.hio`,
  300 iterations from a random-phase start drawn with a fixed seed, so the start is the same
  for the same data). With few coded patterns this start is poor (HIO fails there); the prior
  that follows does the work.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import torch

from ..errors import InputError
from ..params import make_params
from .phase import HIOParams, hio
from .pnp import smooth_start

Tensor = torch.Tensor

__all__ = ["data_start", "blank_image"]


def blank_image(y: Tensor, op: Any, value: float = 0.0) -> Tensor:
    """A constant ``(B, C, *op.shape)`` image in the operator's image dtype."""
    return op.as_image(torch.full((*y.shape[:2], *op.shape), float(value), device=y.device))


def data_start(y: Tensor, op: Any) -> Tensor:
    """A data-consistent start image for the prepared measurement ``y`` (see the module).

    Raises
    ------
    InputError
        A non-linear operator without a classical start (pass a start image ``x0``).
    """
    if getattr(op, "linear", True):
        return smooth_start(y, op)
    if op.name == "phase":
        run = hio(y, op, make_params(HIOParams),
                  generator=torch.Generator(device=y.device).manual_seed(0))
        return op.as_image(deque(run, maxlen=1)[0].x.abs())
    raise InputError(f"no data-consistent start for the non-linear {op.name} operator; "
                     "pass a start image x0")
