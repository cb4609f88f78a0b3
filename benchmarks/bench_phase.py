"""Generative priors for phase retrieval: PSNR over the number of coded diffraction patterns.

Coded-diffraction phase retrieval (``phase``, ``mode="coded"``) of real non-negative images
with K = 1, 2, 3, 4 random phase masks and Gaussian noise of std 0.01 on the intensities.
Classical methods (``hio`` with the non-negative real constraint, ``wirtinger-flow``) against
the generative priors that differentiate through :math:`|A x|^2`: ``csgm`` (the phantoms VAE)
and ``dps`` (the phantoms DRUNet as score model). Images: fresh draws of the phantoms
generator from the held-out seed (in-domain for both priors, never trained or tuned on), at
128 px, one torch thread, each method at its defaults (``dps`` with
``denoiser="drunet-phantoms"``), all in the same run. The table prints the mean PSNR
(magnitude, invariant to the global phase) over the images and the mean time per image.

``benchmarks/run.py phase`` (about 10 minutes here); ``--quick``: 64 px, two images.
"""

from __future__ import annotations

import statistics
import sys
import time

import napari_invrec as ir
from napari_invrec.core.data.heldout import fresh_draw

PATTERNS = (1, 2, 3, 4)
#: method -> parameters beyond its defaults
METHODS = {"hio": {}, "wirtinger-flow": {}, "csgm": {},
           "dps": {"denoiser": "drunet-phantoms"}}
SIGMA = 0.01


def run_cell(method: str, k: int, images: list, log=print) -> tuple[float, float]:
    """Mean PSNR and mean seconds of ``method`` with ``k`` patterns over ``images``."""
    psnrs, secs = [], []
    for i, x in enumerate(images):
        op = ir.make_operator("phase", x.shape, mode="coded", n_patterns=k)
        y = ir.simulate(x, op, sigma=SIGMA, seed=1 + i)
        t = time.perf_counter()
        res = ir.reconstruct(y, op, method, reference=x, threads=1, **METHODS[method])
        secs.append(time.perf_counter() - t)
        psnrs.append(float(res.metrics["psnr"]))
    return statistics.fmean(psnrs), statistics.fmean(secs)


def main(flags: list[str] | None = None) -> None:
    flags = flags or []
    n, count = (64, 2) if "--quick" in flags else (128, 4)
    images = [fresh_draw("phantoms", n, i) for i in range(count)]
    print(f"\n## phase retrieval: generative priors vs classical ({n} px, {count} held-out "
          f"phantoms draws, noise {SIGMA}, one thread)")
    print("  PSNR dB (s per image)   " + "".join(f"{m:>22s}" for m in METHODS))
    for k in PATTERNS:
        cells = [run_cell(m, k, images) for m in METHODS]
        print(f"  K = {k} pattern{'s' if k > 1 else ' '}           "
              + "".join(f"{p:14.2f} ({t:5.1f})" for p, t in cells), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
