r"""One training engine for the command line, the Python API and the Train widget.

A :class:`TrainSpec` holds everything needed to reproduce a training run. :func:`prepare_training`
checks it (clear :class:`~napari_invrec.core.errors.InputError` for every bad input) and builds
the network, the data and the training-loop generator; :func:`execute_training` drives that
generator, yielding every :class:`~napari_invrec.core.training.loops.TrainState`, and after the
last step saves the weights (:func:`~napari_invrec.core.models.registry.save_model`), writes a
JSON sidecar ``OUT.json`` (the full spec and final figures) and, if asked, registers the
weights in the user manifest, so the network is selectable at once wherever weights are
listed. :func:`run_training` does both.

Closing the generator early (cancel) writes no weights and registers nothing; the checkpoint
written so far stays, so a later run with ``resume=checkpoint`` continues where it stopped.

Noise2Self on a synthetic generator (``data="atoms"`` with ``data_sigma``) trains on
:data:`N2S_DRAWS` draws of ``max(4 patch, 256)`` px with Gaussian noise of std ``data_sigma``
added (:func:`noisy_draws`; the clean draws are never seen): the self-supervised loop on noisy
data the project generates, reproducible from the seed.

Self-supervised (Noise2Self) training of a noise-conditional network needs the noise std
:math:`\sigma` of the data; without ``data_sigma`` it is estimated from the finest Haar
diagonal coefficients :math:`d = (y_{00} - y_{01} - y_{10} + y_{11})/2` of each image
(:math:`d \sim \mathcal N(0, \sigma^2)` on flat regions) by the robust median estimate

.. math::

    \hat\sigma = \operatorname{median}_i |d_i| \,/\, 0.6745 .

An unrolled network can also learn from the user's own measurements, with no image anywhere
(``data="measurements:LABEL"`` and a
:class:`~napari_invrec.engine.measurement_training.MeasurementStack`).
"""

from __future__ import annotations

import dataclasses
import json
import re
import shlex
import time
from collections.abc import Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..core.errors import InputError
from ..core.training.loops import SIGMA_DISTS, TrainState
from ..core.training.operator_nets import SSDU_SPLIT
from .measurement_training import MeasurementStack, measurement_loop, ssdu_settings, stack_spec

__all__ = ["TASKS", "OPERATOR_TASKS", "SIGMA_DISTS", "SSDU_SPLIT", "TrainSpec", "TrainPlan",
           "prepare_training", "execute_training", "run_training", "train_command",
           "estimate_noise_sigma", "check_training_arrays"]

TASKS = ("denoiser", "noise2self", "end-to-end", "unrolled", "acquisition", "dirac", "vae")
"""Training tasks: supervised denoiser, self-supervised denoiser, end-to-end, unrolled, an
unrolled MRI network with its learned sampling design or a phase-retrieval network with its
learned coded masks (acquisition), the network of
incremental-reconstruction diffusion (dirac), and the variational auto-encoder whose decoder
is the generator of ``csgm``."""
#: tasks that train a network for one operator (they need ``operator``)
OPERATOR_TASKS = ("end-to-end", "unrolled", "acquisition", "dirac")

