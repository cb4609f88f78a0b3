r"""Hotspot overlay: where a trust map concentrates, as labelled regions with scores.

From any non-negative "suspicion" map :math:`m` (the modulus of a null-space map, of a
null-space difference, a posterior std...):

1. smooth: :math:`\tilde m = G_\sigma * |m|` (Gaussian, ``sigma`` pixels; 0 = none);
2. threshold: :math:`\tilde m > t` with :math:`t` the ``quantile`` of :math:`\tilde m`
   (``threshold="quantile"``) or :math:`t = \overline{\tilde m} + k\,\mathrm{sd}(\tilde m)`
   (``threshold="mean+k*std"``);
3. label the connected regions (8-connectivity) and drop those smaller than ``min_area``;
4. score each region :math:`R` on the *unsmoothed* :math:`|m|`: ``sum``
   :math:`\sum_{p \in R} |m_p|`, ``mean``, ``peak``, ``area`` :math:`|R|`, ``centroid``
   (weighted by :math:`|m|`), and ``energy_fraction``
   :math:`\sum_{p\in R} |m_p|^2 / \sum_p |m_p|^2`.

Regions are numbered by decreasing ``sum`` (label 1 = the strongest hotspot).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ..errors import InputError
from ..params import param

__all__ = ["THRESHOLDS", "HotspotParams", "Region", "find_hotspots", "as_plane"]

THRESHOLDS = ("quantile", "mean+k*std")


@dataclass
class HotspotParams:
    """How a map becomes hotspot regions."""

    sigma: float = param(1.0, "Gaussian smoothing std in pixels (0 = none)", min=0.0,
                         max=50.0, step=0.5)
    threshold: str = param("quantile", "threshold rule on the smoothed map", choices=THRESHOLDS)
    quantile: float = param(0.95, "keep pixels above this quantile of the smoothed map",
                            min=0.0, max=0.9999, step=0.01, when={"threshold": "quantile"})
    k: float = param(3.0, "keep pixels above mean + k * std of the smoothed map", min=0.0,
                     max=100.0, step=0.5, when={"threshold": "mean+k*std"})
    min_area: int = param(4, "drop regions smaller than this many pixels", min=1,
                          max=1_000_000)


@dataclass
class Region:
    """One hotspot (scores on the unsmoothed map modulus)."""

    label: int
    area: int
    sum: float
    mean: float
    peak: float
    energy_fraction: float
    centroid: tuple[float, float]

    def as_dict(self) -> dict:
        """Plain-JSON record."""
        d = asdict(self)
        d["centroid"] = [float(c) for c in self.centroid]
        return d


def as_plane(m: Any) -> np.ndarray:
    """A 2-D float array :math:`|m|` from a numpy/torch map of shape ``(H, W)`` or
    ``(1, 1, H, W)``."""
    if hasattr(m, "detach"):
        m = m.detach().cpu().numpy()
    a = np.abs(np.asarray(m))
    while a.ndim > 2 and a.shape[0] == 1:
        a = a[0]
    if a.ndim != 2:
        raise InputError(f"a hotspot map must be one 2-D image, got shape {a.shape}")
    if not np.isfinite(a).all():
        raise InputError("the map holds NaN or inf values; recompute it")
    return a.astype(np.float64)


def find_hotspots(m: Any, p: HotspotParams | None = None) -> tuple[np.ndarray, list[Region]]:
    """Labelled hotspot regions of the map ``m`` (see the module docstring).

    Returns
    -------
    labels : numpy.ndarray
        int32 ``(H, W)``, 0 = background, region ``i`` = label ``i`` (1 = highest ``sum``).
    regions : list of Region
        One record per label, in label order.
    """
    from scipy import ndimage

    p = p or HotspotParams()
    if p.threshold not in THRESHOLDS:
        raise InputError(f"threshold must be one of {THRESHOLDS}, got {p.threshold!r}")
    a = as_plane(m)
    sm = ndimage.gaussian_filter(a, float(p.sigma), mode="nearest") if p.sigma > 0 else a
    if p.threshold == "quantile":
        t = float(np.quantile(sm, float(p.quantile)))
    else:
        t = float(sm.mean() + float(p.k) * sm.std())
    raw, n = ndimage.label(sm > t, structure=np.ones((3, 3), dtype=bool))
    labels = np.zeros(a.shape, dtype=np.int32)
    if n == 0:
        return labels, []
    idx = np.arange(1, n + 1)
    area = ndimage.sum_labels(np.ones_like(a), raw, idx)
    total = ndimage.sum_labels(a, raw, idx)
    keep = [i for i in range(n) if area[i] >= p.min_area]
    keep.sort(key=lambda i: -total[i])
    energy = float((a * a).sum()) or 1.0
    rows, cols = np.indices(a.shape)
    regions = []
    for new, i in enumerate(keep, start=1):
        inside = raw == idx[i]
        labels[inside] = new
        w = a[inside]
        wsum = float(w.sum())
        if wsum > 0:
            cen = (float((rows[inside] * w).sum() / wsum), float((cols[inside] * w).sum() / wsum))
        else:
            cen = (float(rows[inside].mean()), float(cols[inside].mean()))
        regions.append(Region(label=new, area=int(area[i]), sum=wsum, mean=wsum / area[i],
                              peak=float(w.max()), energy_fraction=float((w * w).sum()) / energy,
                              centroid=cen))
    return labels, regions
