r"""Trust maps for a finished run (no Qt): calibration simulations, maps, hotspots, layers.

* :func:`calibration_steps` / :func:`calibrate_run`: split-conformal calibration of a
  stochastic run's std (:mod:`napari_invrec.core.analysis.calibration`). ``n_pairs`` fresh
  ground truths :math:`x^{(i)}` are drawn from a synthetic generator (``atoms``, ``phantoms``
  = random Shepp-Logan-like ellipse phantoms, ``mixed``: the training generators of
  :mod:`napari_invrec.core.training.datasets`), measured with the run's operator and noise,
  :math:`y^{(i)} = N(A x^{(i)})`, and reconstructed by the run's method with the run's
  parameters (several pairs per batch). The first half calibrates :math:`q`, the second half
  (held out) measures the coverage of :math:`\mu \pm q s`.
* :func:`trust_maps`: the maps available for a run: ``std``, the Bhadra et al. maps of
  :func:`napari_invrec.engine.compare.hallucination_map` (null-space vs ground truth,
  measurement-space, null-space difference vs a data-consistent reference) and the null-space
  spread over the run's samples.
* :func:`hotspot_layer`, :func:`band_layers`, :func:`trust_layer`: napari layer tuples.
"""

from __future__ import annotations

import math
from collections.abc import Generator, Iterable
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import numpy as np
import torch

from ..core.analysis.calibration import SCORE_MODES, calibrate, coverage
from ..core.analysis.hotspots import HotspotParams, Region, find_hotspots
from ..core.errors import InputError
from ..core.params import from_dict, make_params, param
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

__all__ = ["GENERATORS", "STD", "NULL_SPREAD", "TRUST_KINDS", "CalibrateParams",
           "CalibrationReport", "resolve_run", "calibration_steps", "calibrate_run",
           "available_maps", "trust_maps", "trust_layer", "hotspot_layer", "band_layers",
           "run_companions"]

GENERATORS = ("phantoms", "atoms", "mixed")
"""Ground-truth generators for calibration pairs (:class:`SyntheticPatches` kinds)."""

STD = "std"
NULL_SPREAD = "null-space spread"
#: every map the trust widget computes, in display order
TRUST_KINDS = (STD, NULL_SPACE, MEASUREMENT_SPACE, NULL_DIFFERENCE, NULL_SPREAD)
_DOC = {STD: "per-pixel posterior std over the samples",
        NULL_SPREAD: "std over samples of (I - P) x_i: disagreement on invisible structure"}


@dataclass
class CalibrateParams:
    """Split-conformal calibration on simulated pairs."""

    generator: str = param("phantoms", "ground-truth generator of the calibration pairs",
                           choices=GENERATORS)
    n_pairs: int = param(32, "simulated pairs: half calibrate q, half measure coverage",
                         min=4, max=100000)
    alpha: float = param(0.1, "miscoverage: the bands state 1 - alpha coverage", min=1e-4,
                         max=0.5, step=0.05)
    mode: str = param("pixels", "scores: pooled pixels (per-pixel marginal coverage) or one "
                      "maximum per image (whole-image coverage)", choices=SCORE_MODES)
    batch: int = param(8, "pairs reconstructed together in one batch", min=1, max=4096)
    seed: int = param(0, "seed of the ground truths, noise and sampler", min=0,
                      max=2**31 - 1)


@dataclass
class CalibrationReport:
    """Outcome of :func:`calibrate_run`.

    Attributes
    ----------
    q
        Band half-width in std units, from the calibration half.
    alpha, stated
        Miscoverage and stated coverage :math:`1 - \\alpha`.
    measured
        Coverage of :math:`\\mu \\pm q s` on the held-out half.
    raw_q, raw_coverage
        The Gaussian :math:`z_{1-\\alpha/2}` and the held-out coverage of the uncalibrated
        bands :math:`\\mu \\pm z s` (how far the raw std is off).
    n_cal, n_test
        Pairs used to calibrate and to measure.
    mode, generator, method, eps
        What was calibrated, and the std floor.
    """

    q: float
    alpha: float
    measured: float
    raw_q: float
    raw_coverage: float
    n_cal: int
    n_test: int
    mode: str
    generator: str
    method: str
    eps: float

    @property
    def stated(self) -> float:
        """Stated coverage :math:`1 - \\alpha`."""
        return 1.0 - self.alpha

    def summary(self) -> str:
        """One line for a status label."""
        return (f"q = {self.q:.3g} (raw z = {self.raw_q:.3g}); stated coverage "
                f"{self.stated:.1%}, measured {self.measured:.1%} on {self.n_test} held-out "
                f"{self.generator} pairs (raw bands: {self.raw_coverage:.1%})")

    def as_dict(self) -> dict:
        """Plain-JSON record (stored in band layers' metadata)."""
        return {**{k: getattr(self, k) for k in self.__dataclass_fields__},
                "stated": self.stated}