#: architectures with an identity skip (output = input - predicted noise): a blind-spot
#: (Noise2Self) network of this kind passes the noise through when applied to a whole image
RESIDUAL_ARCHITECTURES = ("dncnn",)

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass
class TrainSpec:
    """Everything needed to reproduce a training run (saved in the weights' sidecar).

    ``data`` is a :func:`~napari_invrec.core.training.datasets.make_source` spec (``atoms``,
    ``phantoms``, ``mixed``, ``natural``, ``skimage:NAME,..``, ``folder:PATH``) or
    ``"arrays"`` / ``"arrays:LABEL"`` when the images are passed in (e.g. a napari layer);
    any of them with ``+aug`` for varied pixel sizes and intensities
    (:class:`~napari_invrec.core.training.datasets.AugmentedPatches`).
    """

    task: str = "denoiser"
    arch: str = "drunet"
    arch_kwargs: dict = field(default_factory=dict)
    data: str = "mixed"
    steps: int = 1000
    batch: int = 16
    patch: int = 48
    lr: float = 1e-3
    seed: int = 0
    sigma_min: float = 0.0
    sigma_max: float = 0.2
    sigma_dist: str = "uniform"
    data_sigma: float | None = None
    operator: str | None = None
    op_params: dict = field(default_factory=dict)
    noise_sigma: float = 0.01
    init: str = "pinv"
    supervision: str = "supervised"
    #: SSDU: the fraction of a measurement's samples held out for the loss (the network sees
    #: the rest; a smaller fraction trains it on inputs closer to the full measurement)
    split: float = SSDU_SPLIT
    #: SSDU: independent splits of each measurement per step (multi-mask SSDU; 1 = one)
    masks: int = 1
    #: SSDU on MRI: hold out whole k-space columns (True) or single samples (False)
    split_lines: bool = True
    beta: float = 1e-3
    device: str = "auto"
    val_every: int = 50
    checkpoint_every: int = 100
    name: str = "my-denoiser"
    out: str | None = None
    checkpoint: str | None = None
    resume: str | None = None
    #: start the network from these installed weights (fine-tuning; same architecture and
    #: kwargs) instead of a random initialisation
    init_weights: str | None = None
    register: bool = True


@dataclass
class TrainPlan:
    """A checked spec with its network, loop generator and resolved paths."""

    spec: TrainSpec
    model: Any
    loop: Any
    out: Path
    checkpoint: Path
    operator: dict | None = None
    extra_meta: dict = field(default_factory=dict)
    #: the learned sampling design of an ``acquisition`` run (saved in the sidecar)
    design: Any = None


# ---------------------------------------------------------------- checks
def estimate_noise_sigma(images: list[np.ndarray]) -> float:
    r"""Robust noise std of images: :func:`~napari_invrec.core.analysis.noise.haar_mad_sigma`
    over the finest Haar diagonal coefficients of all ``images``."""
    from ..core.analysis.noise import haar_mad_sigma

    return float(haar_mad_sigma(images) or 0.0)


def check_training_arrays(arrays: Any, patch: int, label: str = "training image"
                          ) -> list[np.ndarray]:
    """The user's images as a list of 2-D float32 arrays, or a clear :class:`InputError`.

    Accepts one 2-D image, a ``(N, H, W)`` stack or a list of them. RGB, integer, boolean,
    complex, NaN/inf or images smaller than ``patch`` are refused.
    """
    from ..core.validation import check_image_array

    items = [arrays] if isinstance(arrays, np.ndarray) or hasattr(arrays, "shape") \
        else list(arrays)
    out: list[np.ndarray] = []
    for i, a in enumerate(items):
        a = np.asarray(a)
        name = label if len(items) == 1 else f"{label} {i}"
        if a.ndim == 3 and a.shape[-1] not in (3, 4):
            out.extend(check_image_array(s, f"{name} plane {j}") for j, s in enumerate(a))
        else:
            out.append(check_image_array(a, name))
    if not out:
        raise InputError("no training images given; pick an image layer or another data source")
    for a in out:
        if min(a.shape) < patch:
            raise InputError(f"{label} of shape {a.shape} is smaller than the patch size "
                             f"{patch}; lower the patch size to at most {min(a.shape)}")
    return out


def _parse_kwargs(value: Any, what: str) -> dict:
    if isinstance(value, str):
        try:
            value = json.loads(value or "{}")
        except json.JSONDecodeError as e:
            raise InputError(f"{what} is not valid JSON ({e}); write e.g. '{{\"width\": 16}}'") \
                from e
    if not isinstance(value, dict):
        raise InputError(f"{what} must be a JSON object, e.g. '{{\"width\": 16}}'")
    return dict(value)


