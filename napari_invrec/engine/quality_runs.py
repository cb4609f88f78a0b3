"""Ground-truth-free estimates of finished runs, from what their layers carry (no Qt).

The docks estimate runs that are already on the canvas: a result layer's metadata
(:mod:`.layers`) holds the run's provenance (operator spec, method, params, seed,
normalisation, noise), its operator arrays and the measurement as it ran. This module rebuilds
that context (:func:`run_context`), estimates one run (:func:`run_quality_steps`, a generator
like every long job) and ranks the runs of one measurement (:func:`rank_runs_steps`) with one
estimator and one set of folds and probes, so that their estimates are paired
(:func:`~.quality.paired_confidence`).

An estimate is stored in the provenance under ``"quality"`` (:func:`quality_record`: the
:meth:`~.quality.QualityEstimate.as_dict` record plus the settings it was made with);
:func:`stored_estimate` reads it back, so a run estimated once (by Rank, Auto, Best for this
data or the API) is not estimated again.
"""

from __future__ import annotations

import dataclasses
import math
import threading
from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..core.errors import InputError
from ..core.threads import torch_threads
from .compare import RunInfo, run_operator
from .quality import (
    FOLDS,
    PROBES,
    QualityEstimate,
    common_estimator,
    paired_confidence,
    quality_steps,
)
from .ranking import FLOOR, FLOOR_CONFIDENCE

__all__ = ["FOLDS", "PROBES", "ESTIMATE_SEED", "RunContext", "RankTick", "RunRanking",
           "run_context", "run_quality_steps", "rank_runs_steps",
           "quality_record", "stored_estimate", "estimate_from_dict", "short_label",
           "ranking_line", "winner_line", "threaded_steps"]

#: seed of every estimate the docks make (with :data:`FOLDS` and :data:`PROBES`, the searches'
#: defaults too): estimates made by Auto, Best for this data and Rank pair with each other
ESTIMATE_SEED = 0


@dataclass
class RunContext:
    """Everything needed to estimate a finished run.

    Attributes
    ----------
    name
        The run's layer name.
    y, op
        The measurement as it ran and the rebuilt operator.
    method, params, seed, normalise, noise
        The run as recorded (``params``: the method's params instance; ``normalise``: the
        requested mode; ``noise``: the recorded simulation, or ``None``).
    x_hat
        The run's result (complex for complex images).
    provenance
        The run's provenance (read for a stored estimate).
    """

    name: str
    y: np.ndarray
    op: Any
    method: str
    params: Any
    seed: int
    normalise: str
    noise: dict | None
    x_hat: np.ndarray
    provenance: dict = field(default_factory=dict)

    @property
    def fingerprint(self) -> str | None:
        """SHA-256 of the run's measurement (runs on one measurement share it)."""
        return (self.provenance.get("measurement") or {}).get("sha256")


