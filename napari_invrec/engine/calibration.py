r"""Calibrated uncertainty bands for a finished stochastic run (no Qt).

* :func:`calibration_steps` / :func:`calibrate_run`: split-conformal calibration of a
  stochastic run's std (:mod:`napari_invrec.core.analysis.calibration`). ``n_pairs`` ground
  truths :math:`x^{(i)}` are measured with the run's operator and noise,
  :math:`y^{(i)} = N(A x^{(i)})`, and reconstructed by the run's method with the run's
  parameters (several pairs per batch). The first half calibrates :math:`q`, the second half
  (held out) measures the coverage of :math:`\mu \pm q s` and its standard error over the
  held-out truths (:func:`~napari_invrec.core.analysis.calibration.coverage_stderr`). The
  truths come from a *source* (:data:`SOURCES`), and the coverage is only as general as it:

  ``phantoms``, ``atoms``, ``mixed`` (:data:`GENERATORS`)
      fresh draws of the synthetic generators of :mod:`napari_invrec.core.training.datasets`
      (``phantoms`` = random Shepp-Logan-like ellipse phantoms), in :math:`[0, 1]`, whatever
      the user's image: the coverage holds for images of that kind.
  ``images``
      reference images of the same kind as the user's data, ``(N, H, W)`` (numpy, dask, an
      image layer), used as they are, *in the run's units* (never rescaled), centre-cropped to
      the run's image size. The images, not the pairs, are split: a seeded random half
      calibrates and the other half measures, so no image is on both sides; with fewer images
      than ``n_pairs`` each is reused with fresh noise and sampler draws (on its own side), and
      the standard error counts each held-out image once. The coverage holds for images
      exchangeable with the reference set.
  ``bootstrap``
      parametric bootstrap: the run's own posterior mean :math:`\hat x` is the truth of every
      pair, :math:`y^{(i)} = N(A \hat x)` with fresh noise. No shifts or flips are applied:
      they would change what the operator sees (a mask or an asymmetric kernel would meet other
      structure) and the pairs are already exchangeable given :math:`\hat x` (independent noise
      and sampler draws), so the split-conformal guarantee holds exactly *for* :math:`\hat x`.
      It checks the sampler's spread around its own answer; errors the method makes on every
      draw (bias, structure shared by all samples) are not covered.

  ``images`` and ``bootstrap`` pairs are in the run's units, so they are reconstructed as the
  run was: through the affine normalisation recorded in its provenance
  (:mod:`~napari_invrec.engine.normalise`), mean and std mapped back. Generator pairs run
  without normalisation, as they always have.
* :func:`heldout_coverage`: the coverage of calibrated bands on images none of which
  calibrated them (e.g. real truths of the run's kind after a bootstrap calibration).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Generator
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import numpy as np
import torch

from ..core.analysis.calibration import (
    SCORE_MODES,
    calibrate,
    coverage,
    coverage_stderr,
    image_coverages,
)
from ..core.errors import InputError
from ..core.params import from_dict, make_params, param
from ..core.validation import check_image_array
from .compare import layer_image, run_operator
from .execute import drain, method_params_for
from .layers import META_KEY, invrec_meta

__all__ = ["GENERATORS", "IMAGES", "BOOTSTRAP", "SOURCES", "CalibrateParams",
           "CalibrationReport", "resolve_run", "calibration_steps", "calibrate_run",
           "heldout_coverage"]

GENERATORS = ("phantoms", "atoms", "mixed")
"""Ground-truth generators for calibration pairs (:class:`SyntheticPatches` kinds)."""
IMAGES, BOOTSTRAP = "images", "bootstrap"
SOURCES = GENERATORS + (IMAGES, BOOTSTRAP)
"""Where calibration truths come from: a generator, reference images, the run's own mean."""
MIN_IMAGES = 4
"""Fewest reference images: two calibrate, two measure (a standard error needs two)."""


