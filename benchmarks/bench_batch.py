"""Batches: one ``napari-invrec batch`` against a process per image; a cluster against threads.

N = 100 measurements of 256 x 256 (the Shepp-Logan phantom at N intensities, Gaussian blur
sigma 2, noise 0.02, written as ``.npy``), reconstructed by ``tv-fista`` (lam 0.01, 30
iterations):

* ``cli``: one ``napari-invrec batch`` run over the folder (a single process: Python, torch
  and the package start once; dask's threaded scheduler, 2 threads) against
  ``napari-invrec reconstruct`` run once per image, as a shell loop does. Only K of those
  invocations are timed (K = 10; 3 with ``--quick``) and their time is scaled by N / K (the
  output says so). Target: the batch at least 8x faster.
* ``cluster``: the same batch on a ``LocalCluster`` of 2 single-threaded worker processes
  against the in-process threaded scheduler with 2 threads. The throughput ratio (threaded
  seconds / cluster seconds) is measured on a started, warm cluster (the batch sent to its
  address, as ``--scheduler`` does), target at least 0.8; the outputs must be identical (max
  abs difference asserted 0). The end-to-end time of ``workers=2`` (starting the cluster,
  importing torch in each worker, shutting it down) is printed beside it.

Every ratio is measured in the same run, on the same machine. Run:
``python benchmarks/run.py batch`` (``--quick``: N = 20, K = 3).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SIZE, SIGMA, NOISE = 256, 2.0, 0.02
METHOD = ("tv-fista", {"lam": 0.01, "iters": 30})


def _write_inputs(folder: Path, n: int) -> object:
    import napari_invrec as ir
    from napari_invrec.core.data import shepp_logan

    x = shepp_logan(SIZE)
    op = ir.make_operator("blur", x.shape, sigma=SIGMA, device="cpu")
    folder.mkdir()
    for i in range(n):
        y = ir.simulate(x * (0.5 + 0.5 * i / max(1, n - 1)), op, sigma=NOISE, seed=i)
        np.save(folder / f"y{i:03d}.npy", y.astype(np.float32))
    return op


def _cli() -> list[str]:
    exe = Path(sys.executable).with_name("napari-invrec")
    return [str(exe)] if exe.exists() else [sys.executable, "-c",
                                            "from napari_invrec.cli import entry; entry()"]


def _options() -> list[str]:
    method, params = METHOD
    opts = ["--operator", "blur", "--sigma", str(SIGMA), "--method", method]
    for k, v in params.items():
        opts += [f"--{k.replace('_', '-')}", str(v)]
    return opts + ["--quiet"]


def _timed(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True)
    return time.perf_counter() - t0


def _outputs(folder: Path) -> list[np.ndarray]:
    """The images of a folder's TIFF outputs (a batch's or ``reconstruct``'s), by name."""
    import tifffile

    return [tifffile.imread(p) for p in sorted(folder.glob("*.tif")) if ".std." not in p.name]


def cli_section(tmp: Path, inputs: Path, n: int, k: int) -> float:
    """One batch process against ``k`` single-image processes scaled to ``n``."""
    batch_s = _timed(_cli() + ["batch", str(inputs), "--out", str(tmp / "cli_batch"),
                               "--threads", "2"] + _options())
    singles = tmp / "cli_single"
    singles.mkdir()
    files = sorted(inputs.glob("*.npy"))[:k]
    loop_s = sum(_timed(_cli() + ["reconstruct", "--input", str(f), "--output",
                                  str(singles / f"{f.stem}.tif")] + _options())
                 for f in files)
    per_call = loop_s / k
    batch_out = _outputs(tmp / "cli_batch")[:k]
    single_out = _outputs(singles)
    diff = max(float(np.abs(a - b).max()) for a, b in zip(batch_out, single_out))
    print(f"\ncli: {n} images of {SIZE}x{SIZE}, {METHOD[0]} {METHOD[1]}")
    print(f"  napari-invrec batch (one process)      {batch_s:8.1f} s "
          f"({batch_s / n:.2f} s per image)")
    print(f"  napari-invrec reconstruct x {k:<3d}        {loop_s:8.1f} s measured, "
          f"{per_call:.2f} s per call")
    print(f"  napari-invrec reconstruct x {n:<3d}        {per_call * n:8.1f} s (extrapolated: "
          f"{k} timed calls x {n / k:g})")
    ratio = per_call * n / batch_s
    print(f"  speed-up of the batch                  {ratio:8.1f}x (target >= 8x)")
    print(f"  max |batch - single run| on the {k} timed images: {diff:.2e} "
          "(2 torch threads per single run, 1 per batch item)")
    return ratio