def run_context(run: RunInfo | Mapping, result: Any = None, *, measurement: Any = None,
                name: str | None = None) -> RunContext:
    """Rebuild the context of a finished run from its :class:`~.compare.RunInfo` or its result
    layer's metadata (``metadata`` or ``metadata["invrec"]``).

    Parameters
    ----------
    run
        The run.
    result
        Its result image (default: the RunInfo's result, or the metadata's complex result).
    measurement
        Its measurement (default: the RunInfo's, or the one saved in the metadata).
    name
        Its display name (default: the RunInfo's name, else the method).

    Raises
    ------
    InputError
        No provenance, operator, measurement or result, or a stored parameter that does not
        rebuild.
    """
    from ..core.methods import get_method
    from ..core.params import from_dict
    from .layers import META_KEY

    if isinstance(run, RunInfo):
        prov, arrays, meta = run.provenance, run.arrays, run.meta
        y = run.measurement if measurement is None else measurement
        x = run.result if result is None else result
        name = name or run.name
    else:
        meta = dict(run.get(META_KEY, run) or {})
        prov, arrays = dict(meta.get("provenance") or {}), dict(meta.get("arrays") or {})
        y = meta.get("measurement") if measurement is None else measurement
        x = meta.get("complex_data") if result is None else result
    name = name or str(prov.get("method", "run"))
    if not prov.get("method") or not prov.get("operator"):
        raise InputError(f"{name!r} records no run (provenance with a method and an operator); "
                         "estimate a result layer made by napari-invrec")
    if y is None:
        raise InputError(f"{name!r}: the run's measurement was not found (no layer holds it "
                         "and the result does not carry it)")
    if x is None:
        raise InputError(f"{name!r}: no result image to estimate")
    op = run_operator(meta)
    spec = get_method(str(prov["method"]), op.name)
    stored = dict(prov.get("params") or {})
    p_arrays = {k: arrays[k] for k, v in stored.items() if isinstance(v, dict) and k in arrays}
    params = from_dict(spec.params, stored, **p_arrays)
    norm = prov.get("normalise")
    mode = str(norm.get("mode", "off")) if isinstance(norm, Mapping) else "off"
    noise = prov.get("noise") if isinstance(prov.get("noise"), Mapping) else None
    return RunContext(name, np.asarray(y), op, str(prov["method"]), params,
                      int(prov.get("seed") or 0), mode, noise, np.asarray(x), prov)


def run_quality_steps(run: RunInfo | Mapping | RunContext, result: Any = None, *,
                      measurement: Any = None, estimator: str = "auto", folds: int = FOLDS,
                      probes: int = PROBES, estimate_seed: int = ESTIMATE_SEED,
                      sigma: float | None = None, cancel: threading.Event | None = None
                      ) -> Generator[tuple[int, int], None, QualityEstimate]:
    """Estimate a finished run (see :func:`run_context` for ``run``, ``result`` and
    ``measurement``): :func:`~.quality.quality_steps` with the run's recorded method,
    params, seed, normalisation and noise, and its result as ``x_hat``. Yields
    ``(done, total)``, returns the :class:`~.quality.QualityEstimate`."""
    ctx = run if isinstance(run, RunContext) else run_context(run, result,
                                                               measurement=measurement)
    return (yield from quality_steps(
        ctx.y, ctx.op, ctx.method, ctx.params, seed=ctx.seed, x_hat=ctx.x_hat, sigma=sigma,
        noise=ctx.noise, estimator=estimator, folds=folds, probes=probes,
        normalise=ctx.normalise, estimate_seed=estimate_seed, cancel=cancel))


def threaded_steps(fn: Any, *args: Any, threads: int | None = None, **kwargs: Any
                   ) -> Generator[Any, None, Any]:
    """The generator ``fn(*args, **kwargs)`` run with ``threads`` torch CPU threads
    (:func:`~.device.torch_threads`; ``None``: unchanged), as :func:`~.runner.run` runs a
    method: the GUI passes :func:`~.device.gui_thread_budget` for the searches
    (:func:`~.autotune.autotune_steps`, :func:`~.ranking.best_steps`), whose many small runs
    otherwise lose most of their time to OpenMP threads waiting for a busy core."""
    with torch_threads(threads):
        return (yield from fn(*args, **kwargs))


# ----------------------------------------------------------------------------- records
def quality_record(est: QualityEstimate, *, folds: int = FOLDS, probes: int = PROBES,
                   estimate_seed: int = ESTIMATE_SEED) -> dict:
    """The provenance's ``"quality"`` entry: :meth:`~.quality.QualityEstimate.as_dict` plus
    the ``settings`` it was made with (estimates with equal settings are paired)."""
    return {**est.as_dict(), "settings": {"folds": int(folds), "probes": int(probes),
                                          "estimate_seed": int(estimate_seed)}}


