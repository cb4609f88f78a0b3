"""Newer methods against the closest method already in the catalogue, on held-out images.

Each pair runs with both methods' DEFAULT parameters on the same simulated measurements of
held-out images (never trained or tuned on: moon, cell, brick and the Shepp-Logan phantom at
128 px, one torch thread), and the table prints each method's PSNR and time per image and the
mean PSNR difference newer - baseline with its standard error over the images. The baseline is
measured in the same run.

Pairs (:data:`PAIRS`): ``deep-decoder`` against ``dip`` (both untrained networks fitted to the
measurement) on denoising, 50 % inpainting and 4x MRI; ``learned-admm`` against classical
``tv-admm`` and against ``unrolled-pgd`` trained for the same operator with the same data and
budget (``unrolled-pgd-lensless``) on the lensless camera (caustic PSF, noise 0.01).
Methods run at their defaults except for the weights :data:`PARAMS` names.

``benchmarks/run.py versus`` (about 20 minutes here); ``--quick``: 64 px and two images;
``--only=learned-admm``: the pairs of one newer method.
"""

from __future__ import annotations

import statistics
import sys
import time

import napari_invrec as ir
from napari_invrec.core.data.heldout import heldout_image

IMAGES = ("moon", "cell", "brick", "shepp-logan")
#: operator -> (operator params, noise std)
TASKS = {"denoise": ({}, 0.1), "inpaint": ({"keep": 0.5}, 0.02),
         "mri": ({"acceleration": 4}, 0.01), "lensless": ({}, 0.01)}
#: (newer method, closest baseline, operators)
PAIRS = [("deep-decoder", "dip", ("denoise", "inpaint", "mri")),
         ("learned-admm", "tv-admm", ("lensless",)),
         ("learned-admm", "unrolled-pgd", ("lensless",))]
#: (method, operator) -> parameters beyond the defaults (networks trained for that operator)
PARAMS = {("unrolled-pgd", "lensless"): {"weights": "unrolled-pgd-lensless"}}


def _psnr_time(y, op, x, method: str, sigma: float) -> tuple[float, float]:
    t = time.perf_counter()
    kw = PARAMS.get((method, op.name), {})
    if "sigma" in ir.method_params(method).__dataclass_fields__:
        kw = {"sigma": sigma, **kw}
    res = ir.reconstruct(y, op, method, reference=x, threads=1, **kw)
    return float(res.metrics["psnr"]), time.perf_counter() - t


def bench_pair(new: str, base: str, task: str, images, n: int, log=print) -> dict:
    """PSNR/time of ``new`` and ``base`` on each image; the mean difference and its SE."""
    kw, sigma = TASKS[task]
    diffs = []
    for img in images:
        x = heldout_image(img, n)
        op = ir.make_operator(task, x.shape, **kw)
        y = ir.simulate(x, op, sigma=sigma, seed=1)
        (pn, tn), (pb, tb) = _psnr_time(y, op, x, new, sigma), _psnr_time(y, op, x, base, sigma)
        diffs.append(pn - pb)
        log(f"  {task:8s} {img:12s} {new} {pn:6.2f} dB {tn:6.1f} s   {base} {pb:6.2f} dB "
            f"{tb:6.1f} s   {pn - pb:+.2f} dB")
    mean = statistics.fmean(diffs)
    se = statistics.stdev(diffs) / len(diffs) ** 0.5 if len(diffs) > 1 else float("nan")
    log(f"  {task:8s} mean {new} - {base}: {mean:+.2f} dB (SE {se:.2f}), "
        f"above on {sum(d > 0 for d in diffs)} of {len(diffs)} images")
    return {"task": task, "mean": mean, "se": se, "diffs": diffs}


def main(flags: list[str] | None = None) -> None:
    flags = flags or []
    quick = "--quick" in flags
    n, images = (64, IMAGES[:2]) if quick else (128, IMAGES)
    print(f"== versus: newer methods against their closest baseline, defaults, held-out "
          f"images at {n} px")
    only = [f[len("--only="):] for f in flags if f.startswith("--only=")]
    for new, base, tasks in PAIRS:
        if only and new not in only:
            continue
        for task in tasks:
            bench_pair(new, base, task, images, n)


if __name__ == "__main__":
    main(sys.argv[1:])
