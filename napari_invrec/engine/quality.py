r"""How good is a run, judged from its measurement alone (no ground truth).

:func:`quality_steps` re-runs a method on perturbed or partial copies of the measurement and
turns what it sees into a :class:`QualityEstimate` with the estimators of
:mod:`napari_invrec.core.analysis.risk`. Which estimator a run gets (``estimator="auto"``):

* ``"thinning"``: methods with a Poisson likelihood on count data whose photon count is known
  (binomial thinning, prediction error);
* ``"splitting"``: operators whose measurement is a subset of samples (:data:`SPLITTABLE`:
  inpainting masks, k-space lines, compressed-sensing rows). ``folds`` disjoint random subsets
  of the measured samples (whole k-space columns, outside the fully sampled centre) are held
  out in turn, the method re-runs on the rest, and the result predicts the held-out samples:
  the error where the run saw no data, which no residual shows. With GSURE for the measured
  samples (dense random CS rows need none) it adds up to an image-domain MSE
  (:mod:`napari_invrec.engine.splitting`);
* ``"rescaled"``: super-resolution (:data:`RESCALABLE`, measurements of at least 16 px a
  side at factor 2): GSURE plus the null-space error of the same method one scale down, where
  the measurement is the answer (:mod:`napari_invrec.engine.rescaling`; it assumes the image
  is self-similar across scales);
* ``"gsure"``: every other linear operator (blur, CT, lensless, denoising): generalised SURE
  of the image error weighted by :math:`(A^HA+\delta)^{-1}A^HA`, blind only to what the
  operator removes. Its :data:`PROBES` Monte-Carlo probes run as one batch (a deterministic
  method), with the measurement itself as the batch's first element;
* ``"sure"``: non-linear operators (prediction error of the measurement).

The method re-runs with the run's parameters, seed and normalisation held fixed (the map
:math:`y \mapsto \hat x` whose risk is estimated is the method in the run's units). The noise
std comes from the caller, the run's recorded simulation, or
:func:`~napari_invrec.engine.noise_level.noise_estimate` (and says which).

Every estimate is also given as an *estimated PSNR*: :math:`10\log_{10}(R^2/\widehat{\rm MSE})`
with :math:`R` the robust range of the image the measurement implies
(:func:`measurement_peak`), the same for every run on one measurement, so estimated PSNRs of
runs on the same data compare like PSNRs do.
"""

from __future__ import annotations

import dataclasses
import math
import threading
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..core.analysis import risk
from ..core.cancel import cancel_point, cancellable
from ..core.errors import CancelledError, InputError
from ..core.methods import get_method
from .execute import drain
from .noise_level import noise_estimate
from .normalise import Normalisation, method_normalisation, plan_normalisation
from .rescaling import RESCALABLE, rescalable, rescaled_estimate
from .runner import prepare_measurement
from .splitting import SPLITTABLE, split_estimate, stacked_map

__all__ = ["ESTIMATORS", "RESCALABLE", "SPLITTABLE", "QualityEstimate", "choose_estimator",
           "common_estimator",
           "measurement_peak", "reconstruction_map", "quality_steps", "estimate_quality",
           "paired_confidence", "noise_level", "FOLDS", "PROBES"]

#: held-out folds of measurement splitting everywhere (estimate, autotune, rank, GUI): each
#: fold keeps (K-1)/K of the measured samples, and with fewer samples a method's error favours
#: stronger regularisation; with 3 folds the autotuned TV weight of a textured 50 % inpainting
#: (brick, 64 px) was 20x the oracle's, with 5 it lands at the oracle's
FOLDS = 5

#: Monte-Carlo probes of (G)SURE everywhere, run as one batch for a deterministic method
#: (about 1.5 runs' time at 64 px): with one or two the divergence's noise outweighed the
#: differences between runs on a lensless camera (Spearman against the true PSNR over 11
#: runs of a 64 px brick texture 0.66 with 2 probes, 0.88 with 8)
PROBES = 8

ESTIMATORS = ("auto", "splitting", "rescaled", "gsure", "sure", "recorrupted", "thinning")

