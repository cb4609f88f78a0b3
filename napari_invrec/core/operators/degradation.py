r"""Degradation schedules :math:`A_t`, :math:`t \in [0, 1]`, for incremental reconstruction
(DiracDiffusion, Fabian, Tinaz & Soltanolkotabi 2023).

A schedule interpolates between the identity and an operator's degradation:
:math:`A_0 = I`, :math:`A_1 = A`, and factors the operator through every level,

.. math::

    A = A_{1|t} \circ A_t \qquad (0 \le t \le 1),

so an image :math:`z` "at level :math:`t`" is consistent with a measurement :math:`y` when
:math:`\|A_{1|t} z - y\|` is at the noise level. Two families:

* **blur** (Gaussian kernels, :class:`BlurSchedule`): with the operator's transfer function
  :math:`K` (real, in :math:`(0, 1]`), :math:`A_t` multiplies by :math:`K^{t^2}` and
  :math:`A_{1|t}` by :math:`K^{1 - t^2}`. For a Gaussian of std :math:`s`,
  :math:`K^{t^2}` is the Gaussian of std :math:`t s`: the blur severity grows linearly in
  :math:`t`.
* **inpaint** (:class:`InpaintSchedule`): every missing pixel :math:`p` gets a drop time
  :math:`u_p \in (0, 1)`; :math:`A_t` keeps the measured pixels and the missing ones with
  :math:`u_p > t` (the mask grows with :math:`t` until only the measured pixels are left), and
  :math:`A_{1|t}` is the operator's own mask.

Each schedule also projects an image onto the measurement's noise ball
(:meth:`DegradationSchedule.project`), the data consistency the sampler keeps at every level.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ..errors import InputError
from ..fourier import irfft_spatial, rfft_spatial

Tensor = torch.Tensor

__all__ = ["DegradationSchedule", "BlurSchedule", "InpaintSchedule", "make_schedule",
           "SCHEDULE_OPERATORS"]

#: operator families with a degradation schedule
SCHEDULE_OPERATORS = ("blur", "inpaint")
#: largest data weight of the blur projection (noise amplified at most sqrt(MU_MAX) / 2 = 5x)
MU_MAX = 100.0


def _norms(r: Tensor) -> Tensor:
    """Per-batch-element Euclidean norms ``(B,)``."""
    return r.flatten(1).norm(dim=1)


class DegradationSchedule:
    r"""The levels :math:`A_t` of one operator (abstract; see the module docstring).

    ``known(t)`` is a ``(B or 1, 1, H, W)`` map of the pixels :math:`A_t` keeps (all ones for
    blur): the network sees it with :math:`z` so it knows which values are missing.
    """

    def degrade(self, x: Tensor, t: Tensor) -> Tensor:
        r""":math:`A_t x` for per-element levels ``t`` ``(B,)``."""
        raise NotImplementedError

    def rest(self, z: Tensor, t: Tensor) -> Tensor:
        r""":math:`A_{1|t} z`: the rest of the degradation, from level ``t`` to the
        measurement."""
        raise NotImplementedError

    def known(self, t: Tensor) -> Tensor:
        raise NotImplementedError

    def project(self, z: Tensor, y: Tensor, t: Tensor, radius: Tensor) -> Tensor:
        r"""The image nearest to ``z`` with :math:`\|A_{1|t} z' - y\| \le` ``radius`` (per
        batch element)."""
        raise NotImplementedError


class BlurSchedule(DegradationSchedule):
    r"""Blur severity: :math:`A_t = K^{t^2}`, :math:`A_{1|t} = K^{1-t^2}` in Fourier.

    Raises
    ------
    InputError
        A kernel other than Gaussian (its transfer function is not positive, so its powers
        are not blurs).
    """

    def __init__(self, op: Any) -> None:
        if op.params.kernel != "gaussian" or len(op.shape) != 2:
            raise InputError("incremental reconstruction schedules a 2-D Gaussian blur; this "
                             f"operator has a {op.params.kernel} kernel: use the gaussian kernel")
        self.shape = tuple(op.shape)
        # log K (real, <= 0); clamped so that powers of a numerically zero K stay finite
        self._log_k = op.transfer_function.real.clamp(1e-30, 1.0).log()

    def _power(self, t2: Tensor) -> Tensor:
        return torch.exp(t2.reshape(-1, 1, 1, 1) * self._log_k.to(t2.device))

    def _filter(self, z: Tensor, f: Tensor) -> Tensor:
        return irfft_spatial(rfft_spatial(z, 2) * f, self.shape)

    def degrade(self, x: Tensor, t: Tensor) -> Tensor:
        return self._filter(x, self._power(t.square()))

    def rest(self, z: Tensor, t: Tensor) -> Tensor:
        return self._filter(z, self._power(1.0 - t.square()))

    def known(self, t: Tensor) -> Tensor:
        return torch.ones(1, 1, *self.shape, device=t.device)

    def project(self, z: Tensor, y: Tensor, t: Tensor, radius: Tensor) -> Tensor:
        r"""Ball projection with :math:`k = K^{1-t^2}` (diagonal in Fourier): the nearest
        point is :math:`\hat z(\mu) = (\hat z + \mu k \hat y) / (1 + \mu k^2)` with the
        smallest :math:`\mu \ge 0` whose residual :math:`\|(k\hat z - \hat y)/(1 + \mu k^2)\|`
        is at most the radius; the residual falls with :math:`\mu`, which is found by
        bisection on :math:`\log \mu`. :math:`\mu` is capped at :data:`MU_MAX`: it amplifies
        the measurement's noise by up to :math:`\sqrt\mu / 2` (at :math:`k = \mu^{-1/2}`),
        and a radius below the data's true noise (a noise level set too low) would otherwise
        fit the noise with the inverse filter. At the cap the residual stays above the
        radius; the sampler's ``consistency`` metric shows it."""
        k = self._power(1.0 - t.square())
        zf, yf = rfft_spatial(z, 2), rfft_spatial(y, 2)
        r0 = k * zf - yf

        def residual(mu: Tensor) -> Tensor:
            return _norms(irfft_spatial(r0 / (1.0 + mu.reshape(-1, 1, 1, 1) * k * k),
                                        self.shape))

        radius = radius.reshape(-1).to(z.dtype)
        top = math.log10(MU_MAX)
        lo = torch.full_like(radius, -12.0)
        hi = torch.full_like(radius, top)
        for _ in range(40):
            mid = 0.5 * (lo + hi)
            ok = residual(10.0 ** mid) <= radius
            hi, lo = torch.where(ok, mid, hi), torch.where(ok, lo, mid)
        mu = torch.where(_norms(irfft_spatial(r0, self.shape)) <= radius,
                         torch.zeros_like(hi), 10.0 ** hi).reshape(-1, 1, 1, 1)
        return irfft_spatial((zf + mu * k * yf) / (1.0 + mu * k * k), self.shape)


