"""Denoising: the shipped default denoiser against BM3D and TV on held-out images.

For each image size (128, 256, 512 px) and Gaussian noise level (0.01, 0.02, 0.05, 0.1) the
six held-out images (:mod:`napari_invrec.core.data.heldout`: Shepp-Logan, the held-out atoms
lattice, moon, cell, clock, brick; never trained or tuned on) get white Gaussian noise of that
std (seed 1), and are denoised by

* the default plug-and-play denoiser (``pnp-admm``'s default ``denoiser``) at the true level;
* BM3D (the ``bm3d`` package) at the true level: the reference to beat;
* TV (``tv-fista`` on the ``denoise`` operator, 200 iterations) at its oracle weight per image
  (:func:`bench_quality.oracle_tv`: a log grid refined by golden section on the true PSNR).

It prints the mean PSNR of each, the mean gain of the network over BM3D with its standard
error over the images, and on how many images the network is below BM3D (target: above BM3D
on average at every level and size). ``--den NAME[,NAME]`` adds other installed denoisers
(a candidate being trained, registered with ``napari-invrec train``); ``--sizes 128,256``
and ``--sigmas 0.05`` restrict the grid; ``--quick`` is 128 and 256 px only. One torch thread,
so that the network and BM3D (single-threaded) are compared on the same footing.

Run: ``python benchmarks/run.py denoise``.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch
from bench_learned import flag_value
from bench_quality import oracle_tv

import napari_invrec as ir
from napari_invrec.core.analysis.metrics import psnr
from napari_invrec.core.data.heldout import HELDOUT_IMAGES, heldout_image
from napari_invrec.core.denoisers import get_denoiser

SIZES = (128, 256, 512)
SIGMAS = (0.01, 0.02, 0.05, 0.1)


def _apply(den, y: np.ndarray, sigma: float) -> np.ndarray:
    with torch.inference_mode():
        out = den(torch.from_numpy(y)[None, None], sigma)
    return out[0, 0].float().numpy()


def _score(x: np.ndarray, est: np.ndarray) -> float:
    return float(psnr(est, x, data_range=1.0))


def main(flags: list[str] | None = None) -> None:
    flags = flags or []
    torch.set_num_threads(1)
    default = ir.method_params("pnp-admm")().denoiser
    extra = [d for d in (flag_value(flags, "den") or "").split(",") if d and d != default]
    sizes = tuple(int(s) for s in (flag_value(flags, "sizes") or "").split(",") if s) or (
        SIZES[:2] if "--quick" in flags else SIZES)
    sigmas = tuple(float(s) for s in (flag_value(flags, "sigmas") or "").split(",") if s) or SIGMAS
    nets = {name: get_denoiser(name) for name in (default, *extra)}
    bm3d = get_denoiser("bm3d")
    print(f"\n## Denoising held-out images ({', '.join(HELDOUT_IMAGES)}): mean PSNR in dB, "
          f"one thread; gain = network - BM3D (standard error over the images)")
    head = (f"{'size':>5s} {'sigma':>6s} {'noisy':>6s} {'TV*':>6s} {'BM3D':>6s} "
            + " ".join(f"{n[:18]:>18s}" for n in nets)
            + " " + " ".join(f"{'gain ' + n[:12]:>20s} {'<BM3D':>5s}" for n in nets))
    print(head)
    t0 = time.perf_counter()
    timing = {"bm3d": 0.0, **{n: 0.0 for n in nets}}
    for n in sizes:
        xs = [heldout_image(name, n) for name in HELDOUT_IMAGES]
        for sigma in sigmas:
            rows = {k: [] for k in ("noisy", "tv", "bm3d", *nets)}
            for i, x in enumerate(xs):
                rng = np.random.default_rng([1, i, int(sigma * 1e4), n])
                y = (x + sigma * rng.standard_normal(x.shape)).astype(np.float32)
                rows["noisy"].append(_score(x, y))
                rows["tv"].append(oracle_tv(y, ir.make_operator("denoise", x.shape), x,
                                            iters=200)[1])
                t = time.perf_counter()
                rows["bm3d"].append(_score(x, _apply(bm3d, y, sigma)))
                timing["bm3d"] += time.perf_counter() - t
                for name, den in nets.items():
                    t = time.perf_counter()
                    rows[name].append(_score(x, _apply(den, y, sigma)))
                    timing[name] += time.perf_counter() - t
            m = {k: float(np.mean(v)) for k, v in rows.items()}
            gains = []
            for name in nets:
                d = np.asarray(rows[name]) - np.asarray(rows["bm3d"])
                se = float(d.std(ddof=1) / math.sqrt(len(d)))
                gains.append(f"{d.mean():+8.2f} ({se:4.2f})      {int((d < 0).sum()):>5d}")
            per = " ".join(f"{a - b:+.2f}" for a, b in zip(rows[default], rows["bm3d"]))
            print(f"{n:5d} {sigma:6.3f} {m['noisy']:6.2f} {m['tv']:6.2f} {m['bm3d']:6.2f} "
                  + " ".join(f"{m[k]:18.2f}" for k in nets) + " " + " ".join(gains)
                  + f"   per image {per}", flush=True)
    print("seconds denoising: " + ", ".join(f"{k} {v:.0f}" for k, v in timing.items())
          + f"; section {time.perf_counter() - t0:.0f} s (target: gain > 0 on every row)")


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
