r"""Trust maps for a finished run (no Qt): maps, hotspots, layers.

Calibration of a run's bands lives in :mod:`napari_invrec.engine.calibration`.

* :func:`trust_maps`: the maps available for a run: ``std``, the Bhadra et al. maps of
  :func:`napari_invrec.engine.compare.hallucination_map` (null-space vs ground truth,
  measurement-space, null-space difference vs a data-consistent reference) and the null-space
  spread over the run's samples.
* :func:`hotspot_layer`, :func:`band_layers`, :func:`trust_layer`: napari layer tuples.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import torch

from ..core.analysis.hotspots import HotspotParams, Region, find_hotspots
from ..core.errors import InputError
from .calibration import CalibrationReport
from .compare import (
    MAP_KINDS,
    MEASUREMENT_SPACE,
    NULL_DIFFERENCE,
    NULL_SPACE,
    hallucination_map,
    layer_image,
    layer_parts,
    map_layer,
    run_operator,
)
from .layers import META_KEY, invrec_meta

__all__ = ["STD", "NULL_SPREAD", "TRUST_KINDS", "available_maps", "trust_maps", "trust_layer",
           "hotspot_layer", "band_layers", "run_companions"]

STD = "std"
NULL_SPREAD = "null-space spread"
#: every map the trust widget computes, in display order
TRUST_KINDS = (STD, NULL_SPACE, MEASUREMENT_SPACE, NULL_DIFFERENCE, NULL_SPREAD)
_DOC = {STD: "per-pixel posterior std over the samples",
        NULL_SPREAD: "std over samples of (I - P) x_i: disagreement on invisible structure"}


# ----------------------------------------------------------------------------- maps
def run_companions(layers: Iterable[Any], provenance: dict) -> dict[str, np.ndarray]:
    """``{"std": ..., "samples": ...}`` from the layers that belong to the run ``provenance``
    (complex samples of a complex-image run from the samples layer's metadata)."""
    out = {}
    for _, data, metadata, _ in (layer_parts(lay) for lay in layers):
        meta = invrec_meta(metadata)
        if meta.get("kind") in (STD, "samples") and meta.get("provenance") == provenance:
            out[meta["kind"]] = layer_image(data, metadata)
    return out


def available_maps(*, std: Any = None, samples: Any = None, reference: Any = None,
                   dc_reference: Any = None, measurement: Any = None) -> list[str]:
    """The kinds of :data:`TRUST_KINDS` computable from the given inputs."""
    have = {STD: std is not None, NULL_SPACE: reference is not None,
            MEASUREMENT_SPACE: measurement is not None, NULL_DIFFERENCE: dc_reference is not None,
            NULL_SPREAD: samples is not None and np.ndim(samples) == 3 and len(samples) > 1}
    return [k for k in TRUST_KINDS if have[k]]


def trust_maps(run_meta: dict, result: np.ndarray, *, std: Any = None, samples: Any = None,
               reference: Any = None, dc_reference: Any = None, measurement: Any = None
               ) -> dict[str, np.ndarray]:
    """Every available map of a run (see :func:`available_maps`), 2-D float32 by kind.

    A run of a non-linear operator (phase retrieval) has no null space: its only map is the
    std.

    Raises
    ------
    InputError
        Shapes that do not match, real samples of a complex-image run (magnitudes have no
        null-space decomposition), or a non-linear run without samples.
    """
    kinds = available_maps(std=std, samples=samples, reference=reference,
                           dc_reference=dc_reference, measurement=measurement)
    op = run_operator(run_meta)
    if not getattr(op, "linear", False):  # no null space: the std alone says something
        if STD not in kinds:
            raise InputError(f"the {op.name} operator is not linear, so it has no null space: "
                             "only the std over posterior samples is available; run a "
                             "stochastic method (dps)")
        kinds = [STD]
    out: dict[str, np.ndarray] = {}
    for kind in kinds:
        if kind == STD:
            out[kind] = np.asarray(std, dtype=np.float32)
        elif kind == NULL_SPREAD:
            out[kind] = _null_spread(run_meta, np.asarray(samples))
        else:
            ref = dc_reference if kind == NULL_DIFFERENCE else reference
            out[kind] = hallucination_map(kind, run_meta, result, ref, measurement)
    return out


def _null_spread(run_meta: dict, samples: np.ndarray) -> np.ndarray:
    from ..core.analysis.hallucination import null_space_spread

    op = run_operator(run_meta)
    if op.complex_image and not np.iscomplexobj(samples):
        raise InputError(f"the null-space spread of a {op.name} run needs its complex samples "
                         "(kept in the metadata of the run's samples layer); these are "
                         "magnitudes")
    if samples.shape[1:] != tuple(op.shape):
        raise InputError(f"samples of shape {samples.shape[1:]} do not fit the operator's "
                         f"image shape {tuple(op.shape)}")
    dtype = np.complex64 if np.iscomplexobj(samples) else np.float32
    s = op.as_image(torch.from_numpy(np.ascontiguousarray(samples, dtype=dtype))[:, None])
    return null_space_spread(op, s)[0, 0].cpu().numpy().astype(np.float32)


# ----------------------------------------------------------------------------- layers
def trust_layer(kind: str, run_name: str, data: np.ndarray, *, reference_name: str | None = None,
                scale: Any = None) -> tuple:
    """Layer tuple ``"<run> [<kind>]"``: the Compare widget's map layers for the Bhadra maps,
    ``magma`` from 0 for the std and the null-space spread."""
    if kind in MAP_KINDS:
        return map_layer(kind, run_name, data, reference_name=reference_name, scale=scale)
    data = np.asarray(data, dtype=np.float32)
    peak = float(data.max()) if data.size and data.max() > 0 else 1.0
    kwargs: dict[str, Any] = {
        "name": f"{run_name} [{kind}]", "colormap": "magma", "contrast_limits": (0.0, peak),
        "metadata": {META_KEY: {"kind": "hallucination", "map": kind, "run": run_name,
                                "reference": None, "signed": False, "description": _DOC[kind]}}}
    if scale is not None:
        kwargs["scale"] = scale
    return (data, kwargs, "image")


def hotspot_layer(m: np.ndarray, p: HotspotParams | None, *, run_name: str, map_name: str,
                  scale: Any = None) -> tuple[tuple, list[Region]]:
    """Hotspots of the map ``m`` as a Labels layer tuple ``"<run> [hotspots: <map>]"``.

    The layer's ``features`` hold one row per region (``index`` = label value, ``area``,
    ``sum``, ``mean``, ``peak``, ``energy_fraction``, ``centroid_row``, ``centroid_col``); its
    ``metadata["invrec"]["regions"]`` holds the same records and the parameters used.
    """
    p = p or HotspotParams()
    labels, regions = find_hotspots(m, p)
    feats = {"index": [r.label for r in regions], "area": [r.area for r in regions],
             "sum": [r.sum for r in regions], "mean": [r.mean for r in regions],
             "peak": [r.peak for r in regions],
             "energy_fraction": [r.energy_fraction for r in regions],
             "centroid_row": [r.centroid[0] for r in regions],
             "centroid_col": [r.centroid[1] for r in regions]}
    from ..core.params import to_dict

    kwargs: dict[str, Any] = {
        "name": f"{run_name} [hotspots: {map_name}]", "features": feats, "opacity": 0.5,
        "metadata": {META_KEY: {"kind": "hotspots", "run": run_name, "map": map_name,
                                "params": to_dict(p),
                                "regions": [r.as_dict() for r in regions]}}}
    if scale is not None:
        kwargs["scale"] = scale
    return (labels, kwargs, "labels"), regions


def band_layers(report: CalibrationReport, mean: np.ndarray, std: np.ndarray, *, run_name: str,
                scale: Any = None) -> list[tuple]:
    """Lower and upper calibrated band layers :math:`\\mu \\mp q s` of a run."""
    from ..core.analysis.calibration import bands

    lo, hi = bands(torch.from_numpy(np.ascontiguousarray(mean)),
                   torch.from_numpy(np.ascontiguousarray(std, dtype=np.float32)), report.q,
                   report.eps)
    pct = f"{report.stated:.0%}"
    out = []
    for which, arr in (("lower", lo), ("upper", hi)):
        kwargs: dict[str, Any] = {
            "name": f"{run_name} [{which} {pct}]", "colormap": "gray", "visible": False,
            "metadata": {META_KEY: {"kind": "band", "band": which, "run": run_name,
                                    "calibration": report.as_dict()}}}
        if scale is not None:
            kwargs["scale"] = scale
        out.append((arr.cpu().numpy().astype(np.float32), kwargs, "image"))
    return out
