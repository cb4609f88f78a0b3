"""The ``napari-invrec train`` sub-command, on the shared training engine.

The options become a :class:`~napari_invrec.engine.training.TrainSpec`;
:func:`~napari_invrec.engine.training.run_training` checks it, trains, writes the weights, a
resumable checkpoint and ``OUT.json`` (the exact command line, the spec, the final figures)
and registers the weights in the user manifest, so ``napari-invrec reconstruct`` and the GUI
can use them by name at once. Errors print one line and exit with status 2.
"""

from __future__ import annotations

import argparse
import json
import shlex
from pathlib import Path
from typing import Any

from .cli_files import CLIError, read_array

__all__ = ["add_train_parser", "cmd_train", "spec_from_args"]


def add_train_parser(sub: Any) -> None:
    """Add the ``train`` sub-command to the sub-parsers ``sub``."""
    from .core.training.operator_nets import SSDU_SPLIT, SUPERVISIONS
    from .engine.training import TASKS

    p = sub.add_parser(
        "train", help="train a network (learned prior) on allowed data",
        description="Train a network, write its weights, a checkpoint and a JSON sidecar "
        "OUT.json (exact command, spec, final figures) and register it in the user weights "
        "manifest. Data: atoms, phantoms, mixed (synthetic), natural (the allowed "
        "scikit-image images), general (natural and synthetic), skimage:NAME[,NAME...], "
        "folder:PATH, or file:PATH (a .tif/.png/.npy image or (N, H, W) stack, e.g. the "
        "noisy data itself for noise2self); for an unrolled network learning by ssdu or ei, "
        "measurements:PATH (a .npy stack of measurements, complex for k-space, all taken "
        "through --operator/--op-params/--mask-array).")
    p.add_argument("--task", default="denoiser", choices=list(TASKS),
                   help="denoiser: supervised Gaussian denoiser (default); noise2self: "
                   "self-supervised denoiser from noisy images; end-to-end: post-processing "
                   "network for one operator; unrolled: unrolled network for one operator; "
                   "acquisition: unrolled MRI network (e.g. varnet) and its k-space sampling "
                   "pattern learned together (LOUPE), or the phase-retrieval network "
                   "(--arch unrolled-phase --operator phase) and its coded masks (the design "
                   "goes into OUT.json); dirac: the "
                   "network of incremental-reconstruction diffusion (--arch dirac) for blur or "
                   "inpaint; vae: "
                   "variational auto-encoder (--arch vae), the generator of the csgm method")
    p.add_argument("--arch", default="drunet",
                   help="architecture from napari_invrec.core.models (default drunet)")
    p.add_argument("--arch-kwargs", default="{}", metavar="JSON",
                   help='constructor arguments as JSON, e.g. \'{"width": 16}\'')
    p.add_argument("--data", default="mixed",
                   help="training data spec (default mixed); append +aug (e.g. general+aug) "
                        "to vary the pixel size, contrast, gamma, polarity and blur")
    p.add_argument("--steps", type=int, default=1000, help="optimiser steps (default 1000)")
    p.add_argument("--batch", type=int, default=16, help="patches per step (default 16)")
    p.add_argument("--patch", type=int, default=48, help="patch size in pixels (default 48)")
    p.add_argument("--lr", type=float, default=1e-3,
                   help="initial Adam learning rate, cosine-decayed (default 1e-3)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or mps (default auto)")
    g = p.add_argument_group("denoisers")
    g.add_argument("--sigma-min", type=float, default=0.0,
                   help="denoiser: smallest training noise std (default 0)")
    g.add_argument("--sigma-max", type=float, default=0.2,
                   help="denoiser: largest training noise std (default 0.2)")
    g.add_argument("--sigma-dist", default="uniform", choices=["uniform", "log-uniform"],
                   help="denoiser: noise-level distribution; log-uniform (with loss weights) "
                   "for a diffusion score model spanning decades (needs --sigma-min > 0)")
    g.add_argument("--data-sigma", type=float, default=None,
                   help="noise2self: noise std of the data for a noise-conditional network "
                   "(default: estimated)")
    g = p.add_argument_group("end-to-end and unrolled")
    g.add_argument("--operator", help="operator family the network is trained for (e.g. blur)")
    g.add_argument("--op-params", default="{}", metavar="JSON",
                   help='operator parameters as JSON, e.g. \'{"sigma": 2.0}\'')
    g.add_argument("--noise-sigma", type=float, default=0.01,
                   help="Gaussian noise std of the simulated measurements (default 0.01)")
    g.add_argument("--supervision", default="supervised", choices=list(SUPERVISIONS),
                   help="unrolled: learn from ground truth (default) or from the measurements "
                   "alone, by splitting their samples (ssdu; inpaint and mri) or by "
                   "equivariance to rotations and shifts (ei; any linear operator)")
    g.add_argument("--split", type=float, default=SSDU_SPLIT,
                   help="ssdu: fraction of each measurement's samples held out for the loss "
                   f"(default {SSDU_SPLIT})")
    g.add_argument("--masks", type=int, default=1,
                   help="ssdu: independent splits of each measurement per step (multi-mask "
                   "SSDU: more held-out samples per step for as many times the work; "
                   "default 1)")
    g.add_argument("--split-samples", dest="split_lines", action="store_false",
                   help="ssdu on mri: hold out single k-space samples rather than whole "
                   "columns (inputs with partly measured columns: a wider variety of masks)")
    g.add_argument("--mask-array", metavar="FILE",
                   help="with --data measurements:PATH: the operator's measured-sample mask "
                   "(.npy/.tif; nonzero = measured)")
    g.add_argument("--init", default="pinv", choices=["pinv", "adjoint"],
                   help="initial reconstruction fed to an end-to-end network (default pinv)")
    g = p.add_argument_group("vae")
    g.add_argument("--beta", type=float, default=1e-3,
                   help="vae: weight of the KL term per pixel (default 0.001)")
    g = p.add_argument_group("output")
    g.add_argument("--name", help="name the weights are registered under (default: the stem "
                   "of --out)")
    g.add_argument("--out", metavar="FILE",
                   help="weights file (.pt; default NAME.pt in the user weights folder)")
    g.add_argument("--register", action=argparse.BooleanOptionalAction, default=True,
                   help="add the weights to the user manifest (default yes)")
    g.add_argument("--val-every", type=int, default=50,
                   help="validate every N steps (default 50)")
    g.add_argument("--checkpoint", metavar="FILE",
                   help="training checkpoint to write (default OUT.ckpt)")
    g.add_argument("--checkpoint-every", type=int, default=100,
                   help="write the checkpoint every N steps (default 100)")
    g.add_argument("--resume", metavar="FILE", help="continue from this checkpoint")
    g.add_argument("--init-weights", metavar="NAME", default=None,
                   help="start from these installed weights (fine-tuning; same --arch and "
                   "--arch-kwargs) instead of a random initialisation")
    g.add_argument("--quiet", action="store_true", help="print nothing but errors")