def cluster_section(tmp: Path, inputs: Path, op: object, n: int) -> float:
    """A warm LocalCluster of 2 x 1 thread against 2 threads in this process."""
    import napari_invrec as ir
    from napari_invrec.engine.batch_schedulers import local_cluster

    method, params = METHOD
    ir.reconstruct_many(sorted(inputs.glob("*.npy"))[:2], op, method, out=tmp / "warm",
                        threads=2, **params)  # imports and first-call costs out of the timing
    t0 = time.perf_counter()
    threaded = ir.reconstruct_many(inputs, op, method, out=tmp / "threads", threads=2,
                                   **params)
    threads_s = time.perf_counter() - t0
    cluster = local_cluster(2)  # the cluster workers=2 starts
    try:
        address = cluster.scheduler_address
        ir.reconstruct_many(sorted(inputs.glob("*.npy"))[:2], op, method, out=tmp / "warm2",
                            scheduler=address, **params)
        t0 = time.perf_counter()
        on_cluster = ir.reconstruct_many(inputs, op, method, out=tmp / "cluster",
                                         scheduler=address, **params)
        cluster_s = time.perf_counter() - t0
    finally:
        cluster.close()
    t0 = time.perf_counter()
    cold = ir.reconstruct_many(inputs, op, method, out=tmp / "cold", workers=2, **params)
    cold_s = time.perf_counter() - t0
    for s in (threaded, on_cluster, cold):
        assert s.counts == {"done": n}, s.lines()
    a, b, c = _outputs(tmp / "threads"), _outputs(tmp / "cluster"), _outputs(tmp / "cold")
    diff = max(max(float(np.abs(p - q).max()), float(np.abs(p - r).max()))
               for p, q, r in zip(a, b, c))
    print(f"\ncluster: {n} images, throughput against dask threads (2) in this process")
    print(f"  threaded scheduler, 2 threads           {threads_s:8.1f} s "
          f"({n / threads_s:.2f} images/s)")
    print(f"  LocalCluster 2 workers x 1 thread (warm){cluster_s:8.1f} s "
          f"({n / cluster_s:.2f} images/s)")
    ratio = threads_s / cluster_s
    print(f"  throughput ratio cluster / threads      {ratio:8.2f} (target >= 0.8)")
    print(f"  workers=2 end to end (start + stop)     {cold_s:8.1f} s "
          f"(ratio {threads_s / cold_s:.2f}, cluster start and shutdown included)")
    print(f"  max |cluster - threads| over {n} outputs: {diff:.1e} (identical required)")
    assert diff == 0.0, "the cluster's outputs differ from the threaded scheduler's"
    return ratio


def main(flags: list[str] | None = None) -> None:
    flags = flags or []
    quick = "--quick" in flags
    n, k = (20, 3) if quick else (100, 10)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="invrec-bench-batch-") as d:
        tmp = Path(d)
        op = _write_inputs(tmp / "in", n)
        cli_section(tmp, tmp / "in", n, k)
        cluster_section(tmp, tmp / "in", op, n)
    print(f"\nbatch benchmark: {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main(sys.argv[1:])
