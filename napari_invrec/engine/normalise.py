r"""Physical units: runs on data of any range (raw counts, CT numbers, k-space at any scale).

Methods and their defaults are tuned for images in about :math:`[0, 1]`: a TV weight, a
denoiser's noise level or a step size means nothing on counts of 900..4428. A run therefore
solves an affinely normalised problem and returns the result in the input's units. For a
linear operator :math:`A` and the image map :math:`x = s\,u + o` (scale :math:`s > 0`,
offset :math:`o`),

.. math::

    y = A x + n \iff y_u = \frac{y - o\,A\mathbf 1}{s} = A u + \frac{n}{s},

so the method sees :math:`y_u` and its iterates :math:`u_k` are shown and stored as
:math:`s\,u_k + o`. :math:`s` and :math:`o` come from a cheap image-domain estimate that is
exact for constant images, :math:`\tilde x = \mathrm{Re}\,A^H y / A^H A \mathbf 1` (on pixels
where the denominator is above 1e-6 of its maximum): :math:`o` is its 0.5th percentile and
:math:`s` the distance to its 99.5th (for complex data, k-space, :math:`o = 0` and :math:`s` is
the 99.5th percentile of :math:`|A^H y / A^H A \mathbf 1|`). Percentiles commute with affine
maps, so a run on :math:`a\,y + b\,A\mathbf 1` gives :math:`a\,x + b` (to float rounding): the
result does not depend on the units.

Modes: ``on`` always normalises; ``off`` never; ``auto`` (the default) normalises unless the
data already span about :math:`[0, 1]` (the estimate's robust range lies inside
:math:`[-0.5, 1.5]` and is at least 0.5 wide), so data prepared for the methods (and for
networks trained on :math:`[0, 1]` images) run unchanged; nor does it normalise for an
operator that maps non-negative images to signed data (a compressed-sensing matrix), whose
ratio estimate gives no range.
A Poisson likelihood (Richardson-Lucy) keeps :math:`o = 0`: counts are only rescaled, which
its multiplicative updates do not notice. Non-linear operators (phase retrieval) are not
normalised.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..core.errors import InputError

__all__ = ["NORMALISE_MODES", "Normalisation", "plan_normalisation", "method_normalisation"]

NORMALISE_MODES = ("auto", "on", "off")
_LO, _HI = 0.5, 99.5  # percentiles of the robust range


@dataclass(frozen=True)
class Normalisation:
    """The affine map between the input's units and the units a method runs in.

    Attributes
    ----------
    mode
        The requested mode (``auto``, ``on``, ``off``).
    applied
        Whether the data are normalised (``False``: scale 1, offset 0).
    offset, scale
        :math:`x = \\text{scale}\\cdot u + \\text{offset}` (input units).
    reason
        One line saying why it is (not) applied.
    """

    mode: str
    applied: bool
    offset: float = 0.0
    scale: float = 1.0
    reason: str = ""

    def to_dict(self) -> dict:
        """JSON record for the provenance."""
        return {"mode": self.mode, "applied": self.applied, "offset": self.offset,
                "scale": self.scale, "reason": self.reason}

    def measurement(self, y: torch.Tensor, op: Any) -> torch.Tensor:
        """:math:`y_u = (y - o A\\mathbf 1) / s` (the measurement the method sees)."""
        if not self.applied:
            return y
        if self.offset != 0.0:
            ones = torch.ones((1, 1, *op.shape), dtype=op.image_dtype, device=op.device)
            y = y - self.offset * op.A(ones)
        return y / self.scale

    def to_units(self, x: torch.Tensor) -> torch.Tensor:
        """An image in the method's units back in the input's: :math:`s\\,u + o`."""
        if not self.applied:
            return x
        return x * self.scale + self.offset

    def from_units(self, x: torch.Tensor) -> torch.Tensor:
        """An image in the input's units (an initial guess) in the method's: :math:`(x - o)/s`."""
        if not self.applied:
            return x
        return (x - self.offset) / self.scale

    def spread_to_units(self, s: torch.Tensor) -> torch.Tensor:
        """A spread (std) in the method's units in the input's: :math:`s\\cdot\\sigma_u`."""
        return s * self.scale if self.applied else s


def _estimate(y: torch.Tensor, op: Any) -> tuple[np.ndarray, bool]:
    """:math:`A^H y / A^H A 1` on the pixels the measurement sees (1-D numpy), and whether it
    is a reliable range: a real operator must map non-negative images to non-negative data
    (blur, inpainting, CT, super-resolution; not a signed compressed-sensing matrix, whose
    ratio is noise)."""
    with torch.no_grad():
        ones = torch.ones((1, 1, *op.shape), dtype=op.image_dtype, device=op.device)
        a1 = op.A(ones)
        reliable = bool(a1.is_complex() or float(a1.min()) >= -1e-6 * float(a1.abs().max()))
        den = op.A_adjoint(a1).real.abs()[0, 0]
        num = op.A_adjoint(y[:1])[0, 0]
        keep = den > 1e-6 * float(den.max())
        est = num[keep] / den[keep]
    est = est.abs() if est.is_complex() else est
    return est.detach().cpu().double().numpy(), reliable


def plan_normalisation(y: torch.Tensor, op: Any, mode: str = "auto", *,
                       poisson: bool = False) -> Normalisation:
    """The normalisation of a run on the measurement tensor ``y`` (see the module docstring).

    Parameters
    ----------
    y
        Prepared ``(1, 1, ...)`` measurement on the operator's device.
    op
        The operator.
    mode
        ``auto``, ``on`` or ``off``.
    poisson
        The method's likelihood is Poisson: no offset.

    Raises
    ------
    InputError
        Unknown mode, or ``on`` for a non-linear operator.
    """
    if mode not in NORMALISE_MODES:
        raise InputError(f"normalise must be one of {', '.join(NORMALISE_MODES)}, got {mode!r}")
    if mode == "off":
        return Normalisation(mode, False, reason="off: the data run in their own units")
    if not getattr(op, "linear", False):
        if mode == "on":
            raise InputError(f"the {op.name} operator is not linear: its data cannot be "
                             "normalised; use normalise 'off' or 'auto'")
        return Normalisation(mode, False, reason=f"{op.name} is not linear: not normalised")
    est, reliable = _estimate(y, op)
    return normalisation_from_estimate(est, reliable, mode, op.name, poisson=poisson,
                                       complex_data=bool(y.is_complex()))


def method_normalisation(y: torch.Tensor, op: Any, mode: str, spec: Any) -> Normalisation:
    """:func:`plan_normalisation` for a run of the method ``spec`` (a
    :class:`~napari_invrec.core.methods.registry.MethodSpec`): a Poisson likelihood keeps the
    offset at 0, and ``auto`` leaves the data of a method that runs in the data's own units
    (``spec.own_units``: a network trained on data in those units) alone."""
    if spec.own_units and mode == "auto":
        return Normalisation(mode, False, reason=f"auto: {spec.name} runs in the data's own "
                             "units (its network was trained in them): not normalised")
    return plan_normalisation(y, op, mode, poisson=spec.likelihood == "poisson")


def normalisation_from_estimate(est: np.ndarray, reliable: bool, mode: str, op_name: str, *,
                                poisson: bool, complex_data: bool) -> Normalisation:
    """The normalisation given image-value estimates ``est`` (see the module docstring).

    ``[lo, hi]`` are the percentiles of ``est``; ``lo`` is 0 for Poisson counts and complex
    data (scale only). ``auto`` leaves data already in about ``[0, 1]`` alone, and data whose
    estimates are not ``reliable`` (an operator that mixes signs).
    """
    if mode == "auto" and not reliable:
        return Normalisation(mode, False, reason=f"auto: the {op_name} operator mixes signs, "
                             "so the data give no image range: not normalised")
    if est.size == 0:
        return Normalisation(mode, False, reason="no pixel is measured: not normalised")
    lo, hi = (float(v) for v in np.percentile(est, [_LO, _HI]))
    if complex_data or poisson:
        lo = 0.0
    span = hi - lo
    if mode == "auto" and lo >= -0.5 and hi <= 1.5 and span >= 0.5:
        return Normalisation(mode, False, reason=f"auto: the data already lie in "
                             f"[{lo:.3g}, {hi:.3g}]: not normalised")
    if not np.isfinite(span) or span <= 0:
        return Normalisation(mode, False, reason="the data are constant: not normalised")
    why = ("scale only (Poisson counts)" if poisson and not complex_data else
           "scale only (complex data)" if complex_data else "offset and scale")
    return Normalisation(mode, True, offset=lo, scale=span,
                         reason=f"{mode}: {why}; 0..1 in the method's units = "
                                f"{lo:.4g}..{hi:.4g} in the input's")
