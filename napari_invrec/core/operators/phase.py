r"""Phase retrieval: intensities of far-field (Fourier) diffraction, a nonlinear model.

The image :math:`x \in \mathbb C^{H \times W}` (real images are cast to complex) is first
embedded in an *object domain* of shape :math:`(H', W')` by the zero-padding :math:`E`, then
propagated to :math:`K` complex far fields by the linear map :math:`G`, and only the intensity
is measured:

.. math::

    A(x) = |G E x|^2, \qquad (G g)_k = S\,\mathcal F (D_k \odot g), \quad k = 1 \dots K,

where :math:`\mathcal F` is the orthonormal 2-D DFT (``norm="ortho"``) and :math:`S` =
``fftshift`` (the zero frequency is shown at index ``(H' // 2, W' // 2)``). Two modes:

* ``oversampled`` (coherent diffraction imaging): :math:`K = 1`, :math:`D_1 = 1`, and
  :math:`E` zero-pads the image to :math:`(H', W') = (sH, sW)` (image in the top-left corner)
  with the oversampling factor :math:`s` (default 2); the measurement is the ``(sH, sW)``
  intensity :math:`|\mathcal F\,E x|^2`. The support of the object is the un-padded box.
* ``coded`` (coded diffraction patterns, Candès, Li & Soltanolkotabi 2015): no padding
  (:math:`E = I`), :math:`K` random unit-modulus masks :math:`D_k` (phases uniform in
  :math:`[0, 2\pi)`, or one of :math:`\{1, -1, i, -i\}`, drawn from ``seed``; or the
  ``learned`` design, see :func:`learned_masks`); the measurement is the ``(K, H, W)`` stack
  :math:`|\mathcal F(D_k x)|^2`.

Since the masks have unit modulus and :math:`\mathcal F` is unitary,
:math:`G^H G = K\,I` on the object domain (:attr:`Phase.gram`), :math:`E^H E = I`, and by
Parseval :math:`\sum_r A(x)_r = K \|x\|^2`. The model is invariant to a global phase,
:math:`A(e^{i\phi} x) = A(x)`; oversampled data are moreover invariant to translations inside
the padded grid and to the conjugate flip ("twin image") of the object.

The linear part is exposed for the algorithms, so they never re-implement the physics:
:meth:`Phase.fourier` :math:`= G E` with its exact adjoint :meth:`Phase.fourier_adjoint`
:math:`= E^H G^H`, and the object-domain pieces :meth:`Phase.propagate` (:math:`G`),
:meth:`Phase.backpropagate` (:math:`G^H`), :meth:`Phase.embed`, :meth:`Phase.crop` and the
support mask :attr:`Phase.support`. Fields have shape ``(B, C, K, H', W')``.

The measurement is a non-negative intensity: Gaussian, Poisson and Poisson-Gaussian noise all
apply (:class:`~.noise.NoiseParams`).
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

from ..errors import InputError
from ..params import param
from .base import ForwardOperator
from .registry import register_operator

Tensor = torch.Tensor
MODES = ("oversampled", "coded")
MASKS = ("uniform", "quaternary", "learned")
#: the shipped learned coded-diffraction design (:func:`learned_masks`), trained with its
#: reconstruction network (:mod:`napari_invrec.core.training.coded_masks`)
LEARNED_MASKS = Path(__file__).with_name("phase_masks_learned_k2.json")
_DIMS = (-2, -1)


@dataclass
class PhaseParams:
    """Far-field intensity measurements of a complex image."""

    mode: str = param("coded", "oversampled: one intensity of the zero-padded image; coded: K "
                      "intensities through random phase masks", choices=MODES)
    oversampling: int = param(2, "zero-padding factor s: the intensity is (s H, s W)", min=1,
                              max=8, when={"mode": "oversampled"})
    n_patterns: int = param(6, "number K of coded diffraction patterns", min=1, max=64,
                            when={"mode": "coded"})
    mask: str = param("uniform", "mask entries: uniform phases e^(i theta), one of 1, -1, i, "
                      "-i, or the learned design (trained with unrolled-phase: at most 2 "
                      "patterns, images up to 64 px)", choices=MASKS, when={"mode": "coded"})
    seed: int = param(0, "seed of the random masks", min=0, max=2**31 - 1,
                      when={"mode": "coded"})
    design: str = param("", "learned masks: a design file or the sidecar (.pt.json) of an "
                        "acquisition training; empty: the shipped design",
                        when={"mode": "coded", "mask": "learned"})


def phase_masks(p: PhaseParams, shape: tuple[int, int]) -> Tensor:
    """The ``(K, H, W)`` complex64 unit-modulus masks :math:`D_k` of coded mode, on the CPU.

    ``uniform``: :math:`e^{i\\theta}`, :math:`\\theta \\sim U[0, 2\\pi)`; ``quaternary``:
    uniform on :math:`\\{1, i, -1, -i\\}`; both from a CPU generator seeded by ``p.seed``;
    ``learned``: the first :math:`K` masks of the shipped design (:func:`learned_masks`).
    """
    if p.mask == "learned":
        return learned_masks(int(p.n_patterns), shape, p.design or LEARNED_MASKS)
    g = torch.Generator().manual_seed(int(p.seed))
    k = int(p.n_patterns)
    if p.mask == "uniform":
        theta = 2 * math.pi * torch.rand((k, *shape), generator=g, dtype=torch.float64)
    else:
        theta = (math.pi / 2) * torch.randint(0, 4, (k, *shape), generator=g).double()
    return torch.polar(torch.ones_like(theta), theta).to(torch.complex64)


@lru_cache(maxsize=4)
def _design(path: str) -> tuple[int, Tensor]:
    """``(size S, phases (K, S, S) float64)`` of a design file (or of the ``coded_masks``
    record in a training sidecar), read once."""
    try:
        d = json.loads(Path(path).read_text())
        d = d.get("coded_masks", d)
        phases = torch.tensor(d["phases"], dtype=torch.float64)
        size = int(d["size"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise InputError(f"the learned coded masks could not be read from {path} ({e}); "
                         "reinstall napari-invrec or pick uniform masks") from e
    if phases.dim() != 3 or tuple(phases.shape[1:]) != (size, size):
        raise InputError(f"the learned coded masks in {path} are not (K, {size}, {size})")
    return size, phases


def learned_masks(n: int, shape: tuple[int, int], design: str | Path = LEARNED_MASKS) -> Tensor:
    r"""The first ``n`` masks of a learned design, for an image of shape ``shape``.

    A design (:func:`napari_invrec.core.training.coded_masks.train_coded_masks`) holds
    :math:`K` phase maps :math:`\theta_k` of :math:`S \times S` mask pixels,
    :math:`D_k = e^{i\theta_k}`. Like a physical mask it has a fixed pixel count: an image of
    at most :math:`S` pixels a side uses its top-left :math:`H \times W` corner. A larger
    image is refused: at :math:`2S` (held-out phantoms, ``unrolled-phase``) enlarging the mask
    pixels to cover it measured about 6 dB below per-pixel random masks, and repeating the
    design periodically about 27 dB below (the frequencies a period apart then decouple into
    cosets, each with its own global phase), so a design is learned at the image size.

    Raises
    ------
    InputError
        ``n`` exceeds the design's :math:`K`, the image exceeds :math:`S` pixels a side, or
        the design file is missing or malformed.
    """
    size, phases = _design(str(design))
    if n > phases.shape[0]:
        raise InputError(f"the learned coded masks hold {phases.shape[0]} patterns; set "
                         f"n_patterns to at most {phases.shape[0]} or pick uniform masks")
    if max(shape) > size:
        raise InputError(f"the learned coded masks are {size} x {size} pixels, the image "
                         f"{shape[0]} x {shape[1]}: crop it, pick uniform masks, or learn masks "
                         f"at its size (napari-invrec train --task acquisition --operator phase "
                         f"--patch {max(shape)})")
    theta = phases[:n, :shape[0], :shape[1]]
    return torch.polar(torch.ones_like(theta), theta).to(torch.complex64)


def _count(v: object) -> bool:
    """Whether ``v`` is a number with an integer value >= 1."""
    return isinstance(v, (int, float)) and math.isfinite(v) and v >= 1 and int(v) == v


def _check_params(p: PhaseParams) -> None:
    if p.mode not in MODES:
        raise InputError(f"phase mode must be one of {MODES}, got {p.mode!r}")
    if p.mode == "oversampled" and not _count(p.oversampling):
        raise InputError(f"oversampling must be an integer >= 1, got {p.oversampling!r}")
    if p.mode == "coded":
        if not _count(p.n_patterns):
            raise InputError(f"n_patterns must be an integer >= 1, got {p.n_patterns!r}")
        if p.mask not in MASKS:
            raise InputError(f"mask must be one of {MASKS}, got {p.mask!r}")
        if p.mask == "learned":
            # the design exists and holds K patterns
            learned_masks(int(p.n_patterns), (1, 1), p.design or LEARNED_MASKS)


@register_operator
class Phase(ForwardOperator):
    """Phase retrieval: Fourier intensities of an oversampled or coded complex image.

    Attributes
    ----------
    object_shape
        :math:`(H', W')`: ``(s H, s W)`` oversampled, ``(H, W)`` coded.
    n_patterns
        :math:`K` (1 in oversampled mode).
    gram
        :math:`G^H G = \\mathrm{gram}\\, I` on the object domain (equal to :math:`K`).
    """

    name = "phase"
    Params = PhaseParams
    complex_image = True
    complex_measurement = False
    linear = False


    @classmethod
    def measurement_ndim(cls, params: Any) -> int:
        """3 (patterns, H, W) in coded mode, 2 oversampled."""
        return 3 if params.mode == "coded" else 2

    @classmethod
    def image_shape_for(cls, measurement_shape: tuple[int, ...], params: Any) -> tuple[int, int]:
        """Coded: the pattern size; oversampled: the intensity size divided by s."""
        h, w = (int(v) for v in measurement_shape[-2:])
        if params.mode == "coded":
            if len(measurement_shape) == 3 and measurement_shape[0] != params.n_patterns:
                raise InputError(f"the measurement holds {measurement_shape[0]} patterns but "
                                 f"n_patterns is {params.n_patterns}")
            return (h, w)
        s = int(params.oversampling)
        if h % s or w % s:
            raise InputError(f"an oversampled intensity of shape {(h, w)} is not a multiple of "
                             f"the oversampling {s}")
        return (h // s, w // s)

    def __init__(self, shape: tuple[int, int], params: PhaseParams | None = None, *,
                 device: torch.device | str | None = None) -> None:
        super().__init__(shape, params, device=device)
        p = self.params
        _check_params(p)
        h, w = self.shape
        if p.mode == "oversampled":
            s = int(p.oversampling)
            self.object_shape = (s * h, s * w)
            masks = torch.ones((1, h * s, w * s), dtype=torch.complex64)
        else:
            self.object_shape = (h, w)
            masks = phase_masks(p, self.shape)
        self.coded = p.mode == "coded"
        self.register_buffer("_masks", masks.to(self.device), persistent=False)
        sup = torch.zeros(self.object_shape, dtype=torch.bool)
        sup[:h, :w] = True
        self.register_buffer("_support", sup.to(self.device), persistent=False)

    # ------------------------------------------------------------------ geometry
    @property
    def n_patterns(self) -> int:
        return int(self._masks.shape[0])

    @property
    def gram(self) -> float:
        return float(self.n_patterns)

    @property
    def masks(self) -> Tensor:
        """The ``(K, H', W')`` complex masks :math:`D_k` (all ones in oversampled mode)."""
        return self._masks

    @property
    def support(self) -> Tensor:
        """Boolean ``(H', W')`` mask of the image region inside the object domain."""
        return self._support

    @property
    def measurement_shape(self) -> tuple[int, ...]:
        if self.coded:
            return (self.n_patterns, *self.shape)
        return self.object_shape

    @property
    def fields_shape(self) -> tuple[int, int, int]:
        """``(K, H', W')``: the far fields of one channel."""
        return (self.n_patterns, *self.object_shape)

    def as_fields(self, y: Tensor) -> Tensor:
        """Measurement-layout tensor ``(B, C, *measurement_shape)`` as ``(B, C, K, H', W')``."""
        return y.reshape(*y.shape[:2], *self.fields_shape)

    def as_measurement_layout(self, v: Tensor) -> Tensor:
        """Fields-layout tensor ``(B, C, K, H', W')`` as ``(B, C, *measurement_shape)``."""
        return v.reshape(*v.shape[:2], *self.measurement_shape)

    def embed(self, x: Tensor) -> Tensor:
        """:math:`E x`: zero-pad ``(B, C, H, W)`` to the object domain ``(B, C, H', W')``."""
        if self.object_shape == self.shape:
            return x
        g = x.new_zeros((*x.shape[:2], *self.object_shape))
        g[..., :self.shape[0], :self.shape[1]] = x
        return g

    def crop(self, g: Tensor) -> Tensor:
        """:math:`E^H g`: the image region of an object-domain tensor."""
        return g[..., :self.shape[0], :self.shape[1]]

    def with_masks(self, masks: Tensor) -> Phase:
        """The same coded operator measuring through ``masks`` (``(K, H, W)`` complex, e.g.
        :math:`e^{i\\theta}` of a design being learned: gradients flow through them)."""
        if not self.coded:
            raise InputError("masks apply to coded phase retrieval (mode 'coded')")
        if masks.dim() != 3 or tuple(masks.shape[1:]) != self.shape or not masks.is_complex():
            raise InputError(f"phase: masks must be complex (K, {self.shape[0]}, "
                             f"{self.shape[1]}), got {tuple(masks.shape)} {masks.dtype}")
        params = dataclasses.replace(self.params, n_patterns=int(masks.shape[0]),
                                     mask="uniform")
        op = Phase(self.shape, params, device=self.device)
        op._masks = masks.to(device=self.device, dtype=torch.complex64)
        return op

    # ------------------------------------------------------------------ linear part
    def propagate(self, g: Tensor) -> Tensor:
        """:math:`G g`: object ``(B, C, H', W')`` to fields ``(B, C, K, H', W')``."""
        z = torch.fft.fft2(g.unsqueeze(2) * self._masks, norm="ortho")
        return torch.fft.fftshift(z, dim=_DIMS)

    def backpropagate(self, z: Tensor) -> Tensor:
        """:math:`G^H z = \\sum_k \\bar D_k \\odot \\mathcal F^H S^{-1} z_k` (object domain)."""
        g = torch.fft.ifft2(torch.fft.ifftshift(z, dim=_DIMS), norm="ortho")
        return (g * self._masks.conj()).sum(2)

    def fourier(self, x: Tensor) -> Tensor:
        """The linear part :math:`G E x`: complex fields ``(B, C, K, H', W')``."""
        self.check_image(x)
        return self.propagate(self.embed(self.as_image(x)))

    def fourier_adjoint(self, z: Tensor) -> Tensor:
        """Exact adjoint :math:`E^H G^H z` of :meth:`fourier`: image ``(B, C, H, W)``."""
        if z.dim() != 5 or tuple(z.shape[2:]) != self.fields_shape:
            raise InputError(f"phase: expected fields of shape (B, C, "
                             f"{', '.join(map(str, self.fields_shape))}), got {tuple(z.shape)}")
        return self.crop(self.backpropagate(z.to(device=self.device, dtype=torch.complex64)))

    # ------------------------------------------------------------------ the model
    def A(self, x: Tensor) -> Tensor:  # noqa: N802
        """Intensity :math:`|G E x|^2` (float32, ``(B, C, *measurement_shape)``)."""
        z = self.fourier(x)
        return self.as_measurement_layout(z.real.square() + z.imag.square())

    def measurement_views(self, y: Tensor) -> dict[str, Tensor]:
        """``log10 intensity``: :math:`\\log_{10}(\\max(y, 0) + 10^{-6} \\max y)`."""
        v = y[0].real.clamp_min(0)
        eps = 1e-6 * float(v.max()) if float(v.max()) > 0 else 1e-12
        return {"log10 intensity": torch.log10(v + eps)}