def _check_scalars(spec: TrainSpec) -> None:
    from ..core.training.loops import _check_common

    _check_common(spec.steps, spec.batch, spec.patch, spec.lr)
    if spec.patch < 8:
        raise InputError(f"patch must be >= 8 pixels, got {spec.patch}")
    if spec.task not in TASKS:
        raise InputError(f"unknown training task {spec.task!r}; choose one of {TASKS}")
    if not 0.0 <= spec.sigma_min <= spec.sigma_max:
        raise InputError("the noise range must satisfy 0 <= sigma_min <= sigma_max, got "
                         f"{spec.sigma_min}, {spec.sigma_max}")
    if spec.sigma_dist == "log-uniform" and spec.sigma_min <= 0:
        raise InputError("a log-uniform noise range needs sigma_min > 0 (e.g. 0.002), got "
                         f"{spec.sigma_min}")
    if not (np.isfinite(spec.beta) and spec.beta >= 0):
        raise InputError(f"beta (VAE KL weight) must be >= 0, got {spec.beta}")
    for task in ("vae", "dirac"):
        if (spec.task == task) != (spec.arch == task):
            raise InputError(f"task {task!r} trains the {task!r} architecture and only that: "
                             f"use --task {task} --arch {task}")
    if spec.supervision != "supervised" and spec.task != "unrolled":
        raise InputError(f"supervision {spec.supervision!r} trains unrolled networks; use "
                         f"task 'unrolled' (or supervision 'supervised' for {spec.task!r})")
    if spec.data_sigma is not None and not spec.data_sigma > 0:
        raise InputError(f"data_sigma must be > 0 (or empty: estimated), got {spec.data_sigma}")
    for n in ("val_every", "checkpoint_every"):
        if int(getattr(spec, n)) < 1:
            raise InputError(f"{n} must be >= 1, got {getattr(spec, n)}")
    if not _NAME_RE.match(spec.name or ""):
        raise InputError(f"weights name {spec.name!r} must start with a letter or digit and use "
                         "only letters, digits, '.', '_' and '-'")


def _paths(spec: TrainSpec) -> tuple[Path, Path]:
    from ..core.models.registry import user_weights_dir

    if spec.out:
        out = Path(spec.out).expanduser()
        if not out.parent.is_dir():
            raise InputError(f"output folder {str(out.parent)!r} does not exist; create it or "
                             "pick another weights file")
    else:
        folder = user_weights_dir()
        folder.mkdir(parents=True, exist_ok=True)
        out = folder / f"{spec.name}.pt"
    ckpt = Path(spec.checkpoint).expanduser() if spec.checkpoint else Path(str(out) + ".ckpt")
    if not ckpt.parent.is_dir():
        raise InputError(f"checkpoint folder {str(ckpt.parent)!r} does not exist")
    if spec.resume and not Path(spec.resume).expanduser().is_file():
        raise InputError(f"checkpoint to resume {spec.resume!r} does not exist; clear 'resume' "
                         "to start from scratch")
    return out, ckpt


def _check_arch(spec: TrainSpec) -> None:
    """Refuse an unknown architecture, or ``arch_kwargs`` whose network could not be loaded
    from its weights later (unknown names, values out of range, too many parameters), before
    anything is built or written."""
    from ..core.models.registry import ARCHITECTURES, check_architecture_kwargs

    if spec.arch not in ARCHITECTURES:
        raise InputError(f"unknown architecture {spec.arch!r}; choose one of "
                         f"{', '.join(ARCHITECTURES)}")
    try:
        check_architecture_kwargs(spec.arch, spec.arch_kwargs, fix="fix arch_kwargs "
                                  "(--arch-kwargs; in the Train widget, a smaller width)")
    except InputError as e:
        raise InputError(f"bad arch_kwargs for {spec.arch!r}: {e}") from None


def _takes(arch: str, kwarg: str) -> bool:
    """Whether architecture ``arch``'s constructor takes ``kwarg`` (False for unknown ones)."""
    import inspect

    from ..core.models.registry import ARCHITECTURES

    cls = ARCHITECTURES.get(arch)
    return cls is not None and kwarg in inspect.signature(cls).parameters


def _model(spec: TrainSpec) -> Any:
    """The untrained network (``spec`` checked by :func:`_check_arch`), its initial weights
    drawn from ``spec.seed`` (the global torch random state is left as it was), so that a seed
    fixes the whole training."""
    import torch

    from ..core.models.registry import ARCHITECTURES

    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(spec.seed))
            model = ARCHITECTURES[spec.arch](**spec.arch_kwargs)
    except (TypeError, ValueError) as e:
        raise InputError(f"bad arch_kwargs for {spec.arch!r}: {e}") from e
    if spec.init_weights:
        _start_from(model, spec)
    return model