_WHAT = {
    "splitting": "error at measurements the run did not see (held-out folds)",
    "rescaled": "generalised SURE plus the null-space error one scale down",
    "gsure": "image error weighted by what the operator passes (generalised SURE)",
    "sure": "error of the predicted clean measurement (SURE)",
    "recorrupted": "prediction error at a higher noise level (recorrupted pairs)",
    "thinning": "prediction error at part of the dose (Poisson thinning)",
}


@dataclass
class QualityEstimate:
    r"""A run's estimated error, from its measurement alone.

    Attributes
    ----------
    estimator
        ``"splitting"``, ``"gsure"``, ``"sure"``, ``"recorrupted"`` or ``"thinning"``.
    kind
        What the MSE is of (see :mod:`napari_invrec.core.analysis.risk`).
    mse, mse_se
        Estimated mean squared error per sample (data units squared) and its standard error.
    psnr, psnr_se
        The same as an estimated PSNR in dB (peak :attr:`peak`) and its standard error; NaN
        when the estimate is not :attr:`absolute`.
    absolute
        Whether the MSE's level is known to about 1 dB. GSURE's level includes a constant
        :math:`\widehat{x^HWx}` shared by every run on ``y``; where its noise (``constant_se``
        in :attr:`details`) exceeds a quarter of the estimate, the estimate still orders runs
        (:attr:`score`) but says nothing about their absolute error.
    score
        What runs on the same measurement are ordered by (lower is better): the MSE, or for a
        non-absolute GSURE its run-dependent part (MSE minus the shared constant).
    peak
        :func:`measurement_peak` of the measurement.
    sigma, sigma_source
        Noise std used (data units) and where it came from: ``given``, ``recorded``
        (the run's simulation), ``estimated`` (from the data) or ``none``.
    discrepancy
        :math:`\\|A\\hat x - y\\|^2/(m\\sigma^2)` of the run (about 1 when it fits the data to
        the noise; ``None`` without a noise level).
    values
        The per-fold / per-probe estimates (MSE), for paired comparisons of runs.
    evaluations
        Extra runs of the method the estimate cost.
    details
        Estimator figures.
    """

    estimator: str
    kind: str
    mse: float
    mse_se: float
    psnr: float
    psnr_se: float
    peak: float
    absolute: bool
    score: float
    sigma: float | None
    sigma_source: str
    discrepancy: float | None
    values: list[float] = field(default_factory=list)
    evaluations: int = 0
    details: dict = field(default_factory=dict)

    @property
    def what(self) -> str:
        """One line saying what the estimate measures."""
        return _WHAT.get(self.estimator, self.kind)

    def summary(self) -> str:
        """One line for a status label or a table cell tooltip."""
        sig = "" if self.sigma is None else f", noise {self.sigma:.3g} ({self.sigma_source})"
        return f"{self.label()}: {self.what}{sig}"

    def label(self) -> str:
        """Short display value: ``est. 31.2 ± 0.4 dB``, or the relative score."""
        if self.absolute:
            return f"est. {self.psnr:.2f} ± {self.psnr_se:.2f} dB"
        return f"score {self.score / self.peak ** 2:.6g} (lower is better, level unknown)"

    def as_dict(self) -> dict:
        """Plain-JSON record (stored in the provenance under ``"quality"``)."""
        d = dataclasses.asdict(self)
        d["what"] = self.what
        return _jsonable(d)


def _jsonable(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, (np.floating, np.integer)):
        return v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def choose_estimator(op: Any, method: str, *, photons: float | None = None) -> str:
    """The estimator ``estimator="auto"`` picks for ``method`` on ``op`` (module docstring)."""
    spec = get_method(method, op.name)
    if spec.likelihood == "poisson" and photons:
        return "thinning"
    if op.name in SPLITTABLE:
        return "splitting"
    if rescalable(op):
        return "rescaled"
    if getattr(op, "linear", False):
        return "gsure"
    return "sure"


