r"""What an image is: spatial axes (2-D or 3-D), channel and batch, real or complex.

Every image tensor in the core is laid out as

.. math::

    (B, C, *\mathrm{spatial}), \qquad \mathrm{spatial} = (H, W) \text{ or } (D, H, W),

with a batch axis :math:`B` (posterior samples, measurement-splitting folds, slices run
together) and a channel axis :math:`C` (1 for the images we reconstruct). :class:`Geometry`
is the one place that says so: operators hold one, validation asks it for the expected number
of axes, the runner builds tensors with :meth:`Geometry.tensor`, and methods that only know
2-D images (the learned denoisers) run a volume slice by slice through :func:`slice_wise`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from .errors import InputError

Tensor = torch.Tensor

#: numbers of spatial axes an image may have
SPATIAL_NDIMS = (2, 3)
#: smallest side of a spatial axis (finite differences and FFTs need two samples)
MIN_SIDE = 2


@dataclass(frozen=True)
class Geometry:
    """Shape of one image without batch and channel, and whether its values are complex.

    Attributes
    ----------
    shape
        Spatial shape ``(H, W)`` or ``(D, H, W)``.
    complex
        Whether the image is complex (complex64) rather than real (float32).
    """

    shape: tuple[int, ...]
    complex: bool = False

    @property
    def ndim(self) -> int:
        """Number of spatial axes (2 or 3)."""
        return len(self.shape)

    @property
    def is_volume(self) -> bool:
        """Whether the image has three spatial axes."""
        return self.ndim == 3

    @property
    def dtype(self) -> torch.dtype:
        return torch.complex64 if self.complex else torch.float32

    def describe(self) -> str:
        """``"256x256 image"`` or ``"32x128x128 volume"``."""
        return f"{'x'.join(map(str, self.shape))} {'volume' if self.is_volume else 'image'}"

    def tensor(self, a: np.ndarray | Tensor) -> Tensor:
        """``a`` (the spatial shape) as a ``(1, 1, *shape)`` tensor (no copy of a tensor)."""
        t = torch.from_numpy(np.ascontiguousarray(a)) if isinstance(a, np.ndarray) else a
        if tuple(t.shape) != self.shape:
            raise InputError(f"expected an array of shape {self.shape}, got {tuple(t.shape)}")
        return t[None, None]


def spatial_geometry(shape: tuple[int, ...], family: str, ndims: tuple[int, ...] = (2,), *,
                     complex: bool = False) -> Geometry:
    """Validated :class:`Geometry` of an operator family that accepts ``ndims`` spatial axes.

    Raises
    ------
    InputError
        A shape of another number of axes (saying which the family takes and, for a volume
        given to a 2-D family, how to run it: plane by plane), or a side below
        :data:`MIN_SIDE`.
    """
    shape = tuple(int(n) for n in shape)
    if len(shape) not in ndims:
        want = " or ".join(("(H, W)", "(D, H, W)")[n - 2] for n in ndims)
        hint = ("; run a volume plane by plane (a stack), or pick a family that takes volumes "
                "(blur, denoise, inpaint)") if len(shape) == 3 else ""
        raise InputError(f"{family} images must be {want}, got shape {shape}{hint}")
    if min(shape) < MIN_SIDE:
        raise InputError(f"{family} images need at least {MIN_SIDE} pixels along every axis, "
                         f"got shape {shape}")
    return Geometry(shape, complex)


def spatial_dims(shape: tuple[int, ...]) -> tuple[int, ...]:
    """Tensor dimensions of the spatial axes of ``(B, C, *shape)``, counted from the end (for
    ``torch.fft.rfftn(..., dim=...)`` and reductions)."""
    return tuple(range(-len(shape), 0))


def slice_wise(fn: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
    """Apply a 2-D image map ``fn`` (``(B, C, H, W) -> (B, C, H, W)``) to every z-slice of a
    volume ``(B, C, D, H, W)`` as one batch of ``B D`` images (2.5-D); 2-D images go through
    unchanged."""
    if x.dim() == 4:
        return fn(x)
    b, c, d, h, w = x.shape
    flat = x.permute(0, 2, 1, 3, 4).reshape(b * d, c, h, w)
    out = fn(flat)
    return out.reshape(b, d, c, h, w).permute(0, 2, 1, 3, 4).contiguous()
