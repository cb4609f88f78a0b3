r"""Choose hyperparameters and methods from the measurement alone.

The search minimises the ground-truth-free error estimate of :mod:`.quality` (the same
folds and probes for every trial, so differences between trials are paired; ranking methods
against each other is :mod:`.ranking`):

* :func:`autotune_steps` searches a method's main hyperparameters (:data:`TUNABLE`): a
  continuous strength on a log scale, first on a coarse grid of :data:`COARSE` points spanning
  :data:`SPAN` decades around the default (extended outwards while the best point sits on an
  edge), then by golden-section search inside the best point's bracket, and its last trial at
  the minimum of a parabola fitted to the scores nearest the best (the estimate's noise
  averaged over them: :func:`_smoothed_minimum`), which is the choice; a network choice
  (``denoiser``) is searched as a category, each option with its share of the budget.
It is a generator yielding a :class:`Trial` record after every trial, like any run, and
returns an :class:`AutotuneResult`.
"""

from __future__ import annotations

import dataclasses
import math
import threading
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..core.errors import InputError
from ..core.methods import get_method
from ..core.params import make_params
from .execute import drain
from .quality import (
    FOLDS,
    PROBES,
    QualityEstimate,
    quality_steps,
)

__all__ = ["TUNABLE", "COARSE", "SPAN", "Trial", "AutotuneResult", "tunable_fields",
           "autotune_steps", "field_choices"]

#: the main hyperparameters searched per method: a continuous strength (log scale) and, where
#: the method has one, its network
TUNABLE: dict[str, tuple[str, ...]] = {
    "tv-fista": ("lam",), "tv-admm": ("lam",), "tv-pdhg": ("lam",), "wavelet-fista": ("lam",),
    "tikhonov": ("lam",), "sense-cg": ("lam",), "wiener": ("nsr",), "langevin-tv": ("lam",),
    "blind-deconv": ("lam",), "richardson-lucy": ("iters",), "sirt": ("iters",),
    "dip": ("iters",), "deep-decoder": ("channels",), "csgm": ("lam",),
    "pnp-admm": ("denoiser", "sigma"), "pnp-pgd": ("denoiser", "sigma"),
    "red": ("denoiser", "lam"), "dpir": ("denoiser", "sigma"),
    "diffpir": ("denoiser", "lam"), "dps": ("denoiser", "zeta"), "ddrm": ("denoiser", "eta"),
    "score-dc": ("denoiser", "dc_weight"),
}
COARSE = 5
SPAN = 3.0
_GOLD = (math.sqrt(5) - 1) / 2


@dataclass
class Trial:
    """One scored candidate."""

    index: int
    budget: int
    method: str
    values: dict
    estimate: QualityEstimate
    params: Any = None

    def label(self) -> str:
        vals = ", ".join(f"{k}={_fmt(v)}" for k, v in self.values.items())
        return f"{self.method} {vals}".strip()


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


@dataclass
class AutotuneResult:
    """Outcome of :func:`autotune_steps`: the chosen values (applied to the given params in
    ``params``), their estimate, and every trial."""

    method: str
    params: Any
    values: dict
    estimate: QualityEstimate
    trials: list[Trial]

    def as_dict(self) -> dict:
        """Plain-JSON record (stored in the provenance under ``"autotune"``)."""
        return {"method": self.method, "chosen": dict(self.values),
                "estimator": self.estimate.estimator,
                "estimate": self.estimate.label(),
                "trials": [{"values": dict(t.values), "score": t.estimate.score}
                           for t in self.trials]}


def tunable_fields(method: str) -> tuple[str, ...]:
    """The fields :func:`autotune_steps` searches for ``method`` (empty: nothing to tune)."""
    return TUNABLE.get(method, ())


def _field(params_cls: type, name: str) -> dataclasses.Field:
    return {f.name: f for f in dataclasses.fields(params_cls)}[name]


def field_choices(params_cls: type, name: str) -> list:
    ch = _field(params_cls, name).metadata.get("choices")
    return list(ch() if callable(ch) else ch or [])


def _grid(f: dataclasses.Field, centre: float, lo_dec: float, hi_dec: float, n: int) -> list:
    lo_b, hi_b = f.metadata.get("min"), f.metadata.get("max")
    pts = []
    for i in range(n):
        v = centre * 10 ** (lo_dec + (hi_dec - lo_dec) * i / max(n - 1, 1))
        pts.append(v)
    return [_clip(f, v, lo_b, hi_b) for v in pts]


def _clip(f: dataclasses.Field, v: float, lo: Any, hi: Any) -> Any:
    if lo is not None and lo > 0:
        v = max(v, lo)
    if hi is not None:
        v = min(v, hi)
    if f.type in (int, "int"):
        return max(1, int(round(v)))
    return float(v)


def _smoothed_minimum(scored: dict) -> float | None:
    r"""The minimum of a parabola in :math:`t = \log_{10} v` fitted by least squares to the
    (at most five) scored points nearest the best one, clipped to their span; ``None`` when
    fewer than four points or the parabola is not convex.

    Near its optimum an estimate's curve is flat and its Monte-Carlo noise comparable to the
    differences between neighbours: the fitted minimum averages that noise over the points,
    where the smallest single score would chase it.
    """
    xs = sorted(v for v in scored if v > 0)
    if len(xs) < 4:
        return None
    i = xs.index(min(xs, key=scored.get))
    lo = max(0, min(i - 2, len(xs) - 5))
    pts = xs[lo:lo + 5]
    t = [math.log10(v) for v in pts]
    a, b, _ = np.polyfit(t, [scored[v] for v in pts], 2)
    if not a > 0:
        return None
    return 10 ** min(max(-b / (2 * a), t[0]), t[-1])