def estimate_from_dict(d: Any) -> QualityEstimate | None:
    """The :class:`~.quality.QualityEstimate` of a stored record (``None`` if malformed)."""
    if not isinstance(d, Mapping):
        return None
    names = [f.name for f in dataclasses.fields(QualityEstimate)]
    kw = {k: d[k] for k in names if k in d}
    for k in ("mse", "mse_se", "psnr", "psnr_se", "peak", "score"):
        kw[k] = math.nan if kw.get(k) is None else kw[k]
    try:
        est = QualityEstimate(**kw)
        est.values = [float(v) for v in (est.values or [])]
        if not isinstance(est.estimator, str) or not math.isfinite(float(est.score)):
            return None
    except (TypeError, ValueError):
        return None
    return est


def stored_estimate(provenance: Mapping | None, estimator: str | None = None, *,
                    folds: int = FOLDS, probes: int = PROBES,
                    estimate_seed: int = ESTIMATE_SEED) -> QualityEstimate | None:
    """The estimate stored in ``provenance["quality"]``, if any (and, with ``estimator``, only
    if it was made with that estimator and the given settings; a record without settings,
    e.g. from the API, counts as made with them)."""
    rec = (provenance or {}).get("quality")
    est = estimate_from_dict(rec)
    if est is None or estimator is None:
        return est
    settings = rec.get("settings")
    same = settings is None or (isinstance(settings, Mapping) and settings == {
        "folds": folds, "probes": probes, "estimate_seed": estimate_seed})
    return est if est.estimator == estimator and same else None


def short_label(est: QualityEstimate) -> str:
    """Table text of an estimate: ``31.2 ± 0.4 dB``, or ``score 0.0123 (rel.)`` when its
    level is unknown (lower is better)."""
    if est.absolute and math.isfinite(est.psnr):
        return f"{est.psnr:.1f} ± {est.psnr_se:.1f} dB"
    peak = est.peak if est.peak and math.isfinite(est.peak) else 1.0
    return f"score {est.score / peak ** 2:.3g} (rel.)"


# ----------------------------------------------------------------------------- ranking
@dataclass
class RankTick:
    """Progress of :func:`rank_runs_steps`: run ``run`` of ``runs`` (1-based), step ``done``
    of ``total`` of its estimate; ``estimate`` (and ``record``, for the provenance) once it is
    finished, ``reused`` when it was read from the provenance."""

    run: int
    runs: int
    name: str
    done: int
    total: int
    estimate: QualityEstimate | None = None
    record: dict | None = None
    reused: bool = False


@dataclass
class RunRanking:
    """Runs of one measurement, best first by estimated error.

    Attributes
    ----------
    names
        Run names, best first.
    estimates
        Name -> estimate.
    confidence
        ``confidence[i]``: probability that run ``i`` really beats run ``i + 1``.
    estimator
        The one estimator used.
    reused
        Names whose estimate was read from their provenance.
    """

    names: list[str]
    estimates: dict[str, QualityEstimate]
    confidence: list[float]
    estimator: str
    reused: list[str] = field(default_factory=list)

    def line(self) -> str:
        """One line for the Compare dock (:func:`ranking_line`)."""
        return ranking_line([(n, self.estimates[n]) for n in self.names])


def ranking_line(entries: Sequence[tuple[str, QualityEstimate]]) -> str:
    """``"estimated order (splitting, no ground truth): A > B (87 % sure) > C (99 % sure)"``
    for ``(name, estimate)`` pairs best first (each percentage: how sure the run before is
    better); empty for no entries."""
    if not entries:
        return ""
    kinds = sorted({e.estimator for _, e in entries})
    parts = [entries[0][0]]
    for (_, a), (name, b) in zip(entries, entries[1:]):
        parts.append(f"{name} ({paired_confidence(a, b):.0%} sure)")
    return f"estimated order ({'/'.join(kinds)}, no ground truth): " + " > ".join(parts)


