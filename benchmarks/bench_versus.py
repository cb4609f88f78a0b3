"""Newer methods against the closest method already in the catalogue, on held-out images.

Each pair runs with both methods' DEFAULT parameters on the same simulated measurements of
held-out images (never trained or tuned on: moon, cell, brick and the Shepp-Logan phantom at
128 px, one torch thread), and the table prints each method's PSNR and time per image and the
mean PSNR difference newer - baseline with its standard error over the images. The baseline is
measured in the same run.

Pairs (:data:`PAIRS`): ``deep-decoder`` against ``dip`` (both untrained networks fitted to the
measurement) on denoising, 50 % inpainting and 4x MRI; ``learned-admm`` against classical
``tv-admm`` and against ``unrolled-pgd`` trained for the same operator with the same data and
budget (``unrolled-pgd-lensless``) on the lensless camera (caustic PSF, noise 0.01);
``humus-net`` against ``varnet`` (the same cascades with convolutional denoisers, a parameter
budget within 4 %, trained with the same data, seed and steps at 4x) on single-coil MRI at
4x and 8x (random columns, noise 0.01), with SSIM beside PSNR.
Methods run at their defaults except for the weights :data:`PARAMS` names.

``benchmarks/run.py versus`` (about 20 minutes here); ``--quick``: 64 px and two images;
``--only=humus-net``: the pairs of one newer method.
"""

from __future__ import annotations

import statistics
import sys
import time

import napari_invrec as ir
from napari_invrec.core.data.heldout import heldout_image

IMAGES = ("moon", "cell", "brick", "shepp-logan")
#: task -> (operator, operator params, noise std)
TASKS = {"denoise": ("denoise", {}, 0.1), "inpaint": ("inpaint", {"keep": 0.5}, 0.02),
         "mri": ("mri", {"acceleration": 4}, 0.01),
         "mri 8x": ("mri", {"acceleration": 8}, 0.01), "lensless": ("lensless", {}, 0.01)}
#: (newer method, closest baseline, operators)
PAIRS = [("deep-decoder", "dip", ("denoise", "inpaint", "mri")),
         ("learned-admm", "tv-admm", ("lensless",)),
         ("learned-admm", "unrolled-pgd", ("lensless",)),
         ("humus-net", "varnet", ("mri", "mri 8x"))]
#: (method, operator) -> parameters beyond the defaults (networks trained for that operator)
PARAMS = {("unrolled-pgd", "lensless"): {"weights": "unrolled-pgd-lensless"}}


def _run(y, op, x, method: str, sigma: float) -> tuple[float, float, float]:
    """PSNR, SSIM and seconds of ``method`` at its defaults (and :data:`PARAMS`)."""
    t = time.perf_counter()
    kw = PARAMS.get((method, op.name), {})
    if "sigma" in ir.method_params(method).__dataclass_fields__:
        kw = {"sigma": sigma, **kw}
    res = ir.reconstruct(y, op, method, reference=x, threads=1, **kw)
    return float(res.metrics["psnr"]), float(res.metrics["ssim"]), time.perf_counter() - t


def bench_pair(new: str, base: str, task: str, images, n: int, log=print) -> dict:
    """PSNR/SSIM/time of ``new`` and ``base`` on each image; the mean differences and the
    PSNR difference's SE."""
    opname, kw, sigma = TASKS[task]
    diffs, ssim_diffs = [], []
    for img in images:
        x = heldout_image(img, n)
        op = ir.make_operator(opname, x.shape, **kw)
        y = ir.simulate(x, op, sigma=sigma, seed=1)
        (pn, sn, tn), (pb, sb, tb) = _run(y, op, x, new, sigma), _run(y, op, x, base, sigma)
        diffs.append(pn - pb)
        ssim_diffs.append(sn - sb)
        log(f"  {task:8s} {img:12s} {new} {pn:6.2f} dB {sn:.3f} {tn:6.1f} s   {base} "
            f"{pb:6.2f} dB {sb:.3f} {tb:6.1f} s   {pn - pb:+.2f} dB")
    mean = statistics.fmean(diffs)
    se = statistics.stdev(diffs) / len(diffs) ** 0.5 if len(diffs) > 1 else float("nan")
    log(f"  {task:8s} mean {new} - {base}: {mean:+.2f} dB (SE {se:.2f}), SSIM "
        f"{statistics.fmean(ssim_diffs):+.3f}, above on {sum(d > 0 for d in diffs)} of "
        f"{len(diffs)} images")
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