def common_estimator(runs: list[tuple[Any, str, dict | None]]) -> str:
    """One estimator for several runs ``(op, method, noise)`` on one measurement, so that
    their estimates compare: the one each would get (:func:`choose_estimator`), else ``gsure``
    (every operator linear) or ``sure``."""
    kinds = {choose_estimator(op, m, photons=_photons(noise, None)) for op, m, noise in runs}
    if len(kinds) == 1:
        return kinds.pop()
    return "gsure" if all(getattr(op, "linear", False) for op, _, _ in runs) else "sure"


def measurement_peak(y_t: torch.Tensor, op: Any) -> float:
    """The intensity range :math:`R` of the image ``y`` implies: the robust range of
    :math:`A^Hy/A^HA\\mathbf 1` where the operator keeps signs (the run normalisation's scale),
    else of the pseudo-inverse :math:`A^+y`; 1 for a non-linear operator."""
    if not getattr(op, "linear", False):
        return 1.0
    norm = plan_normalisation(y_t, op, "on")
    with torch.no_grad():
        ones = torch.ones((1, 1, *op.shape), dtype=op.image_dtype, device=op.device)
        a1 = op.A(ones)
    signed = not a1.is_complex() and float(a1.min()) < -1e-6 * float(a1.abs().max())
    if norm.applied and not signed:
        return float(norm.scale)
    with torch.no_grad():
        xp = op.A_pinv(y_t)[0, 0]
    xp = (xp.abs() if xp.is_complex() else xp).detach().cpu().double().numpy()
    lo, hi = np.percentile(xp, [0.5, 99.5])
    return float(hi - lo) if hi > lo else 1.0


def reconstruction_map(op: Any, method: str, params: Any, *, seed: int = 0,
                       norm: Normalisation | None = None,
                       cancel: threading.Event | None = None
                       ) -> Callable[..., torch.Tensor]:
    """``f(y, op=op) -> x_hat``: ``method`` run to its end on the measurement tensor ``y``
    with fixed ``params``, ``seed`` and normalisation ``norm`` (data units in and out), the
    deterministic map whose error the estimators score. ``op`` may be swapped for a reduced
    operator (a fold), ``whole=True`` returns every batch element (folds run as one batch).
    Checks ``cancel`` between steps."""
    spec = get_method(method, op.name)
    norm = norm or Normalisation("off", False)

    def f(y: torch.Tensor, op_: Any = op, whole: bool = False) -> torch.Tensor:
        gen = torch.Generator(device=op_.device).manual_seed(int(seed))
        it = spec.fn(norm.measurement(y, op_), op_, params, x0=None, generator=gen)
        state = None
        try:
            with torch.no_grad(), cancellable(cancel):
                while True:
                    cancel_point()
                    try:
                        state = next(it)
                    except StopIteration as stop:
                        state = stop.value if stop.value is not None else state
                        break
        finally:
            it.close()
        if state is None:
            raise RuntimeError(f"{method} yielded no state")
        return norm.to_units(state.x if whole else state.x[:1])

    return f


# ----------------------------------------------------------------------------- driver
def noise_level(y: Any, op: Any, sigma: float | None, noise: dict | None
                ) -> tuple[float | None, str]:
    """The noise std of ``y`` in its units and where it came from: ``sigma`` if given, the
    run's recorded (simulated) Gaussian noise, else estimated from the data (``None`` when the
    data allow no estimate)."""
    if sigma is not None:
        s = float(sigma)
        if not math.isfinite(s) or s < 0:
            raise InputError(f"noise sigma must be a finite number >= 0, got {sigma!r}")
        return s, "given"
    if isinstance(noise, dict) and noise.get("model") in ("gaussian", "poisson-gaussian"):
        return float(noise.get("sigma", 0.0)), "recorded"
    est = noise_estimate(y, op)["sigma"]
    return (None, "none") if est is None else (float(est), "estimated")


def _photons(noise: dict | None, photons: float | None) -> float | None:
    """The photon count of Poisson data: given, or recorded in the run's noise."""
    if photons is not None:
        return float(photons)
    if isinstance(noise, Mapping) and noise.get("model") == "poisson":
        return float(noise.get("photons") or 0.0) or None
    return None


