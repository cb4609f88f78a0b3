r"""Rank candidate runs on one measurement and choose among them, from the measurement alone.

:func:`rank_steps` scores candidate runs (methods at their defaults or tuned by
:func:`~.autotune.autotune_steps`) with one ground-truth-free estimator (:mod:`.quality`; the
same folds and probes for every candidate, so differences are paired), orders them by
estimated error and says how sure each step of the order is
(:func:`~.quality.paired_confidence`). Where the adjoint (the measurement itself, the floor)
is a candidate, the choice is the best-estimated candidate that beats it with confidence at
least :data:`FLOOR_CONFIDENCE`, else the floor: a prior is not trusted over the data on a
near-tie. :func:`best_steps` is "best for this data": the operator's default method tuned,
then ranked against the learned methods and the floor.

Both are generators yielding a :class:`~.autotune.Trial` after every candidate, like any run,
and return a :class:`Ranking`.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any

from ..core.errors import InputError
from ..core.methods import get_method
from .autotune import Trial, autotune_steps, field_choices, tunable_fields
from .execute import drain
from .noise_level import noise_values, run_units_level
from .quality import FOLDS, PROBES, common_estimator, noise_level, paired_confidence, quality_steps

__all__ = ["FLOOR", "FLOOR_CONFIDENCE", "LEARNED_CANDIDATES", "Ranking", "rank_steps",
           "candidates_for", "best_steps"]

#: how sure the estimate must be that a candidate beats the floor (the adjoint) to choose it:
#: on 4x MRI of a periodic texture (brick, 64 px) ``dpir`` was estimated better than the
#: zero-filled image with 83 % confidence and was 0.12 dB worse
FLOOR_CONFIDENCE = 0.9
#: the candidate every ranking is measured against when it is among the candidates
FLOOR = "adjoint"


@dataclass
class Ranking:
    """Outcome of :func:`rank_steps`: candidates best first, with the confidence that each is
    better than the next, and the choice.

    Attributes
    ----------
    trials
        Candidates ordered by estimated error, best first.
    confidence
        ``confidence[i]``: how sure the estimate is that ``trials[i]`` beats ``trials[i + 1]``.
    chosen
        Index in :attr:`trials` of the choice (:attr:`best`): the first trial that beats the
        floor (:data:`FLOOR`) with confidence at least :data:`FLOOR_CONFIDENCE`, else the
        floor; 0 when the floor is not a candidate.
    beats_floor
        Per trial ranked above the floor, how sure the estimate is that it beats the floor
        (empty without a floor).
    """

    trials: list[Trial]
    confidence: list[float] = field(default_factory=list)
    chosen: int = 0
    beats_floor: list[float] = field(default_factory=list)

    @property
    def best(self) -> Trial:
        return self.trials[self.chosen]

    def as_dict(self) -> dict:
        """Plain-JSON record (stored in the provenance under ``"ranking"``)."""
        return {"order": [{"method": t.method, "values": dict(t.values),
                           "estimate": t.estimate.label(), "score": t.estimate.score}
                          for t in self.trials],
                "confidence": list(self.confidence),
                "chosen": self.chosen,
                "beats_floor": list(self.beats_floor),
                "estimator": self.trials[0].estimate.estimator if self.trials else None}

    def summary(self) -> str:
        parts = []
        for i, t in enumerate(self.trials):
            c = f" ({self.confidence[i]:.0%} sure it beats the next)" \
                if i < len(self.confidence) else ""
            mark = " [chosen]" if i == self.chosen and self.beats_floor else ""
            parts.append(f"{i + 1}. {t.label()}: {t.estimate.label()}{c}{mark}")
        return "; ".join(parts)


def rank_steps(y: Any, op: Any, candidates: list, *, seed: int = 0, noise: dict | None = None,
               sigma: float | None = None, estimator: str = "auto", folds: int = FOLDS,
               probes: int = PROBES, normalise: str = "auto",
               cancel: threading.Event | None = None
               ) -> Generator[Trial, None, Ranking]:
    """Score each candidate run and order them by estimated error.

    Parameters
    ----------
    candidates
        Method names, or ``(method, params)`` pairs (params: instance, mapping or ``None``).
    Others
        As for :func:`~.quality.quality_steps` (one estimator for all candidates, so that
        their estimates compare).

    Raises
    ------
    InputError
        No candidate, or a candidate method that does not support the operator.
    """
    from .execute import method_params_for
    if not candidates:
        raise InputError("rank needs at least one candidate method")
    pairs = [(c, None) if isinstance(c, str) else tuple(c) for c in candidates]
    resolved = [(m, method_params_for(m, op, p)) for m, p in pairs]
    if estimator == "auto":  # one estimator for every candidate: their estimates compare
        estimator = common_estimator([(op, m, noise) for m, _ in resolved])
    trials = []
    for i, (m, p) in enumerate(resolved):
        est = drain(quality_steps(
            y, op, m, p, seed=seed, noise=noise, sigma=sigma, estimator=estimator,
            folds=folds, probes=probes, normalise=normalise, cancel=cancel))
        values = {k: v for k, v in dataclasses.asdict(p).items()
                  if k in tunable_fields(m)}
        t = Trial(i + 1, len(resolved), m, values, est, p)
        trials.append(t)
        yield t
    order = sorted(trials, key=lambda t: t.estimate.score)
    conf = [paired_confidence(a.estimate, b.estimate) for a, b in zip(order, order[1:])]
    return Ranking(order, conf, *_floor_choice(order))


def _floor_choice(order: list[Trial]) -> tuple[int, list[float]]:
    """``(chosen, beats_floor)`` of a :class:`Ranking` ordered best first."""
    floor = next((i for i, t in enumerate(order) if t.method == FLOOR), None)
    if floor is None:
        return 0, []
    sure = [paired_confidence(t.estimate, order[floor].estimate) for t in order[:floor]]
    chosen = next((i for i, c in enumerate(sure) if c >= FLOOR_CONFIDENCE), floor)
    return chosen, sure


#: learned methods "best for this data" tries at their defaults, with every installed network
LEARNED_CANDIDATES = ("pnp-admm", "dpir")


def candidates_for(op: Any, level: float | None = None) -> list[tuple[str, dict]]:
    """The learned candidates of :func:`best_steps` for ``op``: each of
    :data:`LEARNED_CANDIDATES` the operator supports, once per installed denoiser (but the
    slow ones, :data:`~..core.denoisers.SLOW_DENOISERS`), with their noise-level fields
    (``dpir``'s ``sigma``, ``pnp-admm``'s ``noise``) set to ``level`` when it is known (the
    noise std in the units the run works in), as the Reconstruct dock sets them."""
    from ..core.denoisers import SLOW_DENOISERS

    out = []
    for m in LEARNED_CANDIDATES:
        spec = get_method(m)
        if not spec.supports(op.name):
            continue
        fill = noise_values(spec.params, level) if level else {}
        for d in [d for d in field_choices(spec.params, "denoiser") or [None]
                  if d not in SLOW_DENOISERS]:
            out.append((m, {**fill, **({} if d is None else {"denoiser": d})}))
    return out


def best_steps(y: Any, op: Any, *, budget: int = 8, seed: int = 0, noise: dict | None = None,
               sigma: float | None = None, folds: int = FOLDS, probes: int = PROBES,
               normalise: str = "auto", cancel: threading.Event | None = None
               ) -> Generator[Trial, None, Ranking]:
    """"Best for this data": tune the operator's default method (``budget`` candidates), then
    rank it against :func:`candidates_for` and the adjoint (the floor: a choice never below
    the measurement) with one estimator. Yields every trial of both stages."""
    from ..core.methods.registry import default_method

    cands: list = []
    first = default_method(op.name)
    if first is not None and tunable_fields(first):
        tuned = yield from autotune_steps(y, op, first, budget=budget, seed=seed, noise=noise,
                                          sigma=sigma, folds=folds, probes=probes,
                                          normalise=normalise, cancel=cancel)
        cands.append((first, tuned.params))
    elif first is not None:
        cands.append((first, None))
    level, _ = noise_level(y, op, sigma, noise)
    cands += candidates_for(op, None if level is None else
                            run_units_level(y, op, level, normalise))
    if get_method("adjoint").supports(op.name):
        cands.append(("adjoint", None))
    return (yield from rank_steps(y, op, cands, seed=seed, noise=noise, sigma=sigma,
                                  folds=folds, probes=probes, normalise=normalise,
                                  cancel=cancel))
