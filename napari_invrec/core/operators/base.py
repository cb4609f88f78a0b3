r"""The operator contract every forward model follows.

A forward model maps an image :math:`x` of shape ``(B, C, H, W)`` (or ``(B, C, D, H, W)``
for the families that take volumes, see :mod:`..geometry`) to a measurement
:math:`y = A(x) + n`. :class:`ForwardOperator` is the contract of every model, linear or not
(phase retrieval, blind deblurring): shapes, dtypes, ``A``, ``measure`` and ``spec``.
Linear models subclass :class:`LinearOperator`: they implement :meth:`LinearOperator.A` and
:meth:`LinearOperator.A_adjoint`; the base class supplies a CG pseudo-inverse
:math:`A^+ y = \arg\min \{\|x\| : A^H A x = A^H y\}`, the null-space projector
:math:`(I - A^+ A)`, the operator norm :math:`\|A\|_2` by power iteration (cached) and
simulated measurements with noise.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import torch

from ..errors import InputError
from ..geometry import spatial_geometry
from ..linalg import conjugate_gradient, power_iteration
from ..params import to_dict
from .noise import NoiseParams, add_noise

Tensor = torch.Tensor


class ForwardOperator(torch.nn.Module):
    """Base class of every forward model :math:`x \\mapsto A(x)` (linear or not).

    Parameters
    ----------
    shape
        Image shape ``(H, W)``, or ``(D, H, W)`` for a family whose :attr:`spatial_ndims`
        includes 3.
    params
        Instance of the subclass's ``Params`` dataclass (defaults if ``None``).
    device
        Torch device for the operator's buffers.

    Attributes
    ----------
    name
        Registry key (``"blur"``, ``"mri"``...).
    Params
        Parameter dataclass of this family.
    complex_image, complex_measurement
        Whether the image / measurement domain is complex (complex64).
    linear
        Whether ``A`` is linear (then the class is a :class:`LinearOperator` with adjoint,
        pseudo-inverse and null space).
    spatial_ndims
        Numbers of spatial axes the family's physics is defined for (``(2,)``, or ``(2, 3)``
        where it is also 3-D: blur with a 3-D PSF, denoising, inpainting).
    geometry
        The :class:`~napari_invrec.core.geometry.Geometry` of the image domain.
    """

    name: ClassVar[str] = ""
    Params: ClassVar[type]
    complex_image: ClassVar[bool] = False
    complex_measurement: ClassVar[bool] = False
    linear: ClassVar[bool] = False
    spatial_ndims: ClassVar[tuple[int, ...]] = (2,)

    def __init__(self, shape: tuple[int, ...], params: Any = None, *,
                 device: torch.device | str | None = None) -> None:
        super().__init__()
        self.geometry = spatial_geometry(shape, self.name or type(self).__name__,
                                         self.spatial_ndims, complex=self.complex_image)
        self.shape = self.geometry.shape
        self.params = params if params is not None else self.Params()
        self.register_buffer("_anchor", torch.zeros(0, device=device), persistent=False)
        self._norm: float | None = None

    # ------------------------------------------------------------------ helpers
    @property
    def device(self) -> torch.device:
        """Device of the operator's buffers."""
        return self._anchor.device

    @property
    def image_dtype(self) -> torch.dtype:
        return self.geometry.dtype

    @property
    def measurement_dtype(self) -> torch.dtype:
        return torch.complex64 if self.complex_measurement else torch.float32

    @property
    def measurement_shape(self) -> tuple[int, ...]:
        """Shape of one measurement without batch and channel (default: the image shape)."""
        return self.shape

    @classmethod
    def measurement_ndim(cls, params: Any) -> int:
        """Number of axes of one measurement for ``params`` (2; 3 for coils or patterns)."""
        return 2

    @classmethod
    def measurement_ndims(cls, params: Any) -> tuple[int, ...]:
        """Numbers of axes one measurement may have: :meth:`measurement_ndim` for a 2-D image,
        and 3 as well for a family that takes volumes on the image's grid."""
        n = cls.measurement_ndim(params)
        return (n, 3) if n == 2 and 3 in cls.spatial_ndims else (n,)

    @classmethod
    def image_shape_for(cls, measurement_shape: tuple[int, ...], params: Any) -> tuple[int, ...]:
        """Image shape whose measurement has ``measurement_shape``.

        Used for real data, where only the measurement is given. The default (measurement
        and image on the same grid) takes the last two axes, or all three for a volume of a
        family that takes volumes.

        Raises
        ------
        InputError
            If the image shape cannot be inferred from the measurement.
        """
        n = 3 if len(measurement_shape) == 3 and 3 in cls.spatial_ndims else 2
        return tuple(int(v) for v in measurement_shape[-n:])

    @classmethod
    def arrays_from_measurement(cls, params: Any, y: Any) -> dict:
        """Array parameters derived from a real measurement ``y`` (numpy), e.g. coil maps
        estimated from the k-space centre; the default derives none."""
        return {}

    def check_image(self, x: Tensor) -> None:
        """Raise :class:`InputError` if ``x`` is not ``(B, C, *shape)`` for this operator."""
        if x.dim() != 2 + len(self.shape) or tuple(x.shape[2:]) != self.shape:
            raise InputError(f"{self.name}: expected an image of shape (B, C, "
                             f"{', '.join(map(str, self.shape))}), got {tuple(x.shape)}")

    def check_measurement(self, y: Tensor) -> None:
        """Raise :class:`InputError` if ``y`` does not have this operator's measurement shape."""
        ms = tuple(self.measurement_shape)
        if y.dim() != 2 + len(ms) or tuple(y.shape[2:]) != ms:
            raise InputError(f"{self.name}: expected a measurement of shape (B, C, "
                             f"{', '.join(map(str, ms))}), got {tuple(y.shape)}; was it "
                             "simulated with other operator settings?")

    def as_image(self, x: Tensor) -> Tensor:
        """Cast to the image dtype and device."""
        return x.to(device=self.device, dtype=self.image_dtype)

    def as_measurement(self, y: Tensor) -> Tensor:
        """Cast to the measurement dtype and device."""
        return y.to(device=self.device, dtype=self.measurement_dtype)

    # ------------------------------------------------------------------ the maths
    def A(self, x: Tensor) -> Tensor:  # noqa: N802 - the maths' name
        """Forward map :math:`x \\mapsto A(x)`."""
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        return self.A(x)

    def measure(self, x: Tensor, noise: NoiseParams | None = None,
                generator: torch.Generator | None = None) -> Tensor:
        """Simulate :math:`y = N(A x)` with the noise model ``noise`` (see :mod:`.noise`)."""
        noise = noise if noise is not None else NoiseParams()
        self.check_image(x)
        with torch.no_grad():
            return add_noise(self.A(self.as_image(x)), noise, generator)

    def measurement_views(self, y: Tensor) -> dict[str, Tensor]:
        """Extra views of a measurement ``y`` (``(1, ...)``) worth showing as layers.

        E.g. the sampling mask of MRI, coil images and their root-sum-of-squares for multi-coil
        MRI. Values are real tensors without the batch axis; the default is none.
        """
        return {}

    # ------------------------------------------------------------------ provenance
    def spec(self) -> dict:
        """JSON-serialisable description from which :func:`make_operator` rebuilds the operator."""
        return {"operator": self.name, "shape": list(self.shape),
                "measurement_shape": list(self.measurement_shape),
                "params": to_dict(self.params)}

    def extra_repr(self) -> str:
        fields = ", ".join(f"{f.name}={getattr(self.params, f.name)!r}"
                           for f in dataclasses.fields(self.params)
                           if not hasattr(getattr(self.params, f.name), "shape"))
        return f"shape={self.shape}, {fields}"


