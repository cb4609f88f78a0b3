r"""Hallucination maps (Bhadra et al., IEEE TMI 2021).

After S. Bhadra, V. A. Kelkar, F. J. Brooks and M. A. Anastasio, "On hallucinations in
tomographic image reconstruction", IEEE Trans. Med. Imaging 40(11), 2021.

With the pseudo-inverse :math:`A^+` the image space splits into the measurable (row) space,
projector :math:`P = A^+ A`, and the null space, projector :math:`I - P`. Structure in the null
space is invisible to the measurements: whatever a method puts there comes from its prior.

============================  ==========================================  ===================
map                           formula                                     needs
============================  ==========================================  ===================
:func:`null_space_map`        :math:`(I - P)(\hat x - x)`                  ground truth
:func:`measurement_space_map` :math:`P \hat x - A^+ y`                     data only
:func:`null_space_difference` :math:`(I - P)(\hat x - x_\mathrm{ref})`     a reference result
:func:`null_space_spread`     :math:`\mathrm{std}_i\,(I - P) x_i`          posterior samples
:func:`error_map`             :math:`|\hat x - x|`                         ground truth
============================  ==========================================  ===================

All maps take and return ``(B, C, H, W)`` tensors (numpy arrays are converted) and rely on
the operator's ``null_project``, ``range_project`` and ``A_pinv``.
"""

from __future__ import annotations

from typing import Any

import torch

from ..errors import InputError
from .stats import Welford

Tensor = torch.Tensor

__all__ = ["null_space_map", "measurement_space_map", "null_space_difference",
           "null_space_spread", "error_map"]


def _img(op: Any, x: Any) -> Tensor:
    return op.as_image(torch.as_tensor(x))


def _linear(op: Any, what: str) -> Any:
    """``op``, checked to be linear: null and range spaces belong to a linear operator."""
    if not getattr(op, "linear", False):
        raise InputError(f"the {what} needs a linear operator; {op.name} is not (it has no "
                         "null space): use the std over posterior samples or the error map")
    return op


@torch.no_grad()
def null_space_map(op: Any, x_hat: Any, x_true: Any) -> Tensor:
    r"""Null-space hallucination map :math:`(I - A^+ A)(\hat x - x_\mathrm{true})`.

    The part of the error the measurements cannot see (nor correct). Needs the ground truth.
    """
    return _linear(op, "null-space map").null_project(_img(op, x_hat) - _img(op, x_true))


@torch.no_grad()
def measurement_space_map(op: Any, x_hat: Any, y: Any) -> Tensor:
    r"""Measurement-space map :math:`A^+ A \hat x - A^+ y`.

    Error of :math:`\hat x` within the measurable space, relative to what the (noisy) data
    say; zero for any data-consistent :math:`\hat x` (:math:`A\hat x = y`). Needs only the
    measurement :math:`y`, no ground truth.
    """
    yt = _linear(op, "measurement-space map").as_measurement(torch.as_tensor(y))
    return op.range_project(_img(op, x_hat)) - op.A_pinv(yt)


@torch.no_grad()
def null_space_difference(op: Any, x_hat: Any, x_ref: Any) -> Tensor:
    r"""Null-space difference :math:`(I - A^+ A)(\hat x - x_\mathrm{ref})`.

    Without ground truth: compares a (learned) result with a data-consistent reference such as
    the minimum-norm or TV solution; large values are null-space content one of them invented.
    """
    return _linear(op, "null-space difference").null_project(_img(op, x_hat) - _img(op, x_ref))


@torch.no_grad()
def null_space_spread(op: Any, samples: Any) -> Tensor:
    r"""Per-pixel spread of the null-space components of posterior samples.

    .. math::

        s = \sqrt{\tfrac1N \textstyle\sum_i |(I - P)x_i - m|^2}, \qquad
        m = \tfrac1N \textstyle\sum_i (I - P) x_i,

    over the batch of ``samples`` ``(N, C, H, W)``; returns ``(1, C, H, W)``. Needs no ground
    truth: where the samples disagree on invisible structure, the prior is guessing.
    """
    w = Welford()
    w.update(_linear(op, "null-space spread").null_project(_img(op, samples)))
    return w.std.unsqueeze(0)


def error_map(x_hat: Any, x_true: Any) -> Tensor:
    r"""Absolute error :math:`|\hat x - x_\mathrm{true}|` (complex: modulus). Needs ground truth."""
    xh, xt = torch.as_tensor(x_hat), torch.as_tensor(x_true)
    return (xh - xt.to(xh.device)).abs()
