"""Tiles for images larger than memory: peak RSS, completion, and agreement with untiled runs.

Three measurements (``--quick``: smaller sizes, same code):

(a) Richardson-Lucy and ``tv-fista`` deconvolution of an 8192² image (quick: 2048²), zarr in,
    zarr out, ``tile="auto"`` with the tiles' working memory capped at :data:`CAP` bytes; each
    run in its own subprocess, which reports its own peak RSS (``ru_maxrss``). Target: peak
    RSS under 2 GB.
(b) Richardson-Lucy (few iterations) on a 16384² image (quick: 4096²): completes; peak RSS.
(c) Tiled (``tile=256``) against untiled on a 1024² image (quick: 512²), Richardson-Lucy and
    ``tv-fista``: max |tiled - untiled| / range, away from the border (a margin of the halo)
    and over the whole image, and with half the derived halo (how much of it is needed).
    Target: below 1e-4 away from the border.

The measurement is a 1024² camera image blurred periodically (Gaussian, sigma 2) and tiled
over the large grid, which is then exactly the periodic blur of the tiled image, plus
Gaussian noise drawn per chunk. Run: ``.venv/bin/python benchmarks/run.py tiles [--quick]``.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

#: cap on the tiles' working memory in (a) and (b) (tile="auto" picks the largest that fits)
CAP = 2 ** 30
RSS_TARGET = 2 * 2 ** 30
SIGMA = 2.0
CHUNK = 1024


def _clean(n: int) -> np.ndarray:
    from napari_invrec.core.data.phantoms import camera

    return (camera(n) * 3.0 + 1.0).astype(np.float32)


def _blurred_tile() -> np.ndarray:
    import torch

    from napari_invrec.core.operators.registry import make_operator

    op = make_operator("blur", (CHUNK, CHUNK), sigma=SIGMA)
    return op.A(torch.from_numpy(_clean(CHUNK))[None, None])[0, 0].numpy()


def _write_input(path: Path, n: int) -> None:
    """An ``n x n`` zarr measurement written chunk by chunk (never whole in memory)."""
    import zarr

    base = _blurred_tile()
    arr = zarr.create_array(str(path), shape=(n, n), chunks=(CHUNK, CHUNK), dtype="float32")
    rng = np.random.default_rng(0)
    for r in range(0, n, CHUNK):
        for c in range(0, n, CHUNK):
            arr[r:r + CHUNK, c:c + CHUNK] = base + 0.01 * rng.standard_normal(base.shape,
                                                                              np.float32)


def _child(args: dict) -> None:
    """Run one tiled reconstruction and print its record (run in a subprocess)."""
    import napari_invrec as ir

    t0 = time.perf_counter()
    res = ir.reconstruct_tiled(args["input"], {"operator": "blur", "params": {"sigma": SIGMA}},
                               args["method"], tile="auto", out=args["output"],
                               max_memory=args["cap"], **args["params"])
    t = res.provenance["tiling"]
    print(json.dumps({"seconds": time.perf_counter() - t0, "tiles": t["tiles"],
                      "tile": t["tile"], "halo": t["halo"], "window": t["window"],
                      "estimate": t["estimate_bytes"],
                      "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))


def _large(n: int, method: str, params: dict, tmp: Path) -> dict:
    src, out = tmp / f"y{n}.zarr", tmp / f"x{n}-{method}.zarr"
    if not src.exists():
        _write_input(src, n)
    args = {"input": str(src), "output": str(out), "method": method, "params": params,
            "cap": CAP}
    run = subprocess.run([sys.executable, __file__, "--child", json.dumps(args)],
                         capture_output=True, text=True, check=False)
    if run.returncode != 0:
        raise RuntimeError(f"child failed: {run.stderr[-2000:]}")
    rec = json.loads(run.stdout.strip().splitlines()[-1])
    import zarr

    x = zarr.open_array(str(out), mode="r")
    rec["written"] = x.nchunks_initialized == x.nchunks
    probe = np.asarray(x[n // 2:n // 2 + 64, n // 2:n // 2 + 64])
    rec["finite"] = bool(np.isfinite(probe).all())
    return rec


def _agreement(n: int) -> list[tuple]:
    import napari_invrec as ir

    x = _clean(n)
    op = ir.make_operator("blur", (n, n), device="cpu", sigma=SIGMA)
    y = ir.simulate(x, op, sigma=0.01, seed=1)
    rows = []
    for method, params in (("richardson-lucy", {"iters": 30}),
                           ("tv-fista", {"lam": 0.01, "iters": 50})):
        t0 = time.perf_counter()
        ref = ir.reconstruct(y, op, method, **params)
        t_ref = time.perf_counter() - t0
        t0 = time.perf_counter()
        res = ir.reconstruct_tiled(y, op, method, tile=256, **params)
        t_tiled = time.perf_counter() - t0
        t = res.provenance["tiling"]
        d = np.abs(np.asarray(res.x) - ref.x) / float(np.ptp(ref.x))
        m = t["halo"]
        half = ir.reconstruct_tiled(y, op, method, tile=256, halo=m // 2, **params)
        dh = np.abs(np.asarray(half.x) - ref.x) / float(np.ptp(ref.x))
        rows.append((method, t["tiles"], t["halo"], float(d[m:-m, m:-m].max()),
                     float(d.max()), t_ref, t_tiled, float(dh[m:-m, m:-m].max())))
    return rows


def _mb(b: float) -> str:
    return f"{b / 2 ** 20:.0f} MB"


def main(flags: list[str] | None = None) -> None:
    flags = flags or []
    quick = "--quick" in flags
    n_agree, n_big, n_huge = (512, 2048, 4096) if quick else (1024, 8192, 16384)
    print(f"== tiles ({'quick' if quick else 'full'}) ==")
    print(f"(c) tiled (tile=256) vs untiled on {n_agree}^2, max |diff| / range:")
    for method, tiles, halo, inner, whole, t_ref, t_tiled, half in _agreement(n_agree):
        print(f"  {method:16s} {tiles:3d} tiles, halo {halo:3d} px: away from the border "
              f"(margin = halo) {inner:.2e}, whole image {whole:.2e}; untiled {t_ref:.1f} s, "
              f"tiled {t_tiled:.1f} s; with half the halo: {half:.2e}")
        print(f"    target < 1e-4 away from the border: {'met' if inner < 1e-4 else 'MISSED'}")
    with tempfile.TemporaryDirectory(prefix="invrec-bench-tiles-") as d:
        tmp = Path(d)
        for n, method, params, what in (
                (n_big, "richardson-lucy", {"iters": 8}, "a"),
                (n_big, "tv-fista", {"lam": 0.01, "iters": 6}, "a"),
                (n_huge, "richardson-lucy", {"iters": 3}, "b")):
            rec = _large(n, method, params, tmp)
            print(f"({what}) {method} on {n}^2 (zarr in, zarr out, tile=auto, cap "
                  f"{_mb(CAP)}): {rec['tiles']} tiles of {rec['tile']} px (window "
                  f"{rec['window'][0]} px, halo {rec['halo']} px, estimate "
                  f"{_mb(rec['estimate'])}), {rec['seconds']:.0f} s, peak RSS "
                  f"{_mb(rec['peak_rss'])}; every chunk written: {rec['written']}, finite: "
                  f"{rec['finite']}")
            if what == "a":
                ok = rec["peak_rss"] < RSS_TARGET
                print(f"    peak RSS / 2 GB = {rec['peak_rss'] / RSS_TARGET:.2f}: target "
                      f"{'met' if ok else 'MISSED'}")
            else:
                print(f"    completed: {'met' if rec['written'] and rec['finite'] else 'MISSED'}")


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        _child(json.loads(sys.argv[2]))
    else:
        main(sys.argv[1:])
