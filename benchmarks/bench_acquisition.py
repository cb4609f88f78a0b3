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

``benchmarks/run.py acquisition`` (about 3 minutes here); ``--quick``: 64 px, two images;
``--size=256``: another image size.
"""

from __future__ import annotations

import statistics
import sys
import time

import napari_invrec as ir
from napari_invrec.core.data.heldout import heldout_image

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


def main(flags: list[str] | None = None) -> None:
    flags = flags or []
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