class InpaintSchedule(DegradationSchedule):
    r"""Mask growth: :math:`A_t z = m_t \odot z` with :math:`m_t = m \vee [u > t]`, the drop
    times :math:`u` uniform on :math:`(0, 1)` per pixel (drawn from ``generator``; one field
    for the batch, or one per element with ``batch``)."""

    def __init__(self, op: Any, generator: torch.Generator | None = None,
                 batch: int = 1) -> None:
        if len(op.shape) != 2:
            raise InputError("incremental reconstruction schedules 2-D inpainting; run a "
                             "volume plane by plane")
        self.shape = tuple(op.shape)
        self.mask = op.mask_tensor().reshape(1, 1, *self.shape).to(torch.float32)
        u = torch.rand((batch, 1, *self.shape), generator=generator)
        self.drop = u.to(self.mask.device)

    def known(self, t: Tensor) -> Tensor:
        later = (self.drop > t.reshape(-1, 1, 1, 1).to(self.drop.device)).to(torch.float32)
        return torch.maximum(self.mask.to(later.device), later)

    def degrade(self, x: Tensor, t: Tensor) -> Tensor:
        return self.known(t).to(x.device) * x

    def rest(self, z: Tensor, t: Tensor) -> Tensor:
        return self.mask.to(z.device) * z

    def project(self, z: Tensor, y: Tensor, t: Tensor, radius: Tensor) -> Tensor:
        r"""On the measured pixels, :math:`z_m` pulled towards :math:`y` onto the ball
        :math:`\|z_m - y\| \le r` (the exact projection: the mask is a coordinate
        projection); the other pixels unchanged."""
        m = self.mask.to(z.device)
        d = m * (z - y)
        n = _norms(d).reshape(-1, 1, 1, 1)
        scale = torch.clamp(radius.reshape(-1, 1, 1, 1).to(z.dtype) / n.clamp_min(1e-30),
                            max=1.0)
        return z - d + scale * d


def make_schedule(op: Any, generator: torch.Generator | None = None,
                  batch: int = 1) -> DegradationSchedule:
    """The degradation schedule of ``op`` (blur or inpaint).

    Raises
    ------
    InputError
        An operator family without a schedule.
    """
    if op.name == "blur":
        return BlurSchedule(op)
    if op.name == "inpaint":
        return InpaintSchedule(op, generator, batch)
    raise InputError(f"incremental reconstruction has degradation schedules for "
                     f"{' and '.join(SCHEDULE_OPERATORS)}, not {op.name!r}")
