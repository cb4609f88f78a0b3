"""Learned acquisition: the shipped learned MRI sampling pattern against random patterns of the
same budget, with the same reconstruction network.

Single-coil 4x MRI (8 % centre, complex Gaussian noise 0.01) of held-out images never trained
or tuned on (moon, cell, brick and the Shepp-Logan phantom), one torch thread. Patterns:
``learned`` (the design learned together with ``varnet-loupe-mri4x``, LOUPE) and ``random``
(seeds 0-3, the same number of columns). Reconstructions: ``varnet`` with
``varnet-loupe-mri4x`` (tuned to the learned pattern) and with ``varnet-mri4x`` (the same
architecture, data and training budget, trained on random patterns), TV (``tv-fista``
defaults) and the zero-filled image. The table prints mean PSNR / SSIM over the images
(random: over images and seeds) and the learned - random difference with its standard error
over the images, all measured in the same run.

Coded-diffraction phase retrieval (second table): the shipped learned coded masks (``mask
="learned"``, K = 2, learned with ``unrolled-phase-learned2-phantoms`` at 64 px) against random
uniform-phase masks (seeds 0-3), on fresh draws of the phantoms generator from the held-out
seed (never trained or tuned on), Gaussian intensity noise 0.01. Reconstructions:
``unrolled-phase`` with the network trained with the learned masks on the learned masks, the
same architecture, data and budget trained on random masks (``unrolled-phase-random2-
phantoms``) on the random ones (and on the learned masks, to separate the masks from the
network), and ``hio`` (non-negative real constraint) on both. PSNR of the magnitude.

``benchmarks/run.py acquisition`` (about 5 minutes here); ``--quick``: 64 px, two images;
``--size=256``: another image size (the MRI table; the phase table runs at 64 px, the size of
the learned masks); ``--only=mri`` / ``--only=phase``: one table.
"""

from __future__ import annotations

import statistics
import sys
import time

import napari_invrec as ir
from napari_invrec.core.data.heldout import fresh_draw, heldout_image

IMAGES = ("moon", "cell", "brick", "shepp-logan")
SIGMA = 0.01
RANDOM_SEEDS = (0, 1, 2, 3)
#: row label -> (method, parameters)
ROWS = {"varnet-loupe-mri4x": ("varnet", {"weights": "varnet-loupe-mri4x"}),
        "varnet-mri4x": ("varnet", {"weights": "varnet-mri4x"}),
        "tv-fista": ("tv-fista", {}),
        "zero-filled": ("adjoint", {})}


def _run(x, pattern: str, seed: int, method: str, params: dict, image_index: int
         ) -> tuple[float, float, float]:
    op = ir.make_operator("mri", x.shape, acceleration=4, pattern=pattern, seed=seed)
    y = ir.simulate(x, op, sigma=SIGMA, seed=100 + image_index)
    t = time.perf_counter()
    res = ir.reconstruct(y, op, method, reference=x, threads=1, **params)
    return float(res.metrics["psnr"]), float(res.metrics["ssim"]), time.perf_counter() - t


#: phase table: row label -> which reconstruction (:func:`_phase_cell`)
PHASE_ROWS = {"unrolled-phase (learned-masks net / random-masks net)": "networks",
              "unrolled-phase-random2-phantoms on both": "random-net",
              "hio": "hio"}
PHASE_NETS = {"learned": "unrolled-phase-learned2-phantoms",
              "random": "unrolled-phase-random2-phantoms"}


def _phase_run(x, mask: str, seed: int, method: str, params: dict, image_index: int) -> float:
    op = ir.make_operator("phase", x.shape, mode="coded", n_patterns=2, mask=mask, seed=seed)
    y = ir.simulate(x, op, sigma=SIGMA, seed=100 + image_index)
    res = ir.reconstruct(y, op, method, reference=x, threads=1, **params)
    return float(res.metrics["psnr"])


def _phase_cell(row: str, mask: str) -> tuple[str, dict]:
    if row == "hio":
        return "hio", {}
    net = PHASE_NETS[mask] if row == "networks" else PHASE_NETS["random"]
    return "unrolled-phase", {"weights": net}


def phase_table(n: int, count: int) -> None:
    """Learned vs random coded masks at ``n`` px over ``count`` held-out phantoms draws."""
    images = [fresh_draw("phantoms", n, i) for i in range(count)]
    print(f"\n## learned acquisition: learned vs random coded masks, K = 2 ({n} px, {count} "
          f"held-out phantoms draws, noise {SIGMA}, one thread)")
    print(f"  {'reconstruction':54s}{'learned dB':>11s}{'random dB':>11s}"
          f"{'learned - random dB':>22s}")
    for label, row in PHASE_ROWS.items():
        learned, rand = [], []
        for i, x in enumerate(images):
            method, params = _phase_cell(row, "learned")
            learned.append(_phase_run(x, "learned", 0, method, params, i))
            method, params = _phase_cell(row, "random")
            rand.append(statistics.fmean(_phase_run(x, "uniform", sd, method, params, i)
                                         for sd in RANDOM_SEEDS))
        diff = [a - b for a, b in zip(learned, rand)]
        se = statistics.stdev(diff) / len(diff) ** 0.5 if len(diff) > 1 else float("nan")
        print(f"  {label:54s}{statistics.fmean(learned):11.2f}{statistics.fmean(rand):11.2f}"
              f"{statistics.fmean(diff):+13.2f} +- {se:4.2f}", flush=True)


def main(flags: list[str] | None = None) -> None:
    flags = flags or []
    only = next((f.split("=", 1)[1] for f in flags if f.startswith("--only=")), None)
    if only != "mri":
        quick = "--quick" in flags
        phase_table(64, 2 if quick else 8)
    if only == "phase":
        return
    n, names = (64, IMAGES[:2]) if "--quick" in flags else (128, IMAGES)
    for f in flags:
        if f.startswith("--size="):
            n = int(f.split("=", 1)[1])
    images = [heldout_image(name, n) for name in names]
    print(f"\n## learned acquisition: learned vs random MRI pattern, 4x ({n} px, held-out "
          f"{', '.join(names)}, noise {SIGMA}, one thread)")
    print(f"  {'reconstruction':22s}{'learned PSNR/SSIM':>20s}{'random PSNR/SSIM':>20s}"
          f"{'learned - random dB':>22s}{'s/image':>9s}")
    for label, (method, params) in ROWS.items():
        learned, rand, secs = [], [], []
        for i, x in enumerate(images):
            p, s, t = _run(x, "learned", 0, method, params, i)
            learned.append((p, s))
            secs.append(t)
            per_seed = [_run(x, "random", sd, method, params, i) for sd in RANDOM_SEEDS]
            rand.append((statistics.fmean(v[0] for v in per_seed),
                         statistics.fmean(v[1] for v in per_seed)))
        diff = [a[0] - b[0] for a, b in zip(learned, rand)]
        se = statistics.stdev(diff) / len(diff) ** 0.5 if len(diff) > 1 else float("nan")
        lp, ls = statistics.fmean(v[0] for v in learned), statistics.fmean(v[1] for v in learned)
        rp, rs = statistics.fmean(v[0] for v in rand), statistics.fmean(v[1] for v in rand)
        print(f"  {label:22s}{lp:12.2f} / {ls:.3f}{rp:12.2f} / {rs:.3f}"
              f"{statistics.fmean(diff):+13.2f} +- {se:4.2f}{statistics.fmean(secs):9.2f}",
              flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
