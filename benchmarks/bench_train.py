"""Training throughput of the default network: steps per second before and after (issue 18).

The default network is what ``napari-invrec train`` and the Train dock build without options:
a DRUNet (width 16, 4 scales, 2 residual blocks per scale), batch 16, patch 48, Adam 1e-3.
Two tasks:

* ``denoiser``: supervised, on the default ``mixed`` synthetic data, noise std 0-0.2;
* ``noise2self``: self-supervised on one 256x256 noisy atoms image (noise 0.1), the Train
  dock's use on an image layer.

"before" is the plain loop, ``fast=False`` (one full-batch pass, per-parameter Adam, torch's
OpenMP threads): today's step, the same code path. "after" is the default ``fast=True``
(:mod:`napari_invrec.core.training.speed`). Both run with torch's default threads and with
one thread (the Train dock's cap on a 2-core machine: all cores but one). Every generator
takes a warm-up step, then ``ROUNDS`` rounds of ``BLOCK`` steps each, alternating before and
after within a round so that load drift from other processes hits both alike; printed are the
median steps per second of each and their ratio, with ``/proc/loadavg`` before and after.
No validation step falls inside the timed steps (the default is every 50 steps).

Inference (plug-and-play methods call the denoiser every iteration): ms per call of the
shipped default denoiser ``drunet-general`` on a 256x256 image, the network as loaded (NCHW,
``no_grad``) against :class:`~napari_invrec.core.denoisers.NetworkDenoiser` (channels-last
weights), alternating, at torch's default threads and at one thread.

Run: ``.venv/bin/python benchmarks/run.py train [--quick] [--one-thread-only]``.
"""

from __future__ import annotations

import time

import numpy as np

ROUNDS = 4
BLOCK = 4


def _loadavg() -> str:
    try:
        with open("/proc/loadavg") as fh:
            return " ".join(fh.read().split()[:3])
    except OSError:
        return "n/a"


def _loop(task: str, fast: bool, steps: int):
    import torch

    from napari_invrec.core.data import atoms
    from napari_invrec.core.models import DRUNet
    from napari_invrec.core.training import make_source, train_denoiser, train_noise2self

    torch.manual_seed(0)
    model = DRUNet()
    kw = {"steps": steps, "batch": 16, "patch": 48, "lr": 1e-3, "seed": 0, "fast": fast}
    if task == "denoiser":
        return train_denoiser(model, make_source("mixed"), sigma_range=(0.0, 0.2), **kw)
    clean = atoms(256, seed=3)
    noisy = clean + 0.1 * np.random.default_rng(1).standard_normal(clean.shape)
    return train_noise2self(model, noisy.astype(np.float32), sigma=0.1, **kw)


def _time(gens: dict, rounds: int, block: int, threads: int) -> dict:
    """Seconds per step of each generator, per round (alternating), at ``threads``."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for g in gens.values():
            next(g)  # warm-up (pool start, first allocations)
        out: dict = {k: [] for k in gens}
        for r in range(rounds):
            order = list(gens) if r % 2 == 0 else list(gens)[::-1]
            for k in order:
                t0 = time.perf_counter()
                for _ in range(block):
                    next(gens[k])
                out[k].append((time.perf_counter() - t0) / block)
        for g in gens.values():
            g.close()
        return out
    finally:
        torch.set_num_threads(old)


def _inference(rounds: int, threads: int) -> tuple[float, float]:
    """ms per call of the default denoiser on 256x256: as loaded vs NetworkDenoiser."""
    import torch

    from napari_invrec.core.denoisers import DEFAULT_DENOISER, NetworkDenoiser
    from napari_invrec.core.models import load_model

    x = torch.rand(1, 1, 256, 256, generator=torch.Generator().manual_seed(0))
    plain = load_model(DEFAULT_DENOISER)
    den = NetworkDenoiser(load_model(DEFAULT_DENOISER))
    calls = {"before": lambda: torch.no_grad()(plain)(x, 0.05), "after": lambda: den(x, 0.05)}
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        times: dict = {k: [] for k in calls}
        for f in calls.values():
            f()
        for r in range(rounds):
            for k in (list(calls) if r % 2 == 0 else list(calls)[::-1]):
                t0 = time.perf_counter()
                for _ in range(3):
                    calls[k]()
                times[k].append((time.perf_counter() - t0) / 3 * 1e3)
    finally:
        torch.set_num_threads(old)
    return float(np.median(times["before"])), float(np.median(times["after"]))


def main(flags: list[str] | None = None) -> list[dict]:
    import torch

    flags = flags or []
    rounds, block = (2, 2) if "--quick" in flags else (ROUNDS, BLOCK)
    default = torch.get_num_threads()
    settings = [1] if "--one-thread-only" in flags or default == 1 else [default, 1]
    print("\n== train: steps/s of the default network (DRUNet 16/4/2, batch 16, patch 48) ==")
    print(f"loadavg before: {_loadavg()}   (torch default threads: {default})")
    print(f"{'task':<11} {'threads':>7} {'before':>10} {'after':>10} {'ratio':>6}")
    rows = []
    steps = 10 ** 6
    for task in ("denoiser", "noise2self"):
        for threads in settings:
            gens = {"before": _loop(task, False, steps), "after": _loop(task, True, steps)}
            t = _time(gens, rounds, block, threads)
            before, after = 1.0 / np.median(t["before"]), 1.0 / np.median(t["after"])
            row = {"task": task, "threads": threads, "before": before, "after": after,
                   "ratio": after / before}
            rows.append(row)
            print(f"{task:<11} {threads:>7} {before:>8.2f}/s {after:>8.2f}/s "
                  f"{after / before:>5.2f}x")
    print(f"{'inference':<11} {'threads':>7} {'before':>10} {'after':>10} {'ratio':>6}"
          "   (ms per default-denoiser call, 256x256)")
    for threads in settings:
        b, a = _inference(rounds + 2, threads)
        rows.append({"task": "inference", "threads": threads, "before": b, "after": a,
                     "ratio": b / a})
        print(f"{'inference':<11} {threads:>7} {b:>7.1f} ms {a:>7.1f} ms {b / a:>5.2f}x")
    print(f"loadavg after:  {_loadavg()}")
    return rows


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
