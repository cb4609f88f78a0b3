r"""Super-resolution: Gaussian anti-alias blur followed by decimation.

.. math::

    A x = S_f\, B x, \qquad A^T y = B^T S_f^T y,

where :math:`B` is the periodic Gaussian blur of :mod:`.blur` (std :math:`\sigma` in
high-resolution pixels; the kernel, its periodic embedding and the FFT filtering are those of
:class:`~.blur.Blur`, used as a sub-module) and :math:`S_f` keeps every :math:`f`-th pixel
starting at 0 along both axes: :math:`(S_f z)_{i,j} = z_{f i,\, f j}`. :math:`S_f^T` puts the
low-resolution samples back on that lattice with zeros in between. An ``(H, W)`` image gives a
measurement of shape :math:`(\lceil H/f \rceil, \lceil W/f \rceil)`; sizes that are not
multiples of :math:`f` are allowed (the last sample sits less than :math:`f` pixels from the
periodic wrap).

The default :math:`\sigma = f/2` (``sigma = 0``) damps the frequencies that decimation would
alias (at the low-resolution Nyquist frequency the Gaussian transfer function is
:math:`e^{-\pi^2/8} \approx 0.29`) while keeping :math:`A A^T` well conditioned
(its smallest eigenvalue is about :math:`(2 e^{-\pi^2/4})^2 \approx 0.03` of the largest), so
the pseudo-inverse :math:`A^+ y = A^T (A A^T)^{-1} y` by CG in measurement space converges in a
few dozen iterations. The operator norm is
computed by power iteration.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from ..errors import InputError
from ..linalg import conjugate_gradient
from ..params import param
from .base import LinearOperator
from .blur import Blur, BlurParams
from .registry import register_operator

Tensor = torch.Tensor


@dataclass
class SuperResParams:
    """Decimation factor and anti-alias blur of the low-resolution camera."""

    factor: int = param(2, "decimation factor f (keep every f-th pixel from 0)", min=2, max=16)
    sigma: float = param(0.0, "anti-alias Gaussian std in high-resolution pixels "
                         "(0 = automatic: factor / 2)", min=0.0, max=50.0, step=0.1)


def superres_sigma(p: SuperResParams) -> float:
    """The blur std of ``p``: ``sigma``, or ``factor / 2`` when ``sigma == 0``.

    Raises
    ------
    InputError
        ``factor < 2``, or a negative / non-finite ``sigma``.
    """
    f = int(p.factor)
    if f != p.factor or f < 2:
        raise InputError(f"factor must be an integer >= 2, got {p.factor}")
    s = float(p.sigma)
    if not math.isfinite(s) or s < 0:
        raise InputError(f"sigma must be >= 0 (0 = automatic), got {p.sigma}")
    return s if s > 0 else 0.5 * f


@register_operator
class SuperRes(LinearOperator):
    """Super-resolution: Gaussian anti-alias blur, then keep every factor-th pixel.

    Attributes
    ----------
    factor
        Decimation factor :math:`f`.
    blur
        The :class:`~.blur.Blur` sub-module (periodic Gaussian of std :attr:`sigma`).
    sigma
        Blur std actually used (high-resolution pixels).
    """

    name = "superres"
    Params = SuperResParams


    @classmethod
    def image_shape_for(cls, measurement_shape: tuple[int, ...], params: Any) -> tuple[int, int]:
        """The high-resolution grid: ``factor`` times the measurement's."""
        f = int(params.factor)
        return (int(measurement_shape[-2]) * f, int(measurement_shape[-1]) * f)

    def __init__(self, shape: tuple[int, int], params: SuperResParams | None = None, *,
                 device: torch.device | str | None = None) -> None:
        super().__init__(shape, params, device=device)
        self.sigma = superres_sigma(self.params)
        self.factor = int(self.params.factor)
        h, w = self.shape
        if -(-h // self.factor) < 2 or -(-w // self.factor) < 2:
            raise InputError(f"factor {self.factor} is too large for a {h}x{w} image: the "
                             "low-resolution image needs at least 2x2 pixels; lower the factor")
        self.blur = Blur(self.shape, BlurParams(kernel="gaussian", sigma=self.sigma),
                         device=device)

    @property
    def measurement_shape(self) -> tuple[int, int]:
        """:math:`(\\lceil H/f \\rceil, \\lceil W/f \\rceil)`."""
        f = self.factor
        return (-(-self.shape[0] // f), -(-self.shape[1] // f))

    def A(self, x: Tensor) -> Tensor:  # noqa: N802
        """:math:`(B x)_{f i, f j}`."""
        self.check_image(x)
        f = self.factor
        return self.blur.A(self.as_image(x))[..., ::f, ::f].contiguous()

    def upsample_zeros(self, y: Tensor) -> Tensor:
        """:math:`S_f^T y`: samples on the lattice :math:`(f i, f j)`, zeros elsewhere."""
        z = torch.zeros((*y.shape[:-2], *self.shape), dtype=y.dtype, device=y.device)
        z[..., ::self.factor, ::self.factor] = y
        return z

    def A_adjoint(self, y: Tensor) -> Tensor:  # noqa: N802
        """:math:`B^T S_f^T y` (zero-filled upsampling, then correlation with the kernel)."""
        self.check_measurement(y)
        return self.blur.A_adjoint(self.upsample_zeros(self.as_measurement(y)))

    def A_pinv(self, y: Tensor) -> Tensor:  # noqa: N802
        """:math:`A^T z` with :math:`A A^T z = y` solved by CG in measurement space.

        :math:`A A^T` is non-singular and well conditioned (see the module docstring), so CG
        converges in a few dozen of its :attr:`pinv_iters` iterations; in image space the
        normal equations are singular and CG in float32 drifts along the null space.
        """
        self.check_measurement(y)
        y = self.as_measurement(y)
        z = conjugate_gradient(lambda u: self.A(self.A_adjoint(u)), y, tol=1e-7,
                               maxiter=self.pinv_iters)
        return self.A_adjoint(z)
