r"""Interpolation baselines for super-resolution (the ``superres`` operator).

``bicubic`` places the low-resolution samples where the operator took them (sample
:math:`(i, j)` at high-resolution pixel :math:`(f i, f j)`, see :mod:`..operators.superres`)
and fills the pixels in between by cubic convolution (Keys' kernel with :math:`a = -0.75`, as
``torch.nn.functional.interpolate``), separably along rows and columns, with the same periodic
boundary as the operator:

.. math::

    x_{n} = \sum_{m} y_{m \bmod h}\, \kappa\!\left(\tfrac{n}{f} - m\right).

Because :math:`\kappa(0) = 1` and :math:`\kappa(\pm1) = \kappa(\pm 2) = 0`, the result passes
through the samples: :math:`x_{f i, f j} = y_{i, j}`. It does not undo the anti-alias blur.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812

from ..errors import InputError
from ..state import IterState
from .classical import check_finite, prepare, relative_residual
from .registry import register_method

Tensor = torch.Tensor

__all__ = ["bicubic", "upsample_lattice", "BicubicParams"]


def upsample_lattice(y: Tensor, factor: int, shape: tuple[int, int],
                     mode: str = "bicubic") -> Tensor:
    """Interpolate ``y`` ``(B, C, h, w)``, sampled at ``(f i, f j)``, onto the ``shape`` grid.

    Periodic boundary: ``y`` is padded circularly (1 sample before, 2 after), interpolated with
    ``align_corners=True`` to a grid of step ``1 / f`` that starts one sample before 0, and
    cropped to ``shape``.
    """
    f = int(factor)
    h, w = y.shape[-2:]
    padded = F.pad(y, (1, 2, 1, 2), mode="circular")
    size = (f * (h + 2) + 1, f * (w + 2) + 1)  # coordinates -1 .. h + 1 in steps of 1/f
    up = F.interpolate(padded, size=size, mode=mode, align_corners=True)
    return up[..., f:f + shape[0], f:f + shape[1]]


@dataclass
class BicubicParams:
    """Bicubic interpolation has no parameters."""


@register_method("bicubic", BicubicParams, operators=("superres",))
@torch.no_grad()
def bicubic(y: Tensor, op: Any, p: BicubicParams, *, x0: Tensor | None = None,
            generator: torch.Generator | None = None) -> Iterator[IterState]:
    r"""Bicubic upsampling of the low-resolution image onto the high-resolution grid; one step."""
    if getattr(op, "name", None) != "superres":
        raise InputError(f"bicubic needs the 'superres' operator, got "
                         f"{getattr(op, 'name', op)!r}")
    y, _ = prepare(y, op, x0)
    x = upsample_lattice(y, op.factor, op.shape).contiguous()
    check_finite(x, "bicubic", 1, "check the measurement")
    state = IterState(1, 1, x, {}, {"residual": relative_residual(op.A(x), y)})
    yield state
    return state
