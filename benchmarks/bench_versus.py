r"""Newer methods against the closest method already in the catalogue, on held-out images.

Each pair runs with both methods' DEFAULT parameters on the same simulated measurements of
held-out images (never trained or tuned on: moon, cell, brick and the Shepp-Logan phantom at
128 px, one torch thread), and the table prints each method's PSNR and time per image and the
mean PSNR difference newer - baseline with its standard error over the images. The baseline is
measured in the same run.

Pairs (:data:`PAIRS`): ``deep-decoder`` against ``dip`` (both untrained networks fitted to
the measurement) on denoising, 50 % inpainting and 4x MRI; ``learned-admm`` against
classical ``tv-admm`` and against ``unrolled-pgd`` trained for the same operator with the
same data and budget (``unrolled-pgd-lensless``) on the lensless camera (caustic PSF, noise
0.01); ``humus-net`` against ``varnet`` (the same cascades with convolutional denoisers, a
parameter budget within 4 %, trained with the same data, seed and steps at 4x) on single-
coil MRI at 4x and 8x (random columns, noise 0.01), with SSIM beside PSNR; ``swinir`` (a
SwinIR-style transformer) and ``cgan`` (a pix2pix-style conditional GAN, the U-Net trained
with an adversarial loss on the same data, seed and steps) against the end-to-end ``unet``
on Gaussian deblurring (sigma 2, noise 0.01); ``dirac`` (incremental-reconstruction
diffusion) against ``diffpir`` (the closest diffusion sampler) on the same deblurring and on
50 % inpainting (mask growth). Every pair also prints each method's null-space content
:math:`\|(I - P)(\hat x - A^+ y)\| / \|A^+ y\|` (``ns``): detail the method added where the
measurement says nothing, the hallucination budget the trust maps show. ``--only=dirac``
adds the perception-distortion sweep of ``dirac``'s stopping level (PSNR and null-space
content per ``stop``).
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
         "mri 8x": ("mri", {"acceleration": 8}, 0.01), "lensless": ("lensless", {}, 0.01),
         "blur": ("blur", {"sigma": 2.0}, 0.01)}
#: (newer method, closest baseline, operators)
PAIRS = [("deep-decoder", "dip", ("denoise", "inpaint", "mri")),
         ("learned-admm", "tv-admm", ("lensless",)),
         ("learned-admm", "unrolled-pgd", ("lensless",)),
         ("humus-net", "varnet", ("mri", "mri 8x")),
         ("swinir", "unet", ("blur",)),
         ("cgan", "unet", ("blur",)),
         ("dirac", "diffpir", ("blur", "inpaint"))]
#: stopping levels of the dirac sweep
STOPS = (0.0, 0.1, 0.2, 0.4, 0.6)
#: (method, operator) -> parameters beyond the defaults (networks trained for that operator)
PARAMS = {("unrolled-pgd", "lensless"): {"weights": "unrolled-pgd-lensless"},
          ("dirac", "inpaint"): {"weights": "dirac-inpaint50-natural"}}


def null_space_content(op, x_hat, y) -> float:
    r""":math:`\|(I - P)(\hat x - A^+ y)\| / \|A^+ y\|`: what a method put in the null
    space of ``op`` beyond the minimum-norm solution, relative to it."""
    import numpy as np
    import torch

    from napari_invrec.core.analysis import null_space_difference

    ref = op.A_pinv(torch.as_tensor(np.asarray(y))[None, None])
    d = null_space_difference(op, torch.as_tensor(np.asarray(x_hat)), ref)
    return float(d.norm() / ref.norm())


def _run(y, op, x, method: str, sigma: float, **extra) -> tuple[float, float, float, float]:
    """PSNR, SSIM, seconds and null-space content (NaN without a null-space projector) of
    ``method`` at its defaults (and :data:`PARAMS`, ``extra``)."""
    t = time.perf_counter()
    kw = {**PARAMS.get((method, op.name), {}), **extra}
    if "sigma" in ir.method_params(method).__dataclass_fields__:
        kw = {"sigma": sigma, **kw}
    res = ir.reconstruct(y, op, method, reference=x, threads=1, seed=0, **kw)
    secs = time.perf_counter() - t
    ns = null_space_content(op, res.x, y) if hasattr(op, "null_project") and not \
        op.complex_image else float("nan")
    return float(res.metrics["psnr"]), float(res.metrics["ssim"]), secs, ns


def bench_pair(new: str, base: str, task: str, images, n: int, log=print) -> dict:
    """PSNR/SSIM/time of ``new`` and ``base`` on each image; the mean differences and the
    PSNR difference's SE."""
    opname, kw, sigma = TASKS[task]
    diffs, ssim_diffs = [], []
    for img in images:
        x = heldout_image(img, n)
        op = ir.make_operator(opname, x.shape, **kw)
        y = ir.simulate(x, op, sigma=sigma, seed=1)
        (pn, sn, tn, nn), (pb, sb, tb, nb) = _run(y, op, x, new, sigma), \
            _run(y, op, x, base, sigma)
        diffs.append(pn - pb)
        ssim_diffs.append(sn - sb)
        ns = [] if nn != nn else [nn, nb]  # NaN: no null-space projector
        log(f"  {task:8s} {img:12s} {new} {pn:6.2f} dB {sn:.3f} {tn:6.1f} s"
            f"{f' ns {nn:.4f}' if ns else ''}   {base} {pb:6.2f} dB {sb:.3f} {tb:6.1f} s"
            f"{f' ns {nb:.4f}' if ns else ''}   {pn - pb:+.2f} dB")
    mean = statistics.fmean(diffs)
    se = statistics.stdev(diffs) / len(diffs) ** 0.5 if len(diffs) > 1 else float("nan")
    log(f"  {task:8s} mean {new} - {base}: {mean:+.2f} dB (SE {se:.2f}), SSIM "
        f"{statistics.fmean(ssim_diffs):+.3f}, above on {sum(d > 0 for d in diffs)} of "
        f"{len(diffs)} images")
    return {"task": task, "mean": mean, "se": se, "diffs": diffs}


def dirac_stop_sweep(images, n: int, log=print) -> list[dict]:
    """Mean PSNR and null-space content of ``dirac`` per stopping level (:data:`STOPS`) on
    the blur task: the perception-distortion knob, measured."""
    opname, kw, sigma = TASKS["blur"]
    rows = []
    for stop in STOPS:
        psnrs, nss = [], []
        for img in images:
            x = heldout_image(img, n)
            op = ir.make_operator(opname, x.shape, **kw)
            y = ir.simulate(x, op, sigma=sigma, seed=1)
            p, _, _, ns = _run(y, op, x, "dirac", sigma, stop=stop)
            psnrs.append(p)
            nss.append(ns)
        rows.append({"stop": stop, "psnr": statistics.fmean(psnrs), "ns": statistics.fmean(nss)})
        log(f"  dirac stop {stop:.1f}: PSNR {rows[-1]['psnr']:6.2f} dB, null-space content "
            f"{rows[-1]['ns']:.4f}")
    return rows


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
    if "dirac" in only:
        dirac_stop_sweep(images, n)


if __name__ == "__main__":
    main(sys.argv[1:])
