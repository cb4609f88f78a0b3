r"""Denoising: the identity forward model :math:`A = I`.

With Gaussian noise the measurement is :math:`y = x + \sigma n`; with Poisson noise
:math:`y = \mathrm{Poisson}(\alpha x)/\alpha`. The adjoint and pseudo-inverse are the identity
and the null space is :math:`\{0\}`. Images may be 2-D or 3-D volumes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .base import LinearOperator
from .registry import register_operator


@dataclass
class DenoiseParams:
    """The identity operator has no parameters."""


@register_operator
class Denoise(LinearOperator):
    """Denoising (identity forward model)."""

    name = "denoise"
    Params = DenoiseParams
    spatial_ndims = (2, 3)

    def A(self, x: torch.Tensor) -> torch.Tensor:  # noqa: N802
        self.check_image(x)
        return x.clone()

    def A_adjoint(self, y: torch.Tensor) -> torch.Tensor:  # noqa: N802
        self.check_measurement(y)
        return y.clone()

    def A_pinv(self, y: torch.Tensor) -> torch.Tensor:  # noqa: N802
        self.check_measurement(y)
        return y.clone()

    def norm(self) -> float:
        return 1.0