def _start_from(model: Any, spec: TrainSpec) -> None:
    """Copy the installed weights ``spec.init_weights`` into ``model`` (same architecture
    and constructor kwargs, else an :class:`InputError` saying what differs)."""
    from ..core.models.registry import architecture_name, load_model

    start = load_model(str(spec.init_weights), device="cpu")
    arch = architecture_name(start)
    kwargs = dict(getattr(start, "config", {}))
    if arch != spec.arch or kwargs != dict(getattr(model, "config", {})):
        raise InputError(f"init_weights {spec.init_weights!r} is {arch} {kwargs}; train the "
                         f"same network to start from it (--arch {arch} --arch-kwargs "
                         f"'{json.dumps(kwargs, sort_keys=True)}')")
    model.load_state_dict(start.state_dict())


def _operator_factory(spec: TrainSpec) -> Any:
    from ..core.operators.registry import OPERATORS, make_operator

    if not spec.operator:
        raise InputError(f"task {spec.task!r} needs an operator (e.g. blur, inpaint, mri)")
    if spec.operator not in OPERATORS:
        raise InputError(f"unknown operator {spec.operator!r}; available: "
                         f"{', '.join(sorted(OPERATORS))}")
    if spec.init not in ("pinv", "adjoint"):
        raise InputError(f"init must be 'pinv' or 'adjoint', got {spec.init!r}")
    if spec.noise_sigma < 0:
        raise InputError(f"noise_sigma must be >= 0, got {spec.noise_sigma}")
    # built once here so that bad operator parameters fail before any training
    make_operator(spec.operator, (spec.patch, spec.patch), **spec.op_params)

    def factory(shape: tuple[int, int], dev: Any) -> Any:
        return make_operator(spec.operator, tuple(shape), device=dev, **spec.op_params)

    return factory


