"""The public Python API; the GUI and the command line run on the same functions.

Examples
--------
>>> import napari_invrec as ir
>>> from napari_invrec.core.data import shepp_logan
>>> x = shepp_logan(64)
>>> op = ir.make_operator("blur", x.shape, sigma=2.0)
>>> y = ir.simulate(x, op, sigma=0.02, seed=1)
>>> res = ir.reconstruct(y, op, "tv-fista", lam=0.005, iters=50, reference=x)
>>> res.metrics["psnr"] > 20
True
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from .core.errors import InputError
from .core.methods import METHODS, get_method
from .core.operators import OPERATORS, NoiseParams
from .core.operators import make_operator as _make_operator
from .core.operators.registry import operator_from_spec
from .core.params import check_fingerprint, from_dict, make_params
from .core.state import IterState
from .core.validation import check_image_array
from .engine.device import choose_device, replay_device
from .engine.execute import method_params_for, run_to_result
from .engine.history import DEFAULT_BUDGET
from .engine.quality import FOLDS, PROBES
from .engine.reproduce import RerunReport
from .engine.runner import Result, measurement_plane, prepare_measurement

__all__ = ["list_operators", "list_methods", "make_operator", "simulate", "solve",
           "reconstruct", "rerun", "Result", "method_params", "method_defaults",
           "operator_params",
           "normalisation", "estimate_noise", "rerun_file", "RerunReport", "estimate_quality",
           "autotune", "rank_methods", "best_for_data", "calibrate", "reconstruct_many",
           "reconstruct_tiled"]


def list_operators(*, linear: bool | None = None) -> list[str]:
    """Names of the registered operator families (``linear=True``: the linear ones only,
    ``False``: the non-linear ones)."""
    return sorted(n for n, s in OPERATORS.items() if linear is None or s.linear == linear)


def list_methods(operator: str | None = None) -> list[str]:
    """Names of the registered methods, only those supporting ``operator`` if given."""
    if operator is not None and operator not in OPERATORS:
        raise InputError(f"unknown operator {operator!r}; available: {', '.join(list_operators())}")
    return sorted(m for m, s in METHODS.items() if operator is None or s.supports(operator))


def operator_params(name: str) -> type:
    """The params dataclass of operator ``name``."""
    if name not in OPERATORS:
        raise InputError(f"unknown operator {name!r}; available: {', '.join(list_operators())}")
    return OPERATORS[name].params


def method_params(name: str) -> type:
    """The params dataclass of method ``name``."""
    return get_method(name).params


def method_defaults(name: str, operator: str) -> dict[str, Any]:
    """The default parameters of method ``name`` on the operator family ``operator``: the
    params class's defaults, with the family's own over them where the method has some
    (e.g. ``dpir`` runs 40 iterations on ``mri``, 8 elsewhere). A run gets these for every
    parameter it is not given."""
    spec = get_method(name, operator)
    p = spec.params()
    return {f.name: getattr(p, f.name) for f in dataclasses.fields(p)} | spec.defaults_for(
        operator)


def make_operator(name: str, shape: tuple[int, ...], *, device: str | None = None,
                  **params: Any) -> Any:
    """Build operator ``name`` for images of ``shape`` on ``device`` (auto).

    ``shape`` is ``(H, W)``, or ``(D, H, W)``: a volume for the families that take volumes
    (blur, denoise, inpaint: 3-D physics); for the others only the last two axes count (the
    operator of one plane of a stack)."""
    shape = tuple(shape)
    spec = OPERATORS.get(name)
    keep = 3 if len(shape) == 3 and spec is not None and 3 in spec.cls.spatial_ndims else 2
    return _make_operator(name, shape[-keep:], device=choose_device(device or "auto"),
                          **params)


def simulate(x: Any, op: Any, noise: str = "gaussian", sigma: float = 0.03,
             photons: float = 100.0, seed: int = 0) -> np.ndarray:
    """Simulate a noisy measurement ``y = N(A x)`` of the image ``x`` (2-D, or a volume for an
    operator built for one).

    Returns
    -------
    numpy.ndarray
        The measurement, complex for complex operators (k-space).
    """
    arr = check_image_array(np.asarray(x), "image", complex_ok=op.complex_image,
                            ndim=len(op.shape))
    p = make_params(NoiseParams, model=noise, sigma=sigma, photons=photons, seed=seed)
    xt = op.as_image(torch.from_numpy(np.ascontiguousarray(arr))[None, None])
    gen = torch.Generator(device=op.device).manual_seed(int(seed))
    return op.measure(xt, p, generator=gen)[0, 0].cpu().numpy()


def solve(y: Any, op: Any, method: str, *, seed: int = 0, x0: Any = None,
          **params: Any) -> Iterator[IterState]:
    """Iterate ``method`` on ``y``: yields the core :class:`IterState` of every step (tensors)."""
    spec = get_method(method, op.name)
    p = method_params_for(method, op, **params)
    y_t = prepare_measurement(y, op)
    x0_t = None if x0 is None else op.as_image(torch.as_tensor(np.asarray(x0))[None, None])
    gen = torch.Generator(device=op.device).manual_seed(int(seed))
    return spec.fn(y_t, op, p, x0=x0_t, generator=gen)


def reconstruct(y: Any, op: Any, method: str, *, seed: int = 0, x0: Any = None,
                reference: Any = None, device: str | None = None,
                history_budget: int = DEFAULT_BUDGET, cancel: threading.Event | None = None,
                progress: Any = None, threads: int | None = None, normalise: str = "auto",
                **params: Any) -> Result:
    """Reconstruct the 2-D measurement ``y`` and return a :class:`Result`.

    A run that diverges to non-finite values raises
    :class:`~napari_invrec.core.errors.DivergenceError`; one that blows up without them
    (its data residual and its image growing together) returns with a line in
    ``res.provenance["warnings"]`` (:func:`~napari_invrec.engine.runner.growth_warning`).

    Parameters
    ----------
    y
        Measurement (numpy or dask, 2-D; complex for k-space).
    op
        Operator from :func:`make_operator`.
    method
        A name from :func:`list_methods`.
    seed
        Random seed (stochastic methods, random initialisations).
    x0
        Optional initial image.
    reference
        Ground truth, for PSNR/SSIM in the metrics.
    device
        Move the operator to this device first (``"auto"``, ``"cpu"``, ``"cuda"``).
    history_budget
        Memory budget of the stored iterate history, bytes.
    cancel
        A ``threading.Event``; once set, the run stops with :class:`CancelledError` within
        a step (methods with long inner loops check it there) or at the next step.
    progress
        Optional callable ``progress(Progress)`` called after each step.
    threads
        CPU threads torch may use during the run (default: leave torch's setting).
    normalise
        ``"auto"`` (default), ``"on"`` or ``"off"``: solve on affinely normalised data and
        return the result in ``y``'s units (raw counts, CT numbers...); parameters such as a
        TV weight or a noise level are then relative to the normalised data, in which the
        data's robust range is 0..1 (see :func:`normalisation`). ``auto`` leaves data that
        already lie in about [0, 1] as they are.
    **params
        Fields of the method's params dataclass (see :func:`method_params`).
    """
    p = method_params_for(method, op, **params)
    if device is not None:
        op = op.to(choose_device(device))
    return run_to_result(y, op, method, p, seed=seed, x0=x0, reference=reference,
                         budget_bytes=history_budget, threads=threads, cancel=cancel,
                         progress=progress, normalise=normalise)


def rerun(provenance: dict, y: Any, arrays: dict | None = None, *,
          check_measurement: bool = True, **overrides: Any) -> Result:
    """Repeat the run recorded in ``provenance`` on the measurement ``y``.

    The record is checked before anything runs: the operator is rebuilt from its spec with
    range-checked parameters, each array parameter (``arrays``, i.e. ``Result.arrays`` or the
    sidecar ``.npz``) must match its recorded fingerprint, and ``y`` must match the recorded
    measurement's fingerprint unless ``check_measurement=False`` (apply the recorded settings
    to new data). ``overrides`` change method parameters.

    Raises
    ------
    InputError
        A malformed record, an array or measurement that differs from the recorded one, or an
        override that is not a parameter of the method.
    """
    if not isinstance(provenance, dict):
        raise InputError(f"provenance must be a mapping, got {type(provenance).__name__}")
    missing = [k for k in ("operator", "method", "params") if k not in provenance]
    if missing:
        raise InputError(f"provenance lacks {', '.join(missing)}; it is not a run record")
    op = operator_from_spec(provenance["operator"], arrays,
                            device=replay_device(provenance.get("device")))
    if check_measurement:
        recorded = provenance.get("measurement")
        if not isinstance(recorded, dict):
            raise InputError("provenance records no measurement fingerprint; pass "
                             "check_measurement=False to run it on this data anyway")
        try:
            check_fingerprint(measurement_plane(y, op), recorded, "measurement")
        except InputError as e:
            raise InputError(f"{e} (or pass check_measurement=False to apply the recorded "
                             "settings to other data)") from None
    spec = get_method(provenance["method"], op.name)
    p = from_dict(spec.params, provenance["params"])
    kw = {f: getattr(p, f) for f in p.__dataclass_fields__}
    kw.update(overrides)
    norm = provenance.get("normalise") or {}
    mode = norm.get("mode", "off") if isinstance(norm, dict) else "off"  # older records: off
    kw.setdefault("normalise", mode)
    return reconstruct(y, op, provenance["method"], seed=provenance.get("seed", 0), **kw)


def normalisation(y: Any, op: Any, mode: str = "auto", method: str | None = None) -> Any:
    """The :class:`~napari_invrec.engine.normalise.Normalisation` a run of ``method`` on
    ``y`` would use: ``offset``, ``scale`` (input units = scale * method units + offset),
    whether it is applied and why."""
    from .engine.normalise import method_normalisation, plan_normalisation

    y_t = prepare_measurement(y, op)
    if method is None:
        return plan_normalisation(y_t, op, mode)
    return method_normalisation(y_t, op, mode, get_method(method, op.name))


def estimate_noise(y: Any, op: Any, mode: str = "auto") -> dict:
    """The measurement's noise std estimated from the data alone (wavelet MAD, see
    :mod:`napari_invrec.core.analysis.noise`): ``{"sigma": in y's units, "sigma_normalised":
    in the units methods run in (what their noise-level parameters expect)}``; both ``None``
    when the measurement gives no estimate."""
    from .engine.noise_level import noise_estimate

    return noise_estimate(y, op, mode)


def rerun_file(path: Any, *, device: str | None = None, **overrides: Any) -> RerunReport:
    """Repeat the run that produced a layer saved by napari-invrec, and compare.

    The file (OME-Zarr, TIFF or ``.npy`` written by the plugin's writer) holds the run record,
    the measurement as it ran and the operator's array parameters; :func:`rerun` checks each
    against its recorded fingerprint before anything runs.

    Parameters
    ----------
    path
        The saved file (a result, history, std or samples layer).
    device
        Run on this device instead of the recorded one (differences may then exceed the
        tolerance: kernels differ between devices).
    **overrides
        Method parameters to change (the comparison then shows their effect).

    Returns
    -------
    RerunReport
        The re-run's result, the saved and re-run values, the largest difference (absolute
        and relative to the saved range) and whether it is within the tolerance
        (:data:`napari_invrec.engine.reproduce.RERUN_RTOL`).

    Raises
    ------
    InputError
        Not a napari-invrec file, no run record or no measurement in it, or a measurement or
        array that differs from the recorded one.
    """
    from pathlib import Path

    from .engine.reproduce import compare_saved
    from .formats.saved import read_saved

    saved = read_saved(path)
    inv = saved.invrec
    kind = inv.get("kind")
    if not isinstance(inv.get("provenance"), dict):
        raise InputError(f"{path}: holds no run record (a {kind or 'plain image'} layer); "
                         "re-run a result saved by napari-invrec")
    if inv.get("measurement") is None:
        raise InputError(f"{path}: the record holds no measurement (saved by an older "
                         "version); use napari_invrec.rerun(provenance, y, arrays) with the "
                         "original measurement")
    if device is not None:
        overrides["device"] = device
    res = rerun(inv["provenance"], inv["measurement"], inv.get("arrays") or {}, **overrides)
    return compare_saved(Path(path), kind, inv, saved.data, res)


def _run_context(result: Result, y: Any = None) -> tuple:
    """``(y, op, method, params, seed, normalise, noise)`` of a :class:`Result`."""
    prov = result.provenance
    y = result.measurement if y is None else y
    if y is None:
        raise InputError("this result holds no measurement; pass the measurement y")
    op = operator_from_spec(prov["operator"], result.arrays,
                            device=replay_device(prov.get("device")), measurement=None)
    spec = get_method(prov["method"], op.name)
    p = from_dict(spec.params, prov["params"])
    norm = prov.get("normalise") or {}
    return (y, op, prov["method"], p, int(prov.get("seed", 0)),
            norm.get("mode", "off") if isinstance(norm, dict) else "off", prov.get("noise"))


def estimate_quality(result: Result, y: Any = None, *, estimator: str = "auto",
                     folds: int = FOLDS, probes: int = PROBES, sigma: float | None = None,
                     op: Any = None, progress: Any = None) -> Any:
    """Estimate the error of a run from its measurement alone (no ground truth).

    The method re-runs on held-out folds or perturbed copies of the measurement with the
    run's parameters, seed and normalisation (see :mod:`napari_invrec.engine.quality` for
    the estimators and what each measures). The estimate is stored in
    ``result.provenance["quality"]``.

    Parameters
    ----------
    result
        A :class:`Result` of :func:`reconstruct` (or :func:`rerun`).
    y
        The measurement (default: the one stored in the result).
    estimator
        ``auto``, ``splitting``, ``rescaled``, ``gsure``, ``sure``, ``recorrupted`` or
        ``thinning``.
    folds, probes
        Held-out folds (splitting) or coarse draws (rescaled), and Monte-Carlo probes.
    sigma
        Noise std of ``y`` in its units (default: the run's simulated noise, else estimated).
    op
        The run's operator (default: rebuilt from the provenance; pass it for operators with
        arrays derived from the measurement).
    progress
        Optional ``progress(done, total)``.

    Returns
    -------
    napari_invrec.engine.quality.QualityEstimate
    """
    from .engine.quality import estimate_quality as _estimate

    y, op_rec, method, p, seed, normalise, noise = _run_context(result, y)
    q = _estimate(y, op if op is not None else op_rec, method, p, seed=seed, x_hat=result.x,
                  sigma=sigma, noise=noise, estimator=estimator, folds=folds, probes=probes,
                  normalise=normalise, progress=progress)
    result.provenance["quality"] = q.as_dict()
    return q


def autotune(y: Any, op: Any, method: str, *, budget: int = 10, seed: int = 0,
             sigma: float | None = None, noise: dict | None = None, estimator: str = "auto",
             folds: int = FOLDS, probes: int = PROBES, normalise: str = "auto",
             progress: Any = None, cancel: threading.Event | None = None, **params: Any) -> Result:
    """Tune ``method``'s main hyperparameters on ``y`` without ground truth, then run it.

    Each of ``budget`` candidates is scored by the ground-truth-free estimate
    (:func:`estimate_quality`); the search is described in
    :mod:`napari_invrec.engine.autotune`. ``params`` fix the other fields (and the start of
    the search). The returned result's provenance holds ``"autotune"`` (the chosen values
    and every trial) and ``"quality"`` (the chosen run's estimate); ``progress(trial)`` is
    called after each candidate.
    """
    from .engine.autotune import autotune_steps
    from .engine.execute import drain

    tuned = drain(autotune_steps(y, op, method, params or None, budget=budget, seed=seed,
                                 noise=noise, sigma=sigma, estimator=estimator, folds=folds,
                                 probes=probes, normalise=normalise, cancel=cancel), progress)
    kw = {f: getattr(tuned.params, f) for f in tuned.params.__dataclass_fields__}
    res = reconstruct(y, op, method, seed=seed, normalise=normalise, cancel=cancel, **kw)
    res.provenance["autotune"] = tuned.as_dict()
    res.provenance["quality"] = tuned.estimate.as_dict()
    return res


def rank_methods(y: Any, op: Any, methods: list, *, seed: int = 0, sigma: float | None = None,
                 noise: dict | None = None, estimator: str = "auto", folds: int = FOLDS,
                 probes: int = PROBES, normalise: str = "auto", progress: Any = None,
                 cancel: threading.Event | None = None) -> Any:
    """Order candidate runs on ``y`` by their ground-truth-free estimated error.

    ``methods`` are names or ``(name, params)`` pairs. Returns a
    :class:`~napari_invrec.engine.ranking.Ranking`: ``trials`` best first (method, values,
    estimate, params), and ``confidence[i]``, the probability that candidate ``i`` really
    beats candidate ``i + 1`` (paired over the same folds / probes).
    """
    from .engine.execute import drain
    from .engine.ranking import rank_steps

    return drain(rank_steps(y, op, list(methods), seed=seed, noise=noise, sigma=sigma,
                            estimator=estimator, folds=folds, probes=probes,
                            normalise=normalise, cancel=cancel), progress)


def best_for_data(y: Any, op: Any, *, budget: int = 8, seed: int = 0,
                  sigma: float | None = None, noise: dict | None = None,
                  normalise: str = "auto", progress: Any = None,
                  cancel: threading.Event | None = None) -> tuple[Result, Any]:
    """Pick the best run for ``y`` without ground truth and return ``(result, ranking)``.

    The default method for the operator is tuned (``budget`` candidates), the learned
    candidates (:func:`~napari_invrec.engine.ranking.candidates_for`) run at their defaults
    with each installed network, the adjoint / measurement is the floor, and all are ranked
    by one estimator; the best is run and its provenance holds ``"ranking"`` and
    ``"quality"``.
    """
    from .engine.execute import drain
    from .engine.ranking import best_steps

    ranking = drain(best_steps(y, op, budget=budget, seed=seed, noise=noise, sigma=sigma,
                               normalise=normalise, cancel=cancel), progress)
    best = ranking.best
    kw = {f: getattr(best.params, f) for f in best.params.__dataclass_fields__}
    res = reconstruct(y, op, best.method, seed=seed, normalise=normalise, cancel=cancel, **kw)
    res.provenance["ranking"] = ranking.as_dict()
    res.provenance["quality"] = best.estimate.as_dict()
    return res, ranking


def calibrate(run: Any, source: str = "phantoms", n_pairs: int = 32, alpha: float = 0.1,
              seed: int = 0, *, mode: str = "pixels", images: Any = None, mean: Any = None,
              arrays: dict | None = None, noise: dict | None = None) -> Any:
    """Calibrate the uncertainty bands of a stochastic run (split conformal).

    ``run`` is a :class:`Result`, a napari layer of one, or a provenance dict. ``source`` says
    where the calibration pairs' ground truths come from: a synthetic generator
    (``phantoms``, ``atoms``, ``mixed``), ``images`` (a stack of reference images of the
    user's kind, in the run's units, passed as ``images``) or ``bootstrap`` (the run's own
    posterior mean; ``mean`` when ``run`` is a provenance dict). The returned
    :class:`~napari_invrec.engine.calibration.CalibrationReport` holds ``q`` (band half-width in
    std units), the coverage measured on held-out pairs with its standard error over images,
    and ``trust``: how far the stated coverage holds for that source.
    """
    from .engine.calibration import calibrate_run

    return calibrate_run(run, source, n_pairs, alpha, seed, mode=mode, images=images,
                         mean=mean, arrays=arrays, noise=noise)


def reconstruct_many(inputs: Any, op: Any, method: str, *, out: Any,
                     workers: int | None = None, scheduler: str | None = None,
                     resume: bool = True, progress: Any = None,
                     cancel: threading.Event | None = None, seed: int = 0,
                     normalise: str = "auto", threads: int | None = None,
                     device: str = "auto", fmt: str = "tif", timeout: float = 10.0,
                     **params: Any) -> Any:
    """Reconstruct every input of a batch on dask; one output with its run record per input.

    Everything is checked before any work; then each input runs as :func:`reconstruct` would
    run it (:mod:`napari_invrec.engine.batch`). An input that fails (an unreadable file, NaN
    values, a run that diverges) is reported in the summary and the others go on; inputs are
    never modified.

    Parameters
    ----------
    inputs
        A folder (its ``.npy``/``.tif``/``.png`` files), a glob (``"in/*.tif"``), a file, a
        zarr array (items along its first axis), a list of those, or an in-memory stack
        (numpy, dask or zarr; the leading axis holds the items).
    op
        The operator of one measurement (from :func:`make_operator`); the workers rebuild it
        from its spec.
    method
        A name from :func:`list_methods`.
    out
        Output folder, created if missing; it must not be the inputs' folder. Each input
        ``NAME`` gives ``NAME.tif`` (or ``.npy``/``.zarr``, see ``fmt``), readable by the
        plugin's reader and by :func:`rerun_file`, plus ``NAME.std.tif`` for stochastic
        methods.
    workers
        Run on a ``dask.distributed.LocalCluster`` of this many single-threaded processes.
    scheduler
        Run on the existing dask cluster at this address (``"tcp://host:port"``; its workers
        need napari-invrec installed). Default (neither): dask's threaded scheduler here.
    resume
        Skip inputs whose output holds the same run (operator, method, parameters, seed,
        normalisation and input data); an output of another run is recomputed.
    progress
        Optional ``progress(BatchProgress)``, called as each input ends: ``done``, ``total``,
        ``name`` and its ``outcome`` (status, one-line message, outputs, seconds).
    cancel
        A ``threading.Event``: once set, inputs not started are skipped and running ones stop
        at their next step; outputs already written stay (a later call resumes).
    seed, normalise
        As for :func:`reconstruct`; every input uses ``seed``.
    threads
        CPU threads of the in-process scheduler (default: all cores), shared by the inputs
        that run at once.
    device
        ``"auto"``: a GPU per worker (or thread) when there are GPUs, else the CPU.
    fmt
        Output format: ``"tif"``, ``"npy"`` or ``"zarr"``.
    timeout
        Seconds to wait for ``scheduler`` and one of its workers.
    **params
        Fields of the method's params dataclass (see :func:`method_params`).

    Returns
    -------
    napari_invrec.engine.batch.BatchSummary
        One outcome per input (``done``, ``recomputed``, ``skipped``, ``failed``,
        ``cancelled``) and ``cancelled`` if the batch was cancelled; ``lines()`` reports it.

    Raises
    ------
    InputError
        Before any work: no input matched, a bad parameter, an output folder that is a file
        or holds the inputs, bad ``workers``/``scheduler`` (both given, malformed address),
        or a scheduler that cannot be reached within ``timeout``.
    """
    from .engine.batch import batch_steps
    from .engine.execute import drain
    from .formats.batch_files import BatchFiles

    steps = batch_steps(inputs, op, method, params or None, out=out, io=BatchFiles(fmt),
                        seed=seed, normalise=normalise, resume=resume, device=device,
                        workers=workers, scheduler=scheduler, threads=threads, cancel=cancel,
                        timeout=timeout)
    return drain(steps, progress)


def reconstruct_tiled(y: Any, op: Any, method: str, *, tile: Any = "auto", out: Any = None,
                      progress: Any = None, cancel: threading.Event | None = None,
                      seed: int = 0, halo: int | None = None, normalise: str = "auto",
                      device: str | None = None, history_budget: int = DEFAULT_BUDGET,
                      max_memory: int | None = None, arrays: dict | None = None,
                      **params: Any) -> Result:
    """Reconstruct an image larger than memory tile by tile (local operators only).

    Each tile is its core plus a halo derived from the physics (the kernel's regularised
    inverse, the TV prior, a network's receptive field: :mod:`napari_invrec.engine.tile_halo`),
    solved with the same operator family and method, and the cores are blended with a cosine
    window; away from the image border the result agrees with :func:`reconstruct` to about
    1e-5 of the image range. Peak memory is set by the tile: with ``y`` and ``out`` in zarr,
    nothing reads the whole image.

    Parameters
    ----------
    y
        2-D real measurement: numpy, dask, a ``zarr.Array`` or the path of one (never
        modified).
    op
        An operator from :func:`make_operator` (its family and parameters are used; build it
        on any small shape for a large image) or a spec ``{"operator": "blur", "params":
        {"sigma": 2.0}}``. Local families: blur, denoise, inpaint, superres.
    method
        adjoint, wiener, richardson-lucy, tv-fista, dpir, pnp-pgd, pnp-admm, red (bicubic for
        superres).
    tile
        ``"auto"`` (one tile when the whole image fits in free memory, else the largest tile
        that fits) or the core size in pixels (at least the halo).
    out
        Path of a zarr array to write the result to, region by region (the iterate history
        goes to ``NAME.history.zarr`` beside it); ``None`` keeps both in memory.
    progress
        Optional ``progress(TileProgress)`` after each step of each tile (``tile``,
        ``tiles``, ``step``, ``total``, ``message`` when a tile is halved after running out
        of memory).
    cancel
        A ``threading.Event``; once set, the run stops with :class:`CancelledError`.
    seed, normalise, device
        As for :func:`reconstruct`.
    halo
        Override the derived halo (pixels).
    history_budget
        Bytes of the stored iterate history (on disk with ``out``).
    max_memory
        Cap in bytes on the memory the tiles may use (default: the device's free memory).
    arrays
        Array parameters of a spec whose params hold their fingerprints.
    **params
        Fields of the method's params dataclass.

    Returns
    -------
    Result
        ``x`` and ``iterates`` are numpy without ``out``, dask arrays over the zarr arrays
        with it; ``provenance["tiling"]`` holds the tile, halo and how it was derived, the
        blend and the memory estimate, ``provenance["storage"]`` where the arrays live.
    """
    from .engine.tiles import run_tiled

    return run_tiled(y, op, method, params or None, tile=tile, out=out, halo=halo, seed=seed,
                     device=device, arrays=arrays, normalise=normalise,
                     history_budget=history_budget, max_memory=max_memory, progress=progress,
                     cancel=cancel)