def quality_steps(y: Any, op: Any, method: str, params: Any, *, seed: int = 0,
                  x_hat: Any = None, sigma: float | None = None, noise: dict | None = None,
                  photons: float | None = None, estimator: str = "auto", folds: int = FOLDS,
                  probes: int = PROBES, normalise: str = "auto", estimate_seed: int = 0,
                  cancel: threading.Event | None = None
                  ) -> Generator[tuple[int, int], None, QualityEstimate]:
    """Estimate the error of the run (``method``, ``params``, ``seed``) on ``y``; yields
    ``(done, total)`` after every extra run of the method, returns the
    :class:`QualityEstimate`.

    Parameters
    ----------
    y
        The measurement (numpy, as for :func:`~napari_invrec.engine.runner.run`).
    op, method, params, seed, normalise
        The run (params: the method's params instance).
    x_hat
        The run's result in ``y``'s units (re-computed if ``None``).
    sigma, noise, photons
        Noise std in ``y``'s units, or the run's recorded noise dict, or the photon count of
        Poisson data; by default estimated from ``y``.
    estimator
        One of :data:`ESTIMATORS` (``auto``: :func:`choose_estimator`).
    folds, probes
        Held-out folds (splitting) or coarse draws (rescaled), Monte-Carlo probes (SURE,
        GSURE) or pairs/splits (recorrupted, thinning).
    estimate_seed
        Seed of the folds and probes (runs compared with one seed share them: paired).
    cancel
        Stops the estimate before the next step of any re-run.

    Raises
    ------
    InputError
        An unknown estimator, one that does not apply to the operator or noise (splitting an
        operator without sample masks, thinning without a photon count, a risk estimate with
        no noise level), or fewer than 2 folds.
    """
    if estimator not in ESTIMATORS:
        raise InputError(f"unknown estimator {estimator!r}; choose one of {', '.join(ESTIMATORS)}")
    spec = get_method(method, op.name)
    y_t = prepare_measurement(y, op)
    n_photons = _photons(noise, photons)
    est_name = choose_estimator(op, method, photons=n_photons) if estimator == "auto" \
        else estimator
    if est_name == "splitting" and op.name not in SPLITTABLE:
        raise InputError(f"the {op.name} operator's measurements cannot be split; choose "
                         f"gsure or sure")
    if est_name == "rescaled" and op.name not in RESCALABLE:
        raise InputError(f"the {op.name} operator's measurement is not the image at a coarser "
                         "pixel size: choose gsure or sure")
    if est_name == "gsure" and not getattr(op, "linear", False):
        raise InputError(f"gsure needs a linear operator; {op.name} is not: choose sure")
    if est_name == "thinning" and not n_photons:
        raise InputError("thinning needs Poisson counts: give photons= (counts per unit "
                         "intensity) or a run simulated with Poisson noise")
    if est_name in ("splitting", "rescaled") and int(folds) < 2:
        raise InputError(f"{est_name} needs at least 2 folds, got {folds}")
    sig, sig_source = noise_level(y, op, sigma, noise)
    if sig is None and est_name in ("gsure", "rescaled", "sure", "recorrupted"):
        raise InputError(f"{est_name} needs the noise level and this measurement gives no "
                         "estimate of it: pass sigma=")
    norm = method_normalisation(y_t, op, normalise, spec)
    f = reconstruction_map(op, method, params, seed=seed, norm=norm, cancel=cancel)
    gen = torch.Generator(device=op.device).manual_seed(int(estimate_seed))
    if x_hat is None:
        xh = f(y_t)
    else:
        xh = op.as_image(torch.as_tensor(np.asarray(x_hat))[None, None].to(op.device))
    n = max(1, int(probes))
    total = {"splitting": n + int(folds), "rescaled": 2}.get(est_name, n)
    counted: list[int] = [0]

    def counting(yy: torch.Tensor, op_: Any = op, whole: bool = False) -> torch.Tensor:
        out = f(yy, op_, whole)
        counted[0] += 1 if not whole else int(out.shape[0])
        return out

    batch = not spec.stochastic  # a stochastic method's batch holds its samples
    yield 0, total
    with torch.no_grad():
        if est_name == "splitting":
            r = yield from split_estimate(y_t, op, counting, sig or 0.0, int(folds), gen, xh,
                                          n, batch=batch)
        elif est_name == "rescaled":
            r = yield from rescaled_estimate(y_t, op, counting, sig, int(folds), gen, xh,
                                             batch=batch)
        else:
            r = yield from _probe_estimate(est_name, y_t, op, counting, sig, n_photons, n, gen,
                                           xh, batch)
    if cancel is not None and cancel.is_set():
        raise CancelledError("the quality estimate was cancelled")
    peak = measurement_peak(y_t, op)
    const_se = float(r.details.get("constant_se", 0.0))
    absolute = const_se <= 0.25 * abs(r.mse) and r.mse > 0
    score = r.mse if absolute else r.mse - float(r.details.get("constant", 0.0))
    ps = risk.est_psnr(r.mse, peak) if absolute else math.nan
    ps_se = 10 / math.log(10) * math.hypot(r.std, const_se) / max(abs(r.mse), 1e-30) \
        if absolute else math.nan
    disc = None if not sig else risk.discrepancy(y_t, op, xh, sig)
    values = list(r.details.pop("values", [r.mse]))
    if not absolute:
        values = [v - float(r.details.get("constant", 0.0)) for v in values]
    return QualityEstimate(est_name, r.kind, float(r.mse), float(r.std), float(ps),
                           float(min(ps_se, 99.0)), float(peak), absolute, float(score),
                           sig, sig_source, disc,
                           values, counted[0], _jsonable(r.details))