@dataclass
class CalibrateParams:
    """Split-conformal calibration on simulated pairs (truths from ``source``)."""

    source: str = param("phantoms", "truths of the calibration pairs: a synthetic generator, "
                        "reference images like your data (in its units), or the run's own mean "
                        "(bootstrap)", choices=SOURCES)
    n_pairs: int = param(32, "simulated pairs: half calibrate q, half measure coverage "
                         "(reference images are split by image)", min=4, max=100000)
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
    measured, measured_se
        Coverage of :math:`\\mu \\pm q s` on the held-out half, and its standard error over
        the held-out truth images (pixels of one image are correlated, so not over pixels;
        pairs reusing one reference image count once; ``nan`` with a single held-out image).
    raw_q, raw_coverage
        The Gaussian :math:`z_{1-\\alpha/2}` and the held-out coverage of the uncalibrated
        bands :math:`\\mu \\pm z s` (how far the raw std is off).
    n_cal, n_test
        Pairs used to calibrate and to measure.
    mode, source, method, eps
        What was calibrated, on which truths (:data:`SOURCES`), and the std floor.
    trust
        One line: for which images the stated coverage holds, given the source.
    """

    q: float
    alpha: float
    measured: float
    measured_se: float
    raw_q: float
    raw_coverage: float
    n_cal: int
    n_test: int
    mode: str
    source: str
    trust: str
    method: str
    eps: float

    @property
    def stated(self) -> float:
        """Stated coverage :math:`1 - \\alpha`."""
        return 1.0 - self.alpha

    def summary(self) -> str:
        """A short paragraph for a status label."""
        se = "" if math.isnan(self.measured_se) else f" ± {self.measured_se:.1%}"
        return (f"q = {self.q:.3g} (raw z = {self.raw_q:.3g}); stated coverage "
                f"{self.stated:.1%}, measured {self.measured:.1%}{se} on {self.n_test} "
                f"held-out pairs (raw bands: {self.raw_coverage:.1%}). Source "
                f"'{self.source}': {self.trust}")

    def as_dict(self) -> dict:
        """Plain-JSON record (stored in band layers' metadata; a ``nan`` error is ``None``)."""
        out = {k: getattr(self, k) for k in self.__dataclass_fields__}
        if math.isnan(out["measured_se"]):
            out["measured_se"] = None
        return {**out, "stated": self.stated}


# ----------------------------------------------------------------------------- runs
@dataclass
class _Run:
    """A resolved run: what :func:`resolve_run` returns, plus the normalisation it ran through
    and a way to read its mean (``None`` when only its provenance is known)."""

    op: Any
    method: str
    params: Any
    noise: Any
    norm: Any = None
    mean: Callable[[], Any] | None = None


def resolve_run(run: Any, *, arrays: dict | None = None, noise: dict | None = None
                ) -> tuple[Any, str, Any, Any]:
    """``(op, method, params, noise)`` of a run.

    ``run`` is a provenance dict (with ``arrays`` for custom masks/kernels), a result layer or
    its metadata, a :class:`~napari_invrec.engine.compare.RunInfo` or
    :class:`~napari_invrec.engine.runner.Result`, or a tuple ``(op, method, params)`` (params a
    dataclass or dict). ``noise`` (a NoiseParams dict) overrides the one recorded in the
    provenance.

    Raises
    ------
    InputError
        No provenance, a non-stochastic method, or no noise model known.
    """
    r = _resolve(run, arrays=arrays, noise=noise)
    return r.op, r.method, r.params, r.noise


def _is_layer(obj: Any) -> bool:
    """A napari layer (duck-typed: ``data`` and ``metadata``; numpy arrays have no metadata)."""
    return not isinstance(obj, (dict, tuple)) and hasattr(obj, "metadata") and hasattr(
        obj, "data")


def _resolve(run: Any, *, arrays: dict | None, noise: dict | None) -> _Run:
    from ..core.methods import get_method
    from ..core.operators.noise import NoiseParams

    mean = norm = None
    if isinstance(run, tuple):
        op, method, params = run
        spec = get_method(method, op.name)
        params = method_params_for(method, op, params)
        prov_noise = None
    else:
        if _is_layer(run):
            data, metadata = run.data, dict(run.metadata or {})
            mean, run = (lambda: layer_image(data, metadata)), metadata
        if hasattr(run, "provenance"):  # RunInfo (result) or runner.Result (mean, x)
            arrays = arrays if arrays is not None else getattr(run, "arrays", None)
            img = next((getattr(run, k) for k in ("mean", "result", "x")
                        if getattr(run, k, None) is not None), None)
            mean = None if img is None else (lambda: img)
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
        norm = _recorded_normalisation(prov)
    if not spec.stochastic:
        raise InputError(f"{method!r} is not a stochastic method (it has no posterior std); "
                         "calibrate a run of a sampler such as langevin-tv")
    noise_d = noise if noise is not None else prov_noise
    if noise_d is None:
        raise InputError("the run records no noise model (a real, not simulated, measurement): "
                         "give the noise to simulate the calibration pairs with")
    noise_p = noise_d if isinstance(noise_d, NoiseParams) else make_params(
        NoiseParams, **{k: v for k, v in dict(noise_d).items() if k in NoiseParams.__annotations__})
    return _Run(op, method, params, noise_p, norm, mean)


def _recorded_normalisation(prov: dict) -> Any:
    """The :class:`~.normalise.Normalisation` a run applied (``None``: none applied)."""
    from .normalise import Normalisation

    d = prov.get("normalise") or {}
    if not d.get("applied"):
        return None
    scale, offset = float(d.get("scale", 1.0)), float(d.get("offset", 0.0))
    if not (math.isfinite(scale) and scale > 0 and math.isfinite(offset)):
        raise InputError(f"the run's recorded normalisation (scale {scale}, offset {offset}) "
                         "is invalid; re-run the reconstruction")
    return Normalisation(str(d.get("mode", "on")), True, offset=offset, scale=scale)


# ----------------------------------------------------------------------------- truths
def _ground_truths(generator: str, n: int, shape: tuple[int, int], seed: int) -> torch.Tensor:
    from ..core.training.datasets import SyntheticPatches

    if generator not in GENERATORS:
        raise InputError(f"unknown generator {generator!r}; choose one of {GENERATORS}")
    h, w = shape
    x = SyntheticPatches(generator).sample(n, max(h, w), np.random.default_rng(seed))
    return x[..., :h, :w].contiguous()


def _reference_stack(images: Any, shape: tuple[int, int], *, complex_ok: bool
                     ) -> tuple[Any, str]:
    """``(stack, name)``: the reference images as a lazy ``(M, H, W)`` view centre-cropped to
    ``shape`` (dask stays dask: nothing is read yet), checked for shape and dtype."""
    name = "the reference images"
    if images is None:
        raise InputError("source 'images' needs reference images: pass images= (an (N, H, W) "
                         "stack in the run's units) or choose an image layer")
    if _is_layer(images):
        name, images = f"the reference layer {images.name!r}", images.data
    if isinstance(images, torch.Tensor):
        images = images.detach().cpu().numpy()
    if not (hasattr(images, "shape") and hasattr(images, "dtype")):
        try:
            images = np.asarray(images)
        except (TypeError, ValueError) as e:
            raise InputError(f"{name} cannot be read as one array ({e}); give an (N, H, W) "
                             "stack of images of equal size") from e
    a, (H, W) = images, shape
    if (a.ndim == 4 and a.shape[-1] in (3, 4)) or (
            a.ndim == 3 and a.shape[-1] in (3, 4) and W not in (3, 4)):
        raise InputError(f"{name} look like RGB(A), shape {tuple(a.shape)}; convert them to one "
                         "channel in the run's units (e.g. skimage.color.rgb2gray)")
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3:
        raise InputError(f"{name} must be an (N, H, W) stack or one (H, W) image, got shape "
                         f"{tuple(a.shape)}")
    kind = np.dtype(a.dtype).kind
    if kind in "biu":
        raise InputError(f"{name} have dtype {a.dtype}; convert them to float in the run's "
                         "units (they are used as they are, never rescaled)")
    if kind not in "fc" or (kind == "c" and not complex_ok):
        raise InputError(f"{name} have dtype {a.dtype}; give real float images like the run's")
    h, w = a.shape[1:]
    if h < H or w < W:
        raise InputError(f"{name} are {h}x{w}, smaller than the run's {H}x{W} image; give "
                         f"images at least {H}x{W} (larger ones are centre-cropped, never "
                         "rescaled)")
    top, left = (h - H) // 2, (w - W) // 2
    return a[:, top:top + H, left:left + W], name


def _read(stack: Any, idx: np.ndarray, name: str, complex_ok: bool) -> torch.Tensor:
    """Images ``stack[idx]`` (each distinct one read once) as ``(len(idx), 1, H, W)``."""
    order = np.unique(idx)
    arr = np.asarray(stack[order] if len(order) < stack.shape[0] else stack)
    bad = [int(i) for i, ok in zip(order, np.isfinite(arr).reshape(len(order), -1).all(1))
           if not ok]
    if bad:
        raise InputError(f"{name} hold NaN/inf values (image(s) {bad[:5]} of the stack); drop "
                         "those images or fill them (np.nan_to_num)")
    arr = check_image_array(arr, name, complex_ok=complex_ok, ndim=3)
    return torch.from_numpy(arr[np.searchsorted(order, idx)])[:, None]


def _image_truths(images: Any, op: Any, n: int, seed: int
                  ) -> tuple[torch.Tensor, np.ndarray, int, str]:
    """Reference-image truths: a seeded random subset of at most ``n`` images, split by image
    into a calibration and a test half; pairs cycle through each half's images."""
    stack, name = _reference_stack(images, tuple(op.shape), complex_ok=op.complex_image)
    m = int(stack.shape[0])
    if m < MIN_IMAGES:
        raise InputError(f"{name} hold {m} image(s); calibrating on reference images needs at "
                         f"least {MIN_IMAGES} (half calibrate q, half measure its coverage)")
    use = np.random.default_rng([seed, 3]).permutation(m)[:min(m, n)]
    m_cal, n_cal = (len(use) + 1) // 2, (n + 1) // 2
    cal, test = use[:m_cal], use[m_cal:]
    idx = np.concatenate([cal[np.arange(n_cal) % len(cal)],
                          test[np.arange(n - n_cal) % len(test)]])
    x = _read(stack, idx, name, op.complex_image)
    of = f" of the {m}" if len(use) < m else ""
    reuse = (f", each reused with fresh noise for about {n / len(use):.1f} pairs"
             if n > len(use) else "")
    trust = (f"{len(use)}{of} reference images you supplied ({len(cal)} calibrate q, "
             f"{len(test)} measure coverage, none in both{reuse}): the coverage holds for "
             "images exchangeable with them")
    return x, idx, n_cal, trust


def _bootstrap_truths(r: _Run, mean: Any, n: int) -> torch.Tensor:
    """The run's mean, ``n`` times."""
    if mean is None and r.mean is not None:
        mean = r.mean()
    if mean is None:
        raise InputError("source 'bootstrap' needs the run's mean: pass mean= (its result "
                         "image) or the run itself (result layer, Result or RunInfo), not only "
                         "its provenance")
    arr = check_image_array(mean, "the run's mean", complex_ok=r.op.complex_image, ndim=2)
    if arr.shape != tuple(r.op.shape):
        raise InputError(f"the run's mean is {arr.shape[0]}x{arr.shape[1]} but its operator's "
                         f"image is {'x'.join(map(str, r.op.shape))}; pass the run's own result")
    return torch.from_numpy(arr)[None, None].repeat(n, 1, 1, 1)


_BOOTSTRAP_TRUST = ("the run's own mean as truth: checks the sampler's spread around its own "
                    "answer; errors the method makes on every draw (bias, hallucinated structure "
                    "shared by all samples) are not covered")


def _truths(p: CalibrateParams, r: _Run, images: Any, mean: Any
            ) -> tuple[torch.Tensor, np.ndarray, int, str, Any]:
    """``(x_true, groups, n_cal, trust, normalisation)`` of the calibration pairs of
    ``p.source``; ``groups[i]`` names the truth image of pair ``i`` (for the standard error)."""
    n, seed = int(p.n_pairs), int(p.seed)
    if images is not None and p.source != IMAGES:
        raise InputError(f"reference images are only used with source 'images', not "
                         f"{p.source!r}")
    if mean is not None and p.source != BOOTSTRAP:
        raise InputError(f"mean= is only used with source 'bootstrap', not {p.source!r}")
    if p.source == IMAGES:
        x, groups, n_cal, trust = _image_truths(images, r.op, n, seed)
        return x, groups, n_cal, trust, r.norm
    if p.source == BOOTSTRAP:
        return _bootstrap_truths(r, mean, n), np.arange(n), (n + 1) // 2, _BOOTSTRAP_TRUST, r.norm
    of = "of those kinds" if p.source == "mixed" else "of that kind"
    trust = (f"pairs drawn from the synthetic {p.source} generator: the coverage holds for "
             f"images {of}, not necessarily for yours")
    return (_ground_truths(p.source, n, tuple(r.op.shape), seed), np.arange(n), (n + 1) // 2,
            trust, None)


# ----------------------------------------------------------------------------- calibration
def _simulate(r: _Run, x_img: torch.Tensor, norm: Any, batch: int, seed: int
              ) -> Generator[tuple[int, int], None, tuple[torch.Tensor, torch.Tensor]]:
    """Measure and reconstruct every truth; yields ``(step, total)``, returns ``(mean, std)``
    in the truths' units (through ``norm`` when the run was normalised)."""
    from ..core.methods import get_method

    op, fn = r.op, get_method(r.method, r.op.name).fn
    n, dev = int(x_img.shape[0]), op.device
    g_noise = torch.Generator(device=dev).manual_seed(seed + 1)
    g_method = torch.Generator(device=dev).manual_seed(seed + 2)
    means, stds = [], []
    chunks = [(i, min(i + batch, n)) for i in range(0, n, batch)]
    done, total = 0, None
    with torch.no_grad():
        for a, b in chunks:
            y = op.measure(x_img[a:b], r.noise, generator=g_noise)
            state = None
            for state in fn(y if norm is None else norm.measurement(y, op), op, r.params,
                            generator=g_method):
                total = total or state.total * len(chunks)
                done += 1
                yield done, total
            if state is None or "std" not in state.extras:
                raise InputError(f"{r.method} returned no posterior std to calibrate")
            m, s = state.x.detach(), state.extras["std"].detach()
            if norm is not None:
                m, s = norm.to_units(m), norm.spread_to_units(s)
            means.append(m)
            stds.append(s)
    return torch.cat(means), torch.cat(stds)


def calibration_steps(run: Any, p: CalibrateParams | None = None, *, images: Any = None,
                      mean: Any = None, arrays: dict | None = None, noise: dict | None = None,
                      eps: float = 1e-6) -> Generator[tuple[int, int], None, CalibrationReport]:
    """Simulate, reconstruct and calibrate; yields ``(step, total)`` after every method step.

    See the module docstring for the sources. ``run``, ``arrays`` and ``noise`` as in
    :func:`resolve_run`; ``images`` the reference stack of source ``images`` (array, dask
    array or image layer, in the run's units); ``mean`` the truth of source ``bootstrap`` when
    ``run`` does not carry its result (a provenance dict or tuple). Returns the
    :class:`CalibrationReport`.

    Raises
    ------
    InputError
        A bad run (see :func:`resolve_run`), too few pairs or images for ``alpha``, reference
        images that are smaller than the run's image, NaN, integer, RGB or of the wrong
        dimension, or no mean for ``bootstrap``.
    """
    p = p or CalibrateParams()
    p = make_params(CalibrateParams, **{f: getattr(p, f) for f in p.__dataclass_fields__})
    r = _resolve(run, arrays=arrays, noise=noise)
    op, n = r.op, int(p.n_pairs)
    n_cal = (n + 1) // 2
    need = math.ceil(1.0 / p.alpha - 1.0)
    units = n_cal if p.mode == "max" else n_cal * op.shape[0] * op.shape[1]
    if units < need:
        raise InputError(f"{n_cal} calibration image(s) give too few scores for alpha="
                         f"{p.alpha}; raise n_pairs or alpha")
    x_true, groups, n_cal, trust, norm = _truths(p, r, images, mean)
    x_img = op.as_image(x_true.to(op.device))
    mu, std = yield from _simulate(r, x_img, norm, int(p.batch), int(p.seed))
    cal = calibrate(x_img[:n_cal], mu[:n_cal], std[:n_cal], p.alpha, mode=p.mode, eps=eps)
    held = slice(n_cal, n)
    raw_q = NormalDist().inv_cdf(1.0 - p.alpha / 2.0)
    per_image = image_coverages(x_img[held], mu[held], std[held], cal.q, mode=p.mode, eps=eps)
    return CalibrationReport(
        q=cal.q, alpha=float(p.alpha),
        measured=coverage(x_img[held], mu[held], std[held], cal.q, mode=p.mode, eps=eps),
        measured_se=coverage_stderr(per_image, groups[held]), raw_q=raw_q,
        raw_coverage=coverage(x_img[held], mu[held], std[held], raw_q, mode=p.mode, eps=eps),
        n_cal=n_cal, n_test=n - n_cal, mode=p.mode, source=p.source, trust=trust,
        method=r.method, eps=float(eps))


def calibrate_run(run: Any, source: str | None = None, n_pairs: int = 32, alpha: float = 0.1,
                  seed: int = 0, *, mode: str = "pixels", batch: int = 8, images: Any = None,
                  mean: Any = None, arrays: dict | None = None, noise: dict | None = None,
                  generator: str | None = None) -> CalibrationReport:
    """Run :func:`calibration_steps` to its end (for scripts and tests).

    ``source`` is one of :data:`SOURCES` (default ``phantoms``); ``generator`` is its former
    name, kept for callers that pass ``generator="atoms"``.
    """
    if generator is not None and source is not None and generator != source:
        raise InputError(f"give the source once: source={source!r} and generator="
                         f"{generator!r} disagree")
    p = make_params(CalibrateParams, source=source or generator or "phantoms", n_pairs=n_pairs,
                    alpha=alpha, seed=seed, mode=mode, batch=batch)
    return drain(calibration_steps(run, p, images=images, mean=mean, arrays=arrays,
                                    noise=noise))


def heldout_coverage(run: Any, calibration: CalibrationReport | float, images: Any, *,
                     n_pairs: int | None = None, mode: str = "pixels", eps: float = 1e-6,
                     seed: int = 0, batch: int = 8, arrays: dict | None = None,
                     noise: dict | None = None) -> tuple[float, float]:
    r"""Coverage of calibrated bands :math:`\mu \pm q s` on truths that did not calibrate them.

    Every image of ``images`` (as for source ``images``: in the run's units, centre-cropped,
    at least two) is measured with the run's noise and reconstructed as the run was
    (``n_pairs`` pairs, default one per image, cycling with fresh noise). ``calibration`` is a
    :class:`CalibrationReport` (its ``q``, ``mode`` and ``eps`` are used) or a bare ``q``.

    Returns
    -------
    tuple of float
        The coverage and its standard error over the images
        (:func:`~napari_invrec.core.analysis.calibration.coverage_stderr`).
    """
    if isinstance(calibration, CalibrationReport):
        q, mode, eps = calibration.q, calibration.mode, calibration.eps
    else:
        q = float(calibration)
    r = _resolve(run, arrays=arrays, noise=noise)
    stack, name = _reference_stack(images, tuple(r.op.shape), complex_ok=r.op.complex_image)
    m = int(stack.shape[0])
    if m < 2:
        raise InputError(f"{name} hold {m} image; measuring a coverage and its error needs "
                         "at least 2")
    idx = np.arange(int(n_pairs or m)) % m
    x_img = r.op.as_image(_read(stack, idx, name, r.op.complex_image).to(r.op.device))
    mu, std = drain(_simulate(r, x_img, r.norm, int(batch), int(seed)))
    per_image = image_coverages(x_img, mu, std, q, mode=mode, eps=eps)
    return float(per_image.mean()), coverage_stderr(per_image, idx)
