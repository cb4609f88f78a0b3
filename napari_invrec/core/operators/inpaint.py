r"""Inpainting: only the pixels of a binary mask are measured.

.. math::

    A x = m \odot x, \qquad A^H y = m \odot y, \qquad A^+ y = m \odot y,

with :math:`m \in \{0, 1\}^{H \times W}` (or :math:`\{0, 1\}^{D \times H \times W}` for a
volume; 1 = measured), broadcast over batch and channels.
:math:`A` is an orthogonal projection, so :math:`A^H = A^+ = A` and :math:`\|A\|_2 = 1`; the null
space is the set of images supported on the missing pixels, :math:`(I - A^+ A) x = (1 - m)
\odot x`. The measurement keeps the full image shape with zeros where pixels are missing, and
simulated noise is applied to the measured pixels only: :math:`y = m \odot N(m \odot x)`.

Masks: ``random`` keeps exactly ``round(keep * N)`` of the :math:`N` pixels (voxels) drawn with
a CPU :class:`torch.Generator` seeded by ``seed`` (the same mask on every device); ``box``
removes a centred rectangle (a box in a volume) covering ``box_size`` of each side; ``custom``
uses ``mask_array`` (e.g. a napari Labels or rasterised Shapes layer; nonzero = measured).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..errors import InputError
from ..params import param
from ..validation import check_mask_array
from .base import LinearOperator, SampleMask
from .noise import NoiseParams
from .registry import register_operator

Tensor = torch.Tensor
MASKS = ("random", "box", "custom")


@dataclass
class InpaintParams:
    """Which pixels are measured."""

    mask: str = param("random", "mask type", choices=MASKS)
    keep: float = param(0.5, "fraction of pixels kept by the random mask", min=0.001, max=1.0,
                        step=0.05, when={"mask": "random"})
    box_size: float = param(0.3, "fraction of each side removed by the centred box",
                            min=0.0, max=0.95, step=0.05, when={"mask": "box"})
    seed: int = param(0, "seed of the random mask", min=0, max=2**31 - 1,
                      when={"mask": "random"})
    mask_array: Any = param(None, "custom mask of the image's shape: nonzero = measured",
                            gui=False,
                            when={"mask": "custom"})


def inpaint_mask(p: InpaintParams, shape: tuple[int, ...]) -> torch.Tensor:
    """The float32 0/1 mask of ``p`` on the CPU, of the image's ``shape``.

    Raises
    ------
    InputError
        Unknown mask type, ``keep`` outside (0, 1], ``box_size`` outside [0, 1), or a missing
        or malformed custom mask.
    """
    size = int(np.prod(shape))
    if p.mask == "random":
        keep = float(p.keep)
        if not 0 < keep <= 1:
            raise InputError(f"keep must be in (0, 1], got {keep}")
        n = max(1, int(round(keep * size)))
        g = torch.Generator().manual_seed(int(p.seed))
        m = torch.zeros(size)
        m[torch.randperm(size, generator=g)[:n]] = 1.0
        return m.view(*shape)
    if p.mask == "box":
        b = float(p.box_size)
        if not 0 <= b < 1:
            raise InputError(f"box_size must be in [0, 1), got {b}")
        m = torch.ones(*shape)
        sides = [min(n - 1, int(round(b * n))) for n in shape]
        m[tuple(slice((n - s) // 2, (n - s) // 2 + s) for n, s in zip(shape, sides))] = 0.0
        return m
    if p.mask == "custom":
        if p.mask_array is None:
            raise InputError("mask='custom' needs mask_array: draw the measured pixels in a "
                             "Labels or Shapes layer of the image's size")
        return torch.from_numpy(check_mask_array(p.mask_array, shape))
    raise InputError(f"unknown mask {p.mask!r}; choose one of {MASKS}")


@register_operator
class Inpaint(SampleMask, LinearOperator):
    """Inpainting: a binary mask of measured pixels (random, centred box or custom).

    Attributes
    ----------
    mask
        The mask as a numpy float32 copy of the image's shape (1 = measured).
    """

    name = "inpaint"
    Params = InpaintParams
    spatial_ndims = (2, 3)

    def __init__(self, shape: tuple[int, ...], params: InpaintParams | None = None, *,
                 device: torch.device | str | None = None) -> None:
        super().__init__(shape, params, device=device)
        self.register_buffer("_mask", inpaint_mask(self.params, self.shape).to(self.device),
                             persistent=False)

    @property
    def mask(self) -> np.ndarray:
        return self._mask.detach().cpu().numpy().copy()

    def A(self, x: Tensor) -> Tensor:  # noqa: N802
        """:math:`m \\odot x`."""
        self.check_image(x)
        return self._mask * self.as_image(x)

    def A_adjoint(self, y: Tensor) -> Tensor:  # noqa: N802
        """:math:`m \\odot y`."""
        self.check_measurement(y)
        return self._mask * self.as_measurement(y)

    def A_pinv(self, y: Tensor) -> Tensor:  # noqa: N802
        """:math:`m \\odot y` (the mask is a projection)."""
        return self.A_adjoint(y)

    def null_project(self, x: Tensor) -> Tensor:
        """:math:`(1 - m) \\odot x`."""
        self.check_image(x)
        return (1.0 - self._mask) * self.as_image(x)

    def norm(self) -> float:
        return float(self._mask.max())

    def measure(self, x: Tensor, noise: NoiseParams | None = None,
                generator: torch.Generator | None = None) -> Tensor:
        """Noisy measurement, zero on the missing pixels: :math:`m \\odot N(m \\odot x)`."""
        return self._mask * super().measure(x, noise, generator)
