"""Multi-slice MRI: the slices of a k-space stack as one batch against the plane loop.

Data: 16 slices of random-ellipse phantoms (``random_ellipses``, seeds 0..15), 4x Cartesian
MRI (single coil, 8 % fully sampled centre), complex Gaussian noise of 0.01; the k-space stack
is ``(16, n, n)`` complex64. Every path reconstructs it with ``tv-fista`` at 50 iterations
through :func:`~napari_invrec.engine.stack.reconstruct_eager`:

* the plane loop (``batch=1``): one full run per slice, as before;
* all 16 slices as one batch (``batch=16``, one method call, :mod:`napari_invrec.engine.
  slice_batch`);
* the automatic choice (``batch=None``: what the GUI's "all planes now" gets; on the CPU it
  keeps a batch's images under ``CPU_BATCH_BYTES``, so 256x256 complex planes run one by one).

The sizes: n = 256 (the issue's case) and n = 64 (small planes, where per-run overheads
dominate). A one-slice warm-up first (the operator's norm is cached), then each path is timed
``REPEAT`` times, alternately, and the best kept. Printed: times, speed-up over the loop, the
largest absolute difference from the loop's display stack (and relative to its range: float32
rounding, expected <= 1e-6) and the mean PSNR against the phantoms. ``--quick``: 4 slices of
128 and 64.

Run: ``.venv/bin/python benchmarks/run.py slices [--quick]``.
"""

from __future__ import annotations

import time

import numpy as np

ITERS = 50
REPEAT = 2


def _psnr(a: np.ndarray, ref: np.ndarray) -> float:
    return float(10 * np.log10(float(np.ptp(ref)) ** 2 / np.mean((a - ref) ** 2)))


def _case(n: int, slices: int) -> dict:
    import torch

    from napari_invrec.api import simulate
    from napari_invrec.core.data.phantoms import random_ellipses
    from napari_invrec.core.methods import get_method
    from napari_invrec.core.operators import make_operator
    from napari_invrec.engine.execute import drain
    from napari_invrec.engine.slice_batch import auto_batch
    from napari_invrec.engine.stack import reconstruct_eager

    x = np.stack([random_ellipses(n, np.random.default_rng(s)) for s in range(slices)])
    op = make_operator("mri", (n, n), acceleration=4)
    y = np.stack([simulate(x[s], op, sigma=0.01, seed=s) for s in range(slices)])
    p = get_method("tv-fista").params(iters=ITERS)
    auto = auto_batch(op, "tv-fista", p, slices)
    print(f"\n-- {slices} slices of {n}x{n} 4x MRI k-space ({y.dtype}), tv-fista {ITERS} "
          f"iterations, torch {torch.get_num_threads()} CPU thread(s), device {op.device} --")
    drain(reconstruct_eager(y[:1], op, "tv-fista", p, batch=1))  # warm-up
    paths = {"plane loop (batch=1)": 1, f"one batch (batch={slices})": slices,
             f"automatic (batch=None -> {auto})": None}
    times: dict[str, list[float]] = {k: [] for k in paths}
    outs = {}
    for _ in range(REPEAT):
        for label, b in paths.items():
            t = time.perf_counter()
            outs[label] = drain(reconstruct_eager(y, op, "tv-fista", p, batch=b))
            times[label].append(time.perf_counter() - t)
    loop_label = next(iter(paths))
    loop, t_loop = outs[loop_label], min(times[loop_label])
    rng = float(np.ptp(loop))
    print(f"{'path':<32} {'time s':>8} {'speed-up':>9} {'max |diff|':>11} {'/range':>8} "
          f"{'PSNR dB':>8}")
    res = {}
    for label in paths:
        t, out = min(times[label]), outs[label]
        diff = float(np.abs(out - loop).max())
        psnr = float(np.mean([_psnr(out[s], x[s]) for s in range(slices)]))
        print(f"{label:<32} {t:8.2f} {t_loop / t:8.2f}x {diff:11.3g} {diff / rng:8.2g} "
              f"{psnr:8.2f}")
        res[label] = {"s": t, "speedup": t_loop / t, "max_abs": diff}
    return res


def main(flags: list[str] | None = None) -> dict:
    quick = "--quick" in (flags or [])
    print("\n== slices: a k-space stack's slices batched vs the plane loop ==")
    cases = ((4, 128), (4, 64)) if quick else ((16, 256), (16, 64))
    return {n: _case(n, slices) for slices, n in cases}


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