def winner_line(ranking: Any) -> str:
    """What Best for this data chose and how sure it is, from an
    :class:`~.ranking.Ranking`: ``"best for this data: dpir denoiser=... (est. 31.2 dB),
    87 % sure it beats pnp-admm ... (30.1 dB)"``."""
    best = ranking.best
    text = f"best for this data: {best.label()} ({short_label(best.estimate)})"
    if ranking.chosen > 0 and best.method == FLOOR:
        top = ranking.trials[0]
        text += (f": no candidate beats it with {FLOOR_CONFIDENCE:.0%} confidence "
                 f"({top.label()}: {ranking.beats_floor[0]:.0%})")
    elif ranking.chosen > 0:
        text += (f", {ranking.beats_floor[ranking.chosen]:.0%} sure it beats the {FLOOR} "
                 f"(the {ranking.chosen} ranked above it are less than "
                 f"{FLOOR_CONFIDENCE:.0%} sure)")
    elif len(ranking.trials) > 1 and ranking.confidence:
        nxt = ranking.trials[1]
        text += (f", {ranking.confidence[0]:.0%} sure it beats {nxt.label()} "
                 f"({short_label(nxt.estimate)})")
    return f"{text}; {len(ranking.trials)} candidates, {best.estimate.estimator}"


def rank_runs_steps(runs: Sequence[RunInfo | RunContext], *, estimator: str = "auto",
                    folds: int = FOLDS, probes: int = PROBES,
                    estimate_seed: int = ESTIMATE_SEED, reuse: bool = True,
                    threads: int | None = None, cancel: threading.Event | None = None
                    ) -> Generator[RankTick, None, RunRanking]:
    """Estimate each run of one measurement with one estimator and order them.

    Parameters
    ----------
    runs
        The runs (contexts are built with :func:`run_context`).
    estimator
        ``auto``: :func:`~.quality.common_estimator`.
    folds, probes, estimate_seed
        As for :func:`~.quality.quality_steps`; the same for every run (paired estimates).
    reuse
        Take a run's stored estimate (:func:`stored_estimate`) when it was made with the same
        estimator and settings.
    threads
        Torch CPU threads during the estimates (``None``: unchanged).
    cancel
        Stops before the next step of any re-run.

    Yields
    ------
    RankTick
        After every step of every estimate, and once per finished run (with its estimate).

    Raises
    ------
    InputError
        No run, runs of different measurements, or a run that cannot be rebuilt.
    """
    if not runs:
        raise InputError("no runs to rank: make runs in Reconstruct first")
    with torch_threads(threads):
        return (yield from _rank(runs, estimator, folds, probes, estimate_seed, reuse, cancel))


def _rank(runs: Sequence, estimator: str, folds: int, probes: int, estimate_seed: int,
          reuse: bool, cancel: threading.Event | None) -> Generator[RankTick, None, RunRanking]:
    ctxs = [r if isinstance(r, RunContext) else run_context(r) for r in runs]
    prints = {c.fingerprint for c in ctxs}
    if len(prints) > 1:
        raise InputError(f"the runs are of {len(prints)} different measurements; select the "
                         "runs of one measurement in the table and Rank again")
    est_name = common_estimator([(c.op, c.method, c.noise) for c in ctxs]) \
        if estimator == "auto" else estimator
    settings = {"folds": folds, "probes": probes, "estimate_seed": estimate_seed}
    estimates: dict[str, QualityEstimate] = {}
    reused: list[str] = []
    n = len(ctxs)
    for i, ctx in enumerate(ctxs, start=1):
        est = stored_estimate(ctx.provenance, est_name, **settings) if reuse else None
        if est is not None:
            reused.append(ctx.name)
            estimates[ctx.name] = est
            yield RankTick(i, n, ctx.name, 1, 1, est, None, True)
            continue
        gen = run_quality_steps(ctx, estimator=est_name, cancel=cancel, **settings)
        while True:
            try:
                done, total = next(gen)
            except StopIteration as stop:
                est = stop.value
                break
            yield RankTick(i, n, ctx.name, done, total)
        estimates[ctx.name] = est
        yield RankTick(i, n, ctx.name, total, total, est, quality_record(est, **settings))
    names = sorted(estimates, key=lambda k: estimates[k].score)
    conf = [paired_confidence(estimates[a], estimates[b]) for a, b in zip(names, names[1:])]
    return RunRanking(names, estimates, conf, est_name, reused)
