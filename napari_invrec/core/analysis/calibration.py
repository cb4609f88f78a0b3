r"""Split-conformal calibration of posterior standard deviations.

A stochastic method returns a posterior mean :math:`\mu` and a per-pixel standard deviation
:math:`s`. The raw bands :math:`\mu \pm z\,s` have no guaranteed coverage (the prior may be
wrong, the sampler biased or not mixed). Split-conformal prediction rescales them on
calibration pairs :math:`(x^{(i)}, \mu^{(i)}, s^{(i)})`, :math:`i = 1..n`, simulated from a
generator of ground truths and the run's own operator, noise and method:

.. math::

    r = \frac{|x - \mu|}{\max(s, \varepsilon)}, \qquad
    q = r_{(k)}, \quad k = \lceil (n + 1)(1 - \alpha) \rceil,

the :math:`k`-th smallest of the :math:`n` scores (the :math:`\lceil (n+1)(1-\alpha)\rceil / n`
empirical quantile), and the calibrated bands are :math:`[\mu - q s, \mu + q s]`.

Two kinds of score (``mode``):

``"pixels"``
    every pixel of every calibration image is one score (pooled). The bands then have
    per-pixel *marginal* coverage :math:`\approx 1 - \alpha`: averaged over images and over
    pixels, a fraction :math:`1 - \alpha` of the true pixel values lies inside. Pixels of one
    image are correlated, so the finite-sample guarantee of exchangeable scores holds for the
    images, not for single pixels; with many pixels per image the coverage concentrates near
    :math:`1 - \alpha` (measure it on held-out pairs, :func:`coverage`).
``"max"``
    one score per image, :math:`\max_p r_p`. Exchangeable across images, so the bands cover
    *every* pixel of a new image at once with probability :math:`\ge 1 - \alpha` (exact
    finite-sample guarantee); much wider bands.

Complex images (MRI) use the modulus :math:`|x - \mu|` (a disc of radius :math:`q s`).

A measured coverage is itself an estimate. Its standard error (:func:`coverage_stderr`) is
taken over images, the exchangeable units, never over pixels: with :math:`c_i` the coverage of
held-out image :math:`i` (its fraction of covered pixels, or 1/0 in ``"max"`` mode,
:func:`image_coverages`), the pooled coverage is :math:`\bar c = \frac1n \sum_i c_i` and its
standard error :math:`\mathrm{sd}(c_i) / \sqrt{n}`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..errors import InputError

Tensor = torch.Tensor

__all__ = ["SCORE_MODES", "Calibration", "nonconformity", "conformal_quantile", "calibrate",
           "bands", "coverage", "image_coverages", "coverage_stderr"]

SCORE_MODES = ("pixels", "max")
"""Kinds of nonconformity score: pooled pixels or one maximum per image."""


@dataclass
class Calibration:
    """Outcome of :func:`calibrate`.

    Attributes
    ----------
    q
        Band half-width in units of the std: bands are :math:`\\mu \\pm q s`.
    alpha
        Miscoverage level; the stated coverage is :math:`1 - \\alpha`.
    mode
        ``"pixels"`` or ``"max"`` (see the module docstring).
    n_scores
        Number of calibration scores :math:`n`.
    eps
        Floor :math:`\\varepsilon` applied to the std.
    """

    q: float
    alpha: float
    mode: str
    n_scores: int
    eps: float

    @property
    def stated(self) -> float:
        """Stated coverage :math:`1 - \\alpha`."""
        return 1.0 - self.alpha


def _t(a: Any) -> Tensor:
    t = a if isinstance(a, Tensor) else torch.as_tensor(np.asarray(a))
    return t.detach()


def _check(x_true: Tensor, mean: Tensor, std: Tensor) -> None:
    if x_true.shape != mean.shape or std.shape != mean.shape:
        raise InputError(f"ground truth {tuple(x_true.shape)}, mean {tuple(mean.shape)} and "
                         f"std {tuple(std.shape)} must have the same shape")


def nonconformity(x_true: Any, mean: Any, std: Any, *, mode: str = "pixels",
                  eps: float = 1e-6) -> Tensor:
    r"""Nonconformity scores :math:`r = |x - \mu| / \max(s, \varepsilon)`.

    Parameters
    ----------
    x_true, mean, std
        Same shape, ``(B, C, H, W)`` (or any shape whose first axis is the image index).
    mode
        ``"pixels"``: all pixels pooled, returns ``B * C * H * W`` scores; ``"max"``: the
        maximum over each image, returns ``B`` scores.
    eps
        Std floor :math:`\varepsilon > 0` (pixels where the sampler reports no spread).

    Returns
    -------
    torch.Tensor
        1-D float tensor of scores.
    """
    if mode not in SCORE_MODES:
        raise InputError(f"score mode must be one of {SCORE_MODES}, got {mode!r}")
    if not eps > 0:
        raise InputError(f"eps must be > 0, got {eps}")
    x, m, s = _t(x_true), _t(mean), _t(std)
    _check(x, m, s)
    r = (x.to(m.device) - m).abs() / s.to(m.device).real.clamp_min(float(eps))
    r = r.float()
    if mode == "max":
        return r.reshape(r.shape[0], -1).amax(1)
    return r.reshape(-1)


def conformal_quantile(scores: Any, alpha: float) -> float:
    r"""The split-conformal quantile :math:`r_{(k)}`, :math:`k = \lceil (n+1)(1-\alpha) \rceil`.

    Raises
    ------
    InputError
        If :math:`\alpha \notin (0, 1)` or there are too few scores for the level
        (:math:`k > n`: need :math:`n \ge 1/\alpha - 1`).
    """
    a = float(alpha)
    if not 0.0 < a < 1.0:
        raise InputError(f"alpha must be in (0, 1), got {alpha}")
    r = _t(scores).reshape(-1).float()
    n = int(r.numel())
    k = math.ceil((n + 1) * (1.0 - a))
    if n == 0 or k > n:
        raise InputError(f"{n} calibration score(s) are too few for alpha={a}: need at least "
                         f"{math.ceil(1.0 / a - 1.0)}; simulate more calibration pairs")
    return float(torch.kthvalue(r.cpu(), k).values)


def calibrate(x_true: Any, mean: Any, std: Any, alpha: float = 0.1, *, mode: str = "pixels",
              eps: float = 1e-6) -> Calibration:
    """Calibrate on pairs: :func:`nonconformity` then :func:`conformal_quantile`."""
    r = nonconformity(x_true, mean, std, mode=mode, eps=eps)
    return Calibration(q=conformal_quantile(r, alpha), alpha=float(alpha), mode=mode,
                       n_scores=int(r.numel()), eps=float(eps))


def bands(mean: Any, std: Any, q: float, eps: float = 1e-6) -> tuple[Tensor, Tensor]:
    r"""Lower and upper bands :math:`\mu \mp q \max(s, \varepsilon)` (real parts for complex)."""
    m, s = _t(mean), _t(std).to(_t(mean).device).real.clamp_min(float(eps))
    centre = m.real if m.is_complex() else m
    return centre - q * s, centre + q * s


def coverage(x_true: Any, mean: Any, std: Any, q: float, *, mode: str = "pixels",
             eps: float = 1e-6) -> float:
    r"""Empirical coverage of the bands :math:`|x - \mu| \le q \max(s, \varepsilon)`.

    ``"pixels"``: the fraction of covered pixels (all images pooled); ``"max"``: the fraction
    of images covered at every pixel.
    """
    r = nonconformity(x_true, mean, std, mode=mode, eps=eps)
    return float((r <= q).float().mean())


def image_coverages(x_true: Any, mean: Any, std: Any, q: float, *, mode: str = "pixels",
                    eps: float = 1e-6) -> Tensor:
    r"""Coverage of each image separately.

    .. math::

        c_i = \frac{1}{P} \sum_{p=1}^{P} \mathbf 1[r_{ip} \le q] \quad (\texttt{pixels}),
        \qquad c_i = \mathbf 1[\max_p r_{ip} \le q] \quad (\texttt{max}),

    with :math:`r` the scores of :func:`nonconformity`. All images have the same number of
    pixels, so :func:`coverage` is the mean of the :math:`c_i`.

    Returns
    -------
    torch.Tensor
        ``(B,)`` float tensor, one coverage per image.
    """
    if mode not in SCORE_MODES:
        raise InputError(f"score mode must be one of {SCORE_MODES}, got {mode!r}")
    r = nonconformity(x_true, mean, std, mode="pixels", eps=eps)
    r = r.reshape(_t(mean).shape[0], -1)
    if mode == "max":
        return (r.amax(1) <= q).float()
    return (r <= q).float().mean(1)


def coverage_stderr(per_image: Any, groups: Any = None) -> float:
    r"""Standard error of a measured coverage, over images (or groups of images), not pixels.

    Pixels of one image are correlated (they share the truth, the noise draw and the sampler's
    chains), so a binomial error over the pixel count would be far too small. With
    :math:`c_i` the per-image coverages (:func:`image_coverages`) and :math:`G` groups
    (``groups[i]`` labels the truth image of pair :math:`i`; pairs that reuse one truth with
    fresh noise are averaged into :math:`\bar c_g` first, since they are not independent of
    each other),

    .. math::

        \mathrm{se} = \sqrt{\frac{1}{G (G - 1)} \sum_{g=1}^{G} (\bar c_g - \bar c)^2},
        \qquad \bar c = \frac1G \sum_g \bar c_g .

    For 0/1 coverages (``"max"`` mode, one pair per group) this is the binomial
    :math:`\sqrt{\bar c (1 - \bar c) / (G - 1)}`.

    Returns
    -------
    float
        The standard error; ``nan`` with fewer than two groups.
    """
    c = _t(per_image).reshape(-1).double().cpu().numpy()
    labels = np.arange(c.size) if groups is None else np.asarray(groups).reshape(-1)
    if labels.size != c.size:
        raise InputError(f"{labels.size} group label(s) for {c.size} coverage(s)")
    _, inverse = np.unique(labels, return_inverse=True)
    n_groups = int(inverse.max()) + 1 if inverse.size else 0
    if n_groups < 2:
        return float("nan")
    means = np.bincount(inverse, weights=c) / np.bincount(inverse)
    return float(np.std(means, ddof=1) / math.sqrt(n_groups))