# ---------------------------------------------------------------- plan and run
def _loop(spec: TrainSpec, model: Any, arrays: list[np.ndarray] | None, dev: Any,
          ckpt: Path, stack: MeasurementStack | None = None) -> tuple[Any, dict | None, dict]:
    """The loop generator of ``spec.task``, the operator spec (operator tasks) and extra meta
    (for ``acquisition``, ``extra["design"]`` is the design being learned)."""
    from ..core.training import loops
    from ..core.training.datasets import ArrayPatches, AugmentedPatches, make_source

    common = {"steps": int(spec.steps), "batch": int(spec.batch), "patch": int(spec.patch),
              "lr": float(spec.lr), "seed": int(spec.seed), "device": dev,
              "val_every": int(spec.val_every), "resume": spec.resume, "checkpoint": ckpt,
              "checkpoint_every": int(spec.checkpoint_every)}
    if stack is not None:
        return measurement_loop(spec, model, stack, dev, common)
    augmented = spec.data.endswith("+aug")
    if spec.task == "noise2self":
        if augmented:
            raise InputError("noise2self learns from the noisy data as it is: drop '+aug' "
                             "(its scale, contrast and blur changes alter the noise)")
        if spec.arch in RESIDUAL_ARCHITECTURES:
            raise InputError(f"{spec.arch} predicts the noise and subtracts it (identity skip); "
                             "trained self-supervised it would pass the noise through when "
                             "used as a denoiser: pick drunet for noise2self")
        if arrays is None:
            src = make_source(spec.data, seed=spec.seed)
            if hasattr(src, "images"):
                arrays = check_training_arrays(src.images, spec.patch)
            elif spec.data_sigma is None:
                raise InputError("noise2self learns from noisy images: pick an image layer, "
                                 "arrays or a folder:PATH, or give data_sigma to add Gaussian "
                                 "noise of that std to draws of the synthetic generator")
            else:
                arrays = noisy_draws(src, spec.patch, spec.data_sigma, spec.seed)
        cond = loops.is_conditional(model)
        sigma = spec.data_sigma if spec.data_sigma is not None else (
            estimate_noise_sigma(arrays) if cond else None)
        if cond and not sigma:
            raise InputError("could not estimate the noise level of the data (it looks "
                             "noise-free); give data_sigma")
        loop = loops.train_noise2self(model, arrays, sigma=sigma, **common)
        return loop, None, {"data_sigma": sigma}
    if arrays is not None:
        source = ArrayPatches(arrays, spec=spec.data.removesuffix("+aug"))
        source = AugmentedPatches(source) if augmented else source
    else:
        source = make_source(spec.data, seed=spec.seed)
    if spec.task == "vae":
        from ..core.training.vae import train_vae

        return train_vae(model, source, beta=float(spec.beta), **common), None, \
            {"beta": float(spec.beta)}
    if spec.task == "denoiser":
        loop = loops.train_denoiser(model, source, sigma_range=(spec.sigma_min, spec.sigma_max),
                                    sigma_dist=spec.sigma_dist, **common)
        return loop, None, {}
    from ..core.training.operator_nets import train_end_to_end, train_unrolled

    factory = _operator_factory(spec)
    if (spec.arch == "unrolled-phase") != (spec.operator == "phase"):
        raise InputError("phase retrieval trains the unrolled-phase network (task unrolled, or "
                         "acquisition to learn its coded masks), and that network only phase "
                         f"retrieval: got arch {spec.arch!r} for operator {spec.operator!r}")
    op = factory((spec.patch, spec.patch), dev)
    op_spec = op.spec()
    if spec.task == "acquisition":
        if spec.operator == "phase":
            from ..core.training.coded_masks import train_coded_masks as train_design
        else:
            from ..core.training.acquisition import train_acquisition as train_design

        loop, design = train_design(model, source, factory, noise_sigma=spec.noise_sigma,
                                    **common)
        return loop, op_spec, {"noise_sigma": spec.noise_sigma, "design": design}
    if spec.task == "dirac":
        from ..core.training.dirac import train_dirac

        loop = train_dirac(model, source, factory, noise_sigma=spec.noise_sigma, **common)
        return loop, op_spec, {"noise_sigma": spec.noise_sigma}
    if spec.task == "end-to-end":
        loop = train_end_to_end(model, source, factory, init=spec.init,
                                noise_sigma=spec.noise_sigma, **common)
        return loop, op_spec, {"init": spec.init, "noise_sigma": spec.noise_sigma}
    loop = train_unrolled(model, source, factory, noise_sigma=spec.noise_sigma,
                          supervision=spec.supervision, **ssdu_settings(spec), **common)
    extra = {"noise_sigma": spec.noise_sigma}
    if spec.supervision != "supervised":
        extra["supervision"] = spec.supervision
    if spec.supervision == "ssdu":
        extra |= ssdu_settings(spec)
    return loop, op_spec, extra


def prepare_training(spec: TrainSpec, *, arrays: Any = None,
                     measurements: MeasurementStack | None = None) -> TrainPlan:
    """Check ``spec`` (and ``arrays`` or ``measurements``) and build the network and the loop
    generator.

    Raises
    ------
    InputError
        Unknown task/architecture/operator/device, bad ``arch_kwargs``/``op_params`` JSON,
        ``arch_kwargs`` that make a network the weights registry would refuse to load,
        a task that needs arrays without them (or arrays with another data spec), RGB/integer/
        NaN/too-small arrays, a missing output folder or resume file, a shipped network's name.
    """
    from ..core.models.registry import WEIGHTS_DIR, read_manifest
    from .device import choose_device

    spec = dataclasses.replace(spec, arch_kwargs=_parse_kwargs(spec.arch_kwargs, "arch_kwargs"),
                               op_params=_parse_kwargs(spec.op_params, "op_params"))
    _check_scalars(spec)
    if spec.data.endswith("+aug") and spec.data.startswith("measurements"):
        raise InputError("'+aug' varies clean training images; measurements are used as "
                         "they are: drop '+aug'")
    spec = stack_spec(spec, measurements)
    if spec.supervision == "ssdu" and _takes(spec.arch, "final_dc"):
        # measurement splitting needs the final data-consistency step (recorded in kwargs)
        spec.arch_kwargs.setdefault("final_dc", True)
    _check_arch(spec)
    base = spec.data.removesuffix("+aug")
    is_arrays = base == "arrays" or base.startswith("arrays:")
    if is_arrays and arrays is None:
        raise InputError(f"data {spec.data!r} needs images: pick an image layer or pass arrays")
    if arrays is not None and not is_arrays:
        raise InputError(f"arrays were given but data is {spec.data!r}; set data='arrays'")
    checked = check_training_arrays(arrays, spec.patch) if arrays is not None else None
    if spec.register and spec.name in read_manifest(WEIGHTS_DIR / "manifest.json"):
        raise InputError(f"{spec.name!r} is a shipped network's name; pick another name")
    out, ckpt = _paths(spec)
    dev = choose_device(spec.device)
    model = _model(spec)
    loop, op_spec, extra = _loop(spec, model, checked, dev, ckpt, measurements)
    design = extra.pop("design", None)
    return TrainPlan(spec=spec, model=model, loop=loop, out=out, checkpoint=ckpt,
                     operator=op_spec, extra_meta=extra, design=design)