# ----------------------------------------------------------------------------- runs
def resolve_run(run: Any, *, arrays: dict | None = None, noise: dict | None = None
                ) -> tuple[Any, str, Any, Any]:
    """``(op, method, params, noise)`` of a run.

    ``run`` is a provenance dict (with ``arrays`` for custom masks/kernels), a result layer's
    metadata, a :class:`~napari_invrec.engine.compare.RunInfo`, or a tuple
    ``(op, method, params)`` (params a dataclass or dict). ``noise`` (a NoiseParams dict)
    overrides the one recorded in the provenance.

    Raises
    ------
    InputError
        No provenance, a non-stochastic method, or no noise model known.
    """
    from ..core.methods import get_method
    from ..core.operators.noise import NoiseParams

    if isinstance(run, tuple):
        op, method, params = run
        spec = get_method(method, op.name)
        params = make_params(spec.params, **params) if isinstance(params, dict) else params
        prov_noise = None
    else:
        if hasattr(run, "provenance"):
            arrays = arrays if arrays is not None else getattr(run, "arrays", None)
            run = run.provenance
        meta = invrec_meta(run) if META_KEY in (run or {}) else dict(run or {})
        prov = meta.get("provenance") or (meta if "method" in meta else None)
        if not prov or "operator" not in prov or "method" not in prov:
            raise InputError("this layer records no run provenance; pick a result layer "
                             "made by napari-invrec")
        arrays = arrays if arrays is not None else meta.get("arrays")
        op = run_operator({"provenance": prov, "arrays": arrays or {}})
        spec = get_method(prov["method"], op.name)
        method = prov["method"]
        params = from_dict(spec.params, prov.get("params") or {})
        prov_noise = prov.get("noise")
    if not spec.stochastic:
        raise InputError(f"{method!r} is not a stochastic method (it has no posterior std); "
                         "calibrate a run of a sampler such as langevin-tv")
    noise_d = noise if noise is not None else prov_noise
    if noise_d is None:
        raise InputError("the run records no noise model (a real, not simulated, measurement): "
                         "give the noise to simulate the calibration pairs with")
    noise_p = noise_d if isinstance(noise_d, NoiseParams) else make_params(
        NoiseParams, **{k: v for k, v in dict(noise_d).items() if k in NoiseParams.__annotations__})
    return op, method, params, noise_p


def _ground_truths(generator: str, n: int, shape: tuple[int, int], seed: int) -> torch.Tensor:
    from ..core.training.datasets import SyntheticPatches

    if generator not in GENERATORS:
        raise InputError(f"unknown generator {generator!r}; choose one of {GENERATORS}")
    h, w = shape
    x = SyntheticPatches(generator).sample(n, max(h, w), np.random.default_rng(seed))
    return x[..., :h, :w].contiguous()


def calibration_steps(run: Any, p: CalibrateParams | None = None, *, arrays: dict | None = None,
                      noise: dict | None = None, eps: float = 1e-6
                      ) -> Generator[tuple[int, int], None, CalibrationReport]:
    """Simulate, reconstruct and calibrate; yields ``(step, total)`` after every method step.

    See the module docstring; ``run``, ``arrays`` and ``noise`` as in :func:`resolve_run`.
    Returns the :class:`CalibrationReport`.
    """
    p = p or CalibrateParams()
    p = make_params(CalibrateParams, **{f: getattr(p, f) for f in p.__dataclass_fields__})
    op, method, params, noise_p = resolve_run(run, arrays=arrays, noise=noise)
    from ..core.methods import get_method

    fn = get_method(method, op.name).fn
    n = int(p.n_pairs)
    n_cal = (n + 1) // 2
    need = math.ceil(1.0 / p.alpha - 1.0)
    units = n_cal if p.mode == "max" else n_cal * op.shape[0] * op.shape[1]
    if units < need:
        raise InputError(f"{n_cal} calibration image(s) give too few scores for alpha="
                         f"{p.alpha}; raise n_pairs or alpha")
    dev = op.device
    x_true = _ground_truths(p.generator, n, tuple(op.shape), int(p.seed)).to(dev)
    x_img = op.as_image(x_true)
    g_noise = torch.Generator(device=dev).manual_seed(int(p.seed) + 1)
    g_method = torch.Generator(device=dev).manual_seed(int(p.seed) + 2)
    means, stds = [], []
    chunks = [(i, min(i + int(p.batch), n)) for i in range(0, n, int(p.batch))]
    done, total = 0, None
    with torch.no_grad():
        for a, b in chunks:
            y = op.measure(x_img[a:b], noise_p, generator=g_noise)
            state = None
            for state in fn(y, op, params, generator=g_method):
                total = total or state.total * len(chunks)
                done += 1
                yield done, total
            if state is None or "std" not in state.extras:
                raise InputError(f"{method} returned no posterior std to calibrate")
            means.append(state.x.detach())
            stds.append(state.extras["std"].detach())
    mean, std = torch.cat(means), torch.cat(stds)
    cal = calibrate(x_img[:n_cal], mean[:n_cal], std[:n_cal], p.alpha, mode=p.mode, eps=eps)
    held = slice(n_cal, n)
    raw_q = NormalDist().inv_cdf(1.0 - p.alpha / 2.0)
    return CalibrationReport(
        q=cal.q, alpha=float(p.alpha),
        measured=coverage(x_img[held], mean[held], std[held], cal.q, mode=p.mode, eps=eps),
        raw_q=raw_q,
        raw_coverage=coverage(x_img[held], mean[held], std[held], raw_q, mode=p.mode, eps=eps),
        n_cal=n_cal, n_test=n - n_cal, mode=p.mode, generator=p.generator, method=method,
        eps=float(eps))


def calibrate_run(run: Any, generator: str = "phantoms", n_pairs: int = 32, alpha: float = 0.1,
                  seed: int = 0, *, mode: str = "pixels", batch: int = 8,
                  arrays: dict | None = None, noise: dict | None = None) -> CalibrationReport:
    """Run :func:`calibration_steps` to its end (for scripts and tests)."""
    p = make_params(CalibrateParams, generator=generator, n_pairs=n_pairs, alpha=alpha,
                    seed=seed, mode=mode, batch=batch)
    gen = calibration_steps(run, p, arrays=arrays, noise=noise)
    while True:
        try:
            next(gen)
        except StopIteration as stop:
            return stop.value


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

    Raises
    ------
    InputError
        Shapes that do not match, or real samples of a complex-image run (magnitudes have no
        null-space decomposition).
    """
    kinds = available_maps(std=std, samples=samples, reference=reference,
                           dc_reference=dc_reference, measurement=measurement)
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