class LinearOperator(ForwardOperator):
    """Base class of linear forward models: adds adjoint, pseudo-inverse, null space and norm.

    Subclasses implement :meth:`A` and :meth:`A_adjoint`; :meth:`A_pinv` defaults to CG on the
    normal equations (``pinv_iters`` iterations) and :meth:`norm` to power iteration.
    """

    linear: ClassVar[bool] = True
    pinv_iters: ClassVar[int] = 100

    def A_adjoint(self, y: Tensor) -> Tensor:  # noqa: N802
        """Adjoint :math:`y \\mapsto A^H y`."""
        raise NotImplementedError

    def AtA(self, x: Tensor) -> Tensor:  # noqa: N802
        """Normal operator :math:`A^H A x`."""
        return self.A_adjoint(self.A(x))

    def A_pinv(self, y: Tensor) -> Tensor:  # noqa: N802
        """Pseudo-inverse :math:`A^+ y` (CG on the normal equations unless overridden)."""
        b = self.A_adjoint(y)
        return conjugate_gradient(self.AtA, b, tol=1e-7, maxiter=self.pinv_iters)

    def null_project(self, x: Tensor) -> Tensor:
        """Null-space component :math:`(I - A^+ A) x`."""
        return x - self.A_pinv(self.A(x))

    def range_project(self, x: Tensor) -> Tensor:
        """Row-space component :math:`A^+ A x`."""
        return self.A_pinv(self.A(x))

    def norm(self) -> float:
        """Spectral norm :math:`\\|A\\|_2` by power iteration on :math:`A^H A` (cached)."""
        if self._norm is None:
            g = torch.Generator().manual_seed(0)
            x0 = torch.randn((1, 1, *self.shape), generator=g).to(self.device)
            if self.complex_image:
                x0 = x0.to(torch.complex64)
            with torch.no_grad():
                self._norm = float(power_iteration(self.AtA, x0, iters=100)) ** 0.5
        return self._norm



class SampleMask:
    """Mixin of operators that measure a 0/1 mask of samples (buffer ``_mask``, the shape of
    one measurement channel): inpainting pixels, single-coil k-space, compressed-sensing rows."""

    def mask_tensor(self) -> Tensor:
        """The mask as a tensor on the operator's device (``(K, 1, *shape)`` for a stack;
        differentiable when the stack was built from a differentiable design)."""
        return self._mask

    def with_mask_stack(self, masks: Tensor) -> Any:
        """A copy whose batch element ``k`` is measured through ``masks[k]`` (``(K, *shape)``,
        each a subset of this operator's samples), so that ``K`` reconstructions from ``K``
        sample subsets (measurement-splitting folds) run as one batch. Its spec describes this
        operator, not the stack: an internal operator, never the record of a run."""
        shape = tuple(self._mask.shape[-len(self.shape):])
        if masks.dim() != 1 + len(shape) or tuple(masks.shape[1:]) != shape:
            raise InputError(f"a mask stack must be (K, {', '.join(map(str, shape))}), "
                             f"got {tuple(masks.shape)}")
        return self.with_mask(masks[:, None])

    def with_mask(self, mask: Tensor) -> Any:
        """A copy measuring through ``mask`` (this operator's mask shape, or a stack from
        :meth:`with_mask_stack`), a subset of its samples: an internal operator (its spec
        still describes this one). Its :meth:`norm` is this operator's, a bound (fewer samples
        never raise it) that gives a stack and its members the same solver step sizes."""
        new = type(self)(self.shape, self.params, device=self.device)
        new.register_buffer("_mask", mask.to(self._mask), persistent=False)
        new._norm = self.norm()
        return new
