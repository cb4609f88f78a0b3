r"""Blind blur: circular convolution with a kernel the reconstruction methods do not know.

The physics is the one of :mod:`.blur` (periodic boundary),

.. math::

    y = k \circledast x + n, \qquad k \ge 0, \quad \textstyle\sum k = 1,

but the kernel :math:`k` is an unknown of the inverse problem: a blind method estimates the
pair :math:`(x, k)` with :math:`k` supported on a ``support`` :math:`\times` ``support``
window centred at the origin. As a map of the pair the model is bilinear, not linear, so the
family is registered with ``linear=False`` and no linear method (adjoint, TV...) is offered
for it.

The kernel fields of the params (the same as :class:`.blur.BlurParams`) describe **the kernel
used to simulate** measurements, i.e. the ground truth of a synthetic experiment, or a rough
PSF guess for real data. Methods never read it: :meth:`BlindBlur.A` uses it only to simulate
and :meth:`BlindBlur.with_kernel` builds the blur of any *estimated* kernel. (A method may
offer to start from it explicitly, e.g. ``blind-deconv`` with ``init='operator'``; the default
start is a kernel unrelated to the truth.)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..errors import InputError
from ..params import param
from .base import ForwardOperator
from .blur import Blur, BlurParams
from .registry import register_operator

Tensor = torch.Tensor

__all__ = ["BlindBlur", "BlindBlurParams"]


@dataclass
class BlindBlurParams(BlurParams):
    """Blind blur: the kernel fields give the simulation kernel (methods never read it)."""

    support: int = param(15, "kernel support the methods estimate (odd pixels, square)",
                         min=1, max=401, step=2)


def _blur_params(p: BlindBlurParams) -> BlurParams:
    """The :class:`BlurParams` part of ``p`` (the simulation kernel)."""
    names = [f.name for f in dataclasses.fields(BlurParams)]
    return BlurParams(**{n: getattr(p, n) for n in names})


@register_operator
class BlindBlur(ForwardOperator):
    r"""Blind blur: convolution with an unknown kernel, estimated together with the image.

    :meth:`A` blurs with the params' kernel (simulation and residuals of synthetic data);
    methods estimate their own kernel of size ``support`` and apply it through
    :meth:`with_kernel`, which returns a :class:`.blur.Blur` (exact adjoint, Fourier
    pseudo-inverse). See the module docstring.
    """

    name = "blind-blur"
    Params = BlindBlurParams

    def __init__(self, shape: tuple[int, int], params: BlindBlurParams | None = None, *,
                 device: torch.device | str | None = None) -> None:
        super().__init__(shape, params, device=device)
        s = self.params.support
        if isinstance(s, bool) or int(s) != s or s < 1 or s % 2 == 0:
            raise InputError(f"support must be a positive odd number of pixels, got {s!r}")
        if s > min(self.shape):
            raise InputError(f"support {s} does not fit in the image {self.shape}; choose an "
                             f"odd support <= {min(self.shape)}")
        self.support = int(s)
        self.sim = Blur(self.shape, _blur_params(self.params), device=self.device)

    def A(self, x: Tensor) -> Tensor:  # noqa: N802
        """Blur with the params' (simulation) kernel: :math:`k \\circledast x`."""
        return self.sim.A(x)

    def with_kernel(self, kernel: Any) -> Blur:
        """A :class:`.blur.Blur` on this image shape and device with the kernel ``kernel``.

        Parameters
        ----------
        kernel
            Non-negative 2-D kernel (array or tensor, ``(h, w)`` or ``(1, 1, h, w)``) with odd
            sides no larger than the image, centre at ``(h // 2, w // 2)``. It is normalised
            to sum 1 (as every blur kernel).

        Raises
        ------
        InputError
            A kernel of another dimension, larger than the image, or without a positive sum.
        """
        k = kernel.detach().cpu().double().numpy() if torch.is_tensor(kernel) \
            else np.asarray(kernel, dtype=np.float64)
        if k.ndim == 4 and k.shape[:2] == (1, 1):
            k = k[0, 0]
        if k.ndim != 2:
            raise InputError(f"a kernel must be 2-D or (1, 1, h, w), got shape {k.shape}")
        return Blur(self.shape, BlurParams(kernel="custom", kernel_array=k), device=self.device)

    def kernel_image(self) -> np.ndarray:
        """The simulation kernel (float32, sum 1, centred): ground truth of synthetic data."""
        return self.sim.kernel_image()