def autotune_steps(y: Any, op: Any, method: str, params: Any = None, *, budget: int = 10,
                   seed: int = 0, noise: dict | None = None, sigma: float | None = None,
                   estimator: str = "auto", folds: int = FOLDS, probes: int = PROBES,
                   normalise: str = "auto", cancel: threading.Event | None = None,
                   fields: tuple[str, ...] | None = None
                   ) -> Generator[Trial, None, AutotuneResult]:
    """Search ``method``'s main hyperparameters for the lowest estimated error on ``y``.

    Parameters
    ----------
    y, op, method
        The measurement, operator and method.
    params
        Starting params (instance, mapping or ``None``: defaults); fields not searched keep
        their values.
    budget
        Candidates to score (each costs one run plus the estimate's extra runs).
    seed, normalise
        The runs' seed and normalisation.
    noise, sigma, estimator, folds, probes
        As for :func:`~.quality.quality_steps`.
    fields
        Fields to search (default :func:`tunable_fields`).

    Raises
    ------
    InputError
        A method with nothing to tune, or a budget below 3.
    """
    from .execute import method_params_for

    p0 = method_params_for(method, op, params)
    spec = get_method(method, op.name)
    names = tuple(fields) if fields is not None else tunable_fields(method)
    if not names:
        raise InputError(f"{method} has no hyperparameter to tune; rank it against other "
                         "methods instead")
    budget = int(budget)
    if budget < 3:
        raise InputError(f"autotune needs a budget of at least 3 trials, got {budget}")
    cont = [n for n in names if not field_choices(spec.params, n)]
    cats = [n for n in names if field_choices(spec.params, n)]
    options = field_choices(spec.params, cats[0]) if cats else [None]
    if cats and len(options) > max(1, budget // 3):
        start = getattr(p0, cats[0])
        options = [start] + [o for o in options if o != start][:max(0, budget // 3 - 1)]
    trials: list[Trial] = []
    cache: dict[tuple, Trial] = {}

    def score(values: dict) -> Generator[Trial, None, Trial]:
        key = tuple(sorted(values.items()))
        if key in cache:
            return cache[key]
        p = make_params(spec.params, **{**dataclasses.asdict(p0), **values})
        est = drain(quality_steps(
            y, op, method, p, seed=seed, noise=noise, sigma=sigma, estimator=estimator,
            folds=folds, probes=probes, normalise=normalise, cancel=cancel))
        t = Trial(len(trials) + 1, budget, method, dict(values), est, p)
        trials.append(t)
        cache[key] = t
        yield t
        return t

    share = max(3, budget // len(options))
    chosen: dict[Any, Trial] = {}
    for opt in options:
        fixed = {cats[0]: opt} if opt is not None else {}
        if not cont:
            yield from score(fixed)
            continue
        name = cont[0]
        f = _field(spec.params, name)
        centre = float(getattr(p0, name)) or 1e-2
        left = share
        pts = _grid(f, centre, -SPAN / 2, SPAN / 2, min(COARSE, left))
        scored: dict[Any, float] = {}
        for v in pts:
            if len(trials) >= budget:
                break
            t = yield from score({**fixed, name: v})
            scored[v] = t.estimate.score
        left = share - len(scored)
        step = SPAN / max(min(COARSE, share) - 1, 1)
        # extend outwards while the best sits on an edge
        while left > 0 and len(trials) < budget:
            xs = sorted(scored)
            best = min(scored, key=scored.get)
            if best not in (xs[0], xs[-1]):
                break
            v = _clip(f, best * 10 ** (step if best == xs[-1] else -step),
                      f.metadata.get("min"), f.metadata.get("max"))
            if v in scored:
                break
            t = yield from score({**fixed, name: v})
            scored[v] = t.estimate.score
            left -= 1
        # golden-section refinement in log space inside the best bracket (one trial kept
        # for the smoothed minimum when there are enough)
        fit = left >= 2
        left -= int(fit)
        while left > 0 and len(trials) < budget:
            xs = sorted(scored)
            i = xs.index(min(scored, key=scored.get))
            a = xs[max(i - 1, 0)]
            b = xs[min(i + 1, len(xs) - 1)]
            la, lb, lbest = (math.log10(max(v, 1e-30)) for v in (a, b, xs[i]))
            far = la if lbest - la >= lb - lbest else lb  # the wider side of the bracket
            v = _clip(f, 10 ** (lbest + (1 - _GOLD) * (far - lbest)),
                      f.metadata.get("min"), f.metadata.get("max"))
            left -= 1
            if v in scored:
                break
            t = yield from score({**fixed, name: v})
            scored[v] = t.estimate.score
        vertex = _smoothed_minimum(scored) if fit and len(trials) < budget else None
        if vertex is not None:
            v = _clip(f, vertex, f.metadata.get("min"), f.metadata.get("max"))
            chosen[opt] = yield from score({**fixed, name: v})
    best = min(trials, key=lambda t: t.estimate.score)
    if chosen:  # the smoothed minimum of the option whose trials scored best
        best = chosen.get(best.values.get(cats[0]) if cats else None, best)
    p_best = make_params(spec.params, **{**dataclasses.asdict(p0), **best.values})
    return AutotuneResult(method, p_best, dict(best.values), best.estimate, trials)