def _probe_estimate(est_name: str, y_t: torch.Tensor, op: Any, f: Callable, sig: float | None,
                    photons: float | None, n: int, gen: torch.Generator, xh: torch.Tensor,
                    batch: bool) -> Generator[tuple[int, int], None, risk.RiskEstimate]:
    """SURE / GSURE (its ``n`` probes as one batch where ``batch``: :func:`stacked_map`),
    recorrupted pairs or thinning splits (one re-run per step); yields ``(done, n)``."""
    vals: list[float] = []
    if est_name in ("sure", "gsure"):
        fn = risk.sure if est_name == "sure" else risk.gsure
        f_batch = stacked_map(f, op) if batch else None
        for chunk in [n] if batch else [1] * n:  # unbatched: progress, cancel per probe
            r = fn(y_t, op, f, sig, n_probes=chunk, generator=gen, x_hat=xh, f_batch=f_batch)
            vals += r.details.pop("values")
            yield len(vals), n
    else:
        for i in range(n):  # one pair / split per step: progress and cancel between them
            if est_name == "recorrupted":
                r = risk.recorrupted(y_t, op, f, sig, n_pairs=1, generator=gen)
            else:
                r = risk.thinning(y_t, op, f, photons, n_splits=1, generator=gen)
            vals.append(r.mse)
            yield i + 1, n
    mean, se = risk.mean_se(vals)
    se = se if len(vals) > 1 else r.std
    return risk.RiskEstimate(mean, se, r.kind, r.method, {**r.details, "values": vals})


def estimate_quality(*args: Any, progress: Callable[[int, int], Any] | None = None,
                     **kwargs: Any) -> QualityEstimate:
    """:func:`quality_steps` run to its end; ``progress(done, total)`` after each step."""
    return drain(quality_steps(*args, **kwargs),
                 None if progress is None else (lambda tick: progress(*tick)))


def paired_confidence(a: QualityEstimate, b: QualityEstimate) -> float:
    r"""Probability that the run with the lower estimated MSE really has the lower error.

    With the same folds/probes (same ``estimate_seed``) the per-fold differences
    :math:`d_i` are paired and their standard error :math:`s_d` is small; the confidence is
    :math:`\Phi(|\bar d| / s_d)`. Unpaired (different lengths), the two standard errors add.
    """
    from statistics import NormalDist

    if len(a.values) == len(b.values) and len(a.values) > 1:
        m, se = risk.mean_se([u - v for u, v in zip(a.values, b.values)])
    else:
        m = a.score - b.score
        se = math.hypot(a.mse_se, b.mse_se)
    if se <= 0:
        return 1.0 if m != 0 else 0.5
    return NormalDist().cdf(abs(m) / se)