def _json_object(text: str, option: str, example: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise CLIError(f"{option} is not valid JSON ({e}); write e.g. '{example}'") from e
    if not isinstance(value, dict):
        raise CLIError(f"{option} must be a JSON object, e.g. '{example}'")
    return value


def _measurement_stack(path: str, ns: argparse.Namespace, op_params: dict) -> Any:
    """The :class:`~napari_invrec.engine.training.MeasurementStack` of ``--data
    measurements:PATH``: the file's ``(N, ...)`` stack (one measurement if 2-D) and the
    operator of ``--operator``/``--op-params``/``--mask-array`` at its size."""
    import numpy as np

    from .core.errors import InputError
    from .core.operators.registry import measurement_spec
    from .engine.measurement_training import MeasurementStack

    if Path(path).suffix.lower() != ".npy":
        raise CLIError(f"measurements file {path!r}: give a .npy stack (N, ...) of measurements")
    data = read_array(path, "measurements")
    mshape = data.shape if data.ndim == 2 else data.shape[1:]
    arrays = {"mask_array": read_array(ns.mask_array, "mask-array")} if ns.mask_array else {}
    try:
        spec = measurement_spec(ns.operator, tuple(mshape), **op_params, **arrays)
    except InputError as e:
        raise CLIError(str(e)) from e
    return MeasurementStack(np.asarray(data), spec, arrays)


def spec_from_args(ns: argparse.Namespace) -> tuple[Any, Any, Any]:
    """The :class:`~napari_invrec.engine.training.TrainSpec` of the parsed options, the images
    of a ``file:PATH`` data spec and the measurement stack of ``measurements:PATH`` (each
    ``None`` otherwise)."""
    from .engine.training import OPERATOR_TASKS, TrainSpec

    arch_kwargs = _json_object(ns.arch_kwargs, "--arch-kwargs", '{"width": 16}')
    op_params = _json_object(ns.op_params, "--op-params", '{"sigma": 2.0}')
    if ns.task in OPERATOR_TASKS and not ns.operator:
        raise CLIError(f"--task {ns.task} needs --operator (e.g. --operator blur --op-params "
                       "'{\"sigma\": 2.0}')")
    name = ns.name or (Path(ns.out).stem if ns.out else None)
    if not name:
        raise CLIError("give --name (the weights' name) or --out FILE.pt")
    data, arrays, stack = ns.data, None, None
    if data.startswith("file:"):
        path = data[len("file:"):]
        arrays = read_array(path, "training image")
        data = f"arrays:{Path(path).name}"
    elif data.startswith("measurements:"):
        stack = _measurement_stack(data[len("measurements:"):], ns, op_params)
    elif ns.mask_array:
        raise CLIError("--mask-array goes with --data measurements:PATH (the measurements' "
                       "mask); simulated training draws its masks from --op-params")
    spec = TrainSpec(task=ns.task, arch=ns.arch, arch_kwargs=arch_kwargs, data=data,
                     steps=ns.steps, batch=ns.batch, patch=ns.patch, lr=ns.lr, seed=ns.seed,
                     sigma_min=ns.sigma_min, sigma_max=ns.sigma_max,
                     sigma_dist=ns.sigma_dist, data_sigma=ns.data_sigma,
                     operator=ns.operator, op_params=op_params, noise_sigma=ns.noise_sigma,
                     init=ns.init, supervision=ns.supervision, split=ns.split,
                     masks=ns.masks, split_lines=ns.split_lines, beta=ns.beta,
                     device=ns.device, val_every=ns.val_every,
                     checkpoint_every=ns.checkpoint_every, name=name, out=ns.out,
                     checkpoint=ns.checkpoint, resume=ns.resume,
                     init_weights=ns.init_weights, register=ns.register)
    return spec, arrays, stack


def _progress(state: Any) -> str:
    val = "" if state.val_psnr is None else f"  val_psnr={state.val_psnr:.2f} dB"
    return (f"  step {state.step}/{state.total}  loss={state.loss:.3e}{val}  "
            f"lr={state.lr:.2e}  {state.elapsed:.1f} s")


def cmd_train(ns: argparse.Namespace, argv: list[str]) -> int:
    """Run ``napari-invrec train``: build the spec, train on the engine, report."""
    from .engine.training import run_training

    spec, arrays, stack = spec_from_args(ns)
    command = "napari-invrec " + shlex.join(argv)
    gen = run_training(spec, arrays=arrays, measurements=stack, command=command)
    every = max(1, spec.steps // 20)
    entry = None
    while True:
        try:
            state = next(gen)
        except StopIteration as stop:
            entry = stop.value
            break
        if not ns.quiet and (state.step % every == 0 or state.step == state.total):
            print(_progress(state), flush=True)
    if not ns.quiet:
        m = entry.metrics or {}
        fig = "" if m.get("val_psnr") is None else f", validation PSNR {m['val_psnr']:.2f} dB"
        base = m.get("noisy_psnr", m.get("init_psnr"))
        fig += "" if base is None or not fig else f" (input {base:.2f} dB)"
        reg = f"; registered as {entry.name!r}" if spec.register else ""
        print(f"wrote {entry.file} and {entry.file}.json: {spec.arch} {spec.task}, final loss "
              f"{m.get('final_loss', float('nan')):.3e}{fig}{reg}")
    return 0