def train_command(spec: TrainSpec, out: str | Path | None = None) -> str:
    """An equivalent ``napari-invrec train ...`` command line for ``spec``."""
    s = spec
    args = ["train", "--task", s.task, "--arch", s.arch,
            "--arch-kwargs", json.dumps(s.arch_kwargs, sort_keys=True), "--data", s.data,
            "--steps", str(s.steps), "--batch", str(s.batch), "--patch", str(s.patch),
            "--lr", f"{s.lr:g}", "--seed", str(s.seed), "--device", s.device]
    if s.task == "denoiser":
        args += ["--sigma-min", f"{s.sigma_min:g}", "--sigma-max", f"{s.sigma_max:g}"]
        if s.sigma_dist != "uniform":
            args += ["--sigma-dist", s.sigma_dist]
    if s.task == "vae":
        args += ["--beta", f"{s.beta:g}"]
    if s.task == "noise2self" and s.data_sigma is not None:
        args += ["--data-sigma", f"{s.data_sigma:g}"]
    if s.task in OPERATOR_TASKS:
        args += ["--operator", str(s.operator), "--op-params",
                 json.dumps(s.op_params, sort_keys=True, default=str),
                 "--noise-sigma", f"{s.noise_sigma:g}", "--init", s.init]
        if s.supervision != "supervised":
            args += ["--supervision", s.supervision]
        if s.supervision == "ssdu":
            args += ["--split", f"{s.split:g}"] + (["--masks", str(s.masks)]
                                                    if s.masks != 1 else [])
            if not s.split_lines:
                args.append("--split-samples")
    args += ["--name", s.name, "--out", str(out or s.out or f"{s.name}.pt")]
    if s.init_weights:
        args += ["--init-weights", str(s.init_weights)]
    if s.resume:
        args += ["--resume", str(s.resume)]
    return "napari-invrec " + shlex.join(args)


def _metrics(last: TrainState, task: str) -> dict:
    m = {"final_loss": float(last.loss), "train_seconds": float(last.elapsed),
         "steps": int(last.step)}
    if last.val_psnr is not None:
        m["val_psnr"] = float(last.val_psnr)
    for k in ("noisy_psnr", "init_psnr", "val_loss", "const_psnr", "val_kl"):
        if last.extras.get(k) is not None:
            m[k] = float(last.extras[k])
    return m


def _description(spec: TrainSpec, metrics: dict) -> str:
    what = {"denoiser": "supervised Gaussian denoiser",
            "noise2self": "self-supervised (Noise2Self) denoiser",
            "end-to-end": f"end-to-end network for {spec.operator}",
            "unrolled": f"unrolled network for {spec.operator}",
            "acquisition": f"unrolled network for {spec.operator} with its learned sampling "
                           "pattern",
            "dirac": f"incremental-reconstruction network for {spec.operator}",
            "vae": "variational auto-encoder (generator for csgm)"}[spec.task]
    fig = (f", validation PSNR {metrics['val_psnr']:.2f} dB" if "val_psnr" in metrics else "")
    return f"{spec.arch} {what} trained on {spec.data} ({spec.steps} steps{fig})"


