"""The ``napari-invrec train`` sub-command: train a network on allowed data and record how.

Writes the weights, a resumable checkpoint and ``OUT.json`` with the exact command line, seed,
data spec and final figures (the record shipped weights keep beside them).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from .cli import CLIError, write_sidecar


def add_train_parser(sub: Any) -> None:
    """Add the ``train`` sub-command to the sub-parsers ``sub``."""
    p = sub.add_parser("train", help="train a network (learned prior) on allowed data",
                       description="Train a network and write its weights, a checkpoint and "
                       "a JSON sidecar OUT.json with the exact command, seed, data and final "
                       "figures. Data: atoms, phantoms, mixed (synthetic), natural (the allowed "
                       "scikit-image images), skimage:NAME[,NAME...] or folder:PATH.")
    p.add_argument("--task", default="denoiser", choices=["denoiser"],
                   help="what to train (default denoiser: supervised Gaussian denoiser)")
    p.add_argument("--arch", required=True,
                   help="architecture from napari_invrec.core.models (e.g. drunet, dncnn)")
    p.add_argument("--arch-kwargs", default="{}", metavar="JSON",
                   help='constructor arguments as JSON, e.g. \'{"width": 16}\'')
    p.add_argument("--data", default="mixed", help="training data spec (default mixed)")
    p.add_argument("--steps", type=int, default=1000, help="optimiser steps (default 1000)")
    p.add_argument("--batch", type=int, default=16, help="patches per step (default 16)")
    p.add_argument("--patch", type=int, default=48, help="patch size in pixels (default 48)")
    p.add_argument("--sigma-min", type=float, default=0.0,
                   help="smallest training noise std (default 0)")
    p.add_argument("--sigma-max", type=float, default=0.2,
                   help="largest training noise std (default 0.2)")
    p.add_argument("--lr", type=float, default=1e-3,
                   help="initial Adam learning rate, cosine-decayed (default 1e-3)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or mps (default auto)")
    p.add_argument("--val-every", type=int, default=50,
                   help="validate every N steps (default 50)")
    p.add_argument("--out", required=True, metavar="FILE", help="weights file (.pt)")
    p.add_argument("--checkpoint", metavar="FILE",
                   help="training checkpoint to write (default OUT.ckpt)")
    p.add_argument("--checkpoint-every", type=int, default=100,
                   help="write the checkpoint every N steps (default 100)")
    p.add_argument("--resume", metavar="FILE", help="continue from this checkpoint")
    p.add_argument("--quiet", action="store_true", help="print nothing but errors")


def architecture(name: str) -> Any:
    """The model class (or factory) registered as ``name`` in ``napari_invrec.core.models``."""
    try:
        from .core.models import ARCHITECTURES
    except ImportError as e:
        raise CLIError(f"no network architectures are available ({e})") from e
    if name not in ARCHITECTURES:
        raise CLIError(f"unknown architecture {name!r}; available: "
                       f"{', '.join(sorted(ARCHITECTURES))}")
    return ARCHITECTURES[name]


def save_weights(model: Any, arch: str, path: Path, meta: dict) -> None:
    """Write ``{"architecture", "kwargs", "state_dict", "meta"}`` (the models registry format)."""
    import torch

    try:
        from .core.models import ARCHITECTURES, save_model

        registered = type(model) in ARCHITECTURES.values()
    except ImportError:
        registered = False
    if registered:
        save_model(model, path, meta)
        return
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    torch.save({"architecture": arch, "kwargs": dict(getattr(model, "config", {})),
                "state_dict": state, "meta": json.loads(json.dumps(meta, default=str))}, path)


def cmd_train(ns: argparse.Namespace, argv: list[str]) -> int:
    """Run ``napari-invrec train``: train, then write weights, checkpoint and sidecar."""
    import shlex

    from .core.training import make_source, train_denoiser
    from .engine.device import choose_device
    from .engine.provenance import package_version

    out = Path(ns.out)
    if not out.parent.exists():
        raise CLIError(f"output folder {str(out.parent)!r} does not exist")
    try:
        kwargs = json.loads(ns.arch_kwargs)
    except json.JSONDecodeError as e:
        raise CLIError(f"--arch-kwargs is not valid JSON: {e}") from e
    if not isinstance(kwargs, dict):
        raise CLIError("--arch-kwargs must be a JSON object, e.g. '{\"width\": 16}'")
    cls = architecture(ns.arch)
    try:
        model = cls(**kwargs)
    except TypeError as e:
        raise CLIError(f"bad --arch-kwargs for {ns.arch!r}: {e}") from e
    source = make_source(ns.data, seed=ns.seed)
    ckpt = Path(ns.checkpoint) if ns.checkpoint else Path(str(out) + ".ckpt")
    loop = train_denoiser(model, source, sigma_range=(ns.sigma_min, ns.sigma_max),
                          steps=ns.steps, batch=ns.batch, patch=ns.patch, lr=ns.lr,
                          seed=ns.seed, device=choose_device(ns.device),
                          val_every=ns.val_every, resume=ns.resume, checkpoint=ckpt,
                          checkpoint_every=ns.checkpoint_every)
    every = max(1, ns.steps // 20)
    last = None
    for last in loop:
        if not ns.quiet and (last.step % every == 0 or last.step == last.total):
            val = "" if last.val_psnr is None else f"  val_psnr={last.val_psnr:.2f} dB"
            print(f"  step {last.step}/{last.total}  loss={last.loss:.3e}{val}  "
                  f"lr={last.lr:.2e}  {last.elapsed:.1f} s", flush=True)
    if last is None:
        raise CLIError(f"nothing to train: the checkpoint {ns.resume} is already at step "
                       f">= --steps {ns.steps}")
    command = "napari-invrec " + shlex.join(argv)
    rec = {"kind": "weights", "package": "napari-invrec", "version": package_version(),
           "command": command, "argv": argv, "task": ns.task, "architecture": ns.arch,
           "kwargs": dict(getattr(model, "config", kwargs)), "seed": ns.seed,
           "data": ns.data, "steps": ns.steps, "batch": ns.batch, "patch": ns.patch,
           "sigma_range": [ns.sigma_min, ns.sigma_max], "lr": ns.lr,
           "final_loss": last.loss, "val_psnr": last.val_psnr,
           "val_noisy_psnr": last.extras.get("noisy_psnr"), "train_seconds": last.elapsed,
           "resumed_from": ns.resume, "checkpoint": str(ckpt)}
    save_weights(model, ns.arch, out, {k: rec[k] for k in (
        "command", "seed", "data", "task", "steps", "final_loss", "val_psnr")} |
        {"train_command": command})
    side = write_sidecar(out, rec)
    if not ns.quiet:
        print(f"wrote {out} and {side}: {ns.arch} {ns.task}, final loss {last.loss:.3e}, "
              f"validation PSNR {last.val_psnr:.2f} dB (noisy input "
              f"{last.extras.get('noisy_psnr', float('nan')):.2f} dB)")
    return 0