def execute_training(plan: TrainPlan, command: str | None = None, *, threads: int | None = None
                     ) -> Generator[TrainState, None, Any]:
    """Drive ``plan``'s loop, yielding every state; then save, write the sidecar, register.

    ``threads`` caps torch's CPU threads while training (e.g. to keep a GUI responsive).

    Returns
    -------
    WeightsEntry
        The manifest entry of the saved weights (``file`` the full path).
    """
    from ..core.models.registry import register_weights, save_model
    from ..core.threads import torch_threads
    from .provenance import package_version

    spec = plan.spec
    t0 = time.perf_counter()
    last = None
    with torch_threads(threads):
        for last in plan.loop:
            yield last
    if last is None:
        raise InputError(f"nothing to train: the checkpoint {spec.resume!r} is already at step "
                         f">= steps ({spec.steps}); raise steps or clear 'resume'")
    metrics = _metrics(last, spec.task) | plan.extra_meta  # figures and the init/noise used
    metrics["wall_seconds"] = time.perf_counter() - t0
    cmd = command or train_command(spec, plan.out)
    # a self-supervised denoiser is still a denoiser for plug-and-play methods; an
    # acquisition run's network is an unrolled network for its learned pattern
    task = {"noise2self": "denoiser", "acquisition": "unrolled"}.get(spec.task, spec.task)
    operator = plan.operator
    if plan.design is not None:
        # the network was tuned to its design (the sidecar written below holds it)
        operator = {**operator, "params": {
            **operator["params"], **plan.design.operator_params(str(plan.out) + ".json")}}
    meta = {"name": spec.name, "task": task, "data": spec.data, "seed": int(spec.seed),
            "training": spec.task if spec.task != task else (
                spec.supervision if spec.supervision != "supervised" else ""),
            "train_command": cmd, "operator": operator, "metrics": metrics,
            "description": _description(spec, metrics)}
    entry = save_model(plan.model, plan.out, meta)
    entry.file = str(plan.out)
    record = {"kind": "weights", "package": "napari-invrec", "version": package_version(),
              "command": cmd, "spec": dataclasses.asdict(spec), "training": spec.task,
              "architecture": entry.architecture, "kwargs": entry.kwargs,
              "operator": operator, "metrics": metrics, "checkpoint": str(plan.checkpoint),
              "sha256": entry.sha256, **plan.extra_meta}
    if plan.design is not None:
        record[plan.design.record_key] = plan.design.record()
    Path(str(plan.out) + ".json").write_text(json.dumps(record, indent=2, default=str) + "\n")
    if spec.register:
        register_weights(entry)
    return entry


#: noisy images Noise2Self draws from a synthetic generator
N2S_DRAWS = 32


def noisy_draws(src: Any, patch: int, sigma: float, seed: int) -> list[np.ndarray]:
    """:data:`N2S_DRAWS` draws of the generator ``src`` (``max(4 patch, 256)`` px, seed
    ``[seed, 5]``) plus Gaussian noise of std ``sigma`` (seed ``[seed, 6]``), float32."""
    n = max(4 * int(patch), 256)
    clean = src.sample(N2S_DRAWS, n, np.random.default_rng([int(seed), 5]))
    rng = np.random.default_rng([int(seed), 6])
    noisy = clean.numpy()[:, 0] + float(sigma) * rng.standard_normal((N2S_DRAWS, n, n))
    return [a.astype(np.float32) for a in noisy]


def run_training(spec: TrainSpec, *, arrays: Any = None,
                 measurements: MeasurementStack | None = None, command: str | None = None
                 ) -> Generator[TrainState, None, Any]:
    """Check ``spec`` now and return the generator that trains, saves and registers.

    The spec is checked when this is called (an :class:`InputError` at once); iterate the
    result to train (``StopIteration.value`` / ``yield from`` gives the
    :class:`~napari_invrec.core.models.registry.WeightsEntry`). Closing it early writes no
    weights and registers nothing.
    """
    return execute_training(prepare_training(spec, arrays=arrays, measurements=measurements),
                            command)
