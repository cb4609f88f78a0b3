"""PSNR and time of every operator family with each of its classical methods.

Each operator is simulated with the settings in :data:`SETTINGS` on the sample images
(Shepp-Logan phantom, atoms, camera; 128 px) and every compatible method that needs no trained
weights runs with its DEFAULT parameters (what a user gets without tuning). The baseline,
measured in the same run, is the adjoint (zero-filled / back-projection) where the operator has
one, else the first method listed; the table shows each method's PSNR gain over it.

``benchmarks/run.py catalogue`` prints the table; ``--write-readme`` also stores it in README.md.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

SIZE = 128
#: operator -> (operator params, noise kwargs for api.simulate)
SETTINGS: dict[str, tuple[dict, dict]] = {
    "denoise": ({}, {"sigma": 0.1}),
    "blur": ({"sigma": 2.0}, {"sigma": 0.02}),
    "inpaint": ({"keep": 0.5}, {"sigma": 0.02}),
    "mri": ({"acceleration": 4}, {"sigma": 0.02}),
    "mri-multicoil": ({"acceleration": 4}, {"sigma": 0.02}),
    "cs": ({"ensemble": "structured", "ratio": 0.5}, {"sigma": 0.02}),
    "superres": ({"factor": 2}, {"sigma": 0.02}),
    "ct": ({"n_angles": 60}, {"sigma": 0.002}),  # line integrals lie in [0, ~0.3]
    "phase": ({"mode": "coded"}, {"sigma": 0.01}),
    "blind-blur": ({"sigma": 2.0}, {"sigma": 0.01}),
}
IMAGES = ("shepp-logan", "atoms", "camera")


def bench_catalogue(size: int = SIZE, images=IMAGES, log=print) -> list[dict]:
    """One row per (operator, method): mean PSNR over images, gain over the baseline, time.

    Runs with one torch thread: on a 2-core machine shared with other work, two threads made
    small FFT/scatter workloads up to 5x slower and the times unrepeatable.
    """
    import torch

    import napari_invrec as ir

    torch.set_num_threads(1)
    from napari_invrec.core.data import SAMPLE_IMAGES
    from napari_invrec.core.methods import METHODS

    rows = []
    for op_name in ir.list_operators():
        op_params, noise = SETTINGS.get(op_name, ({}, {"sigma": 0.02}))
        methods = [m for m in ir.list_methods(op_name) if not METHODS[m].weights]
        if not methods:
            continue
        baseline = "adjoint" if "adjoint" in methods else methods[0]
        methods = [baseline] + [m for m in methods if m != baseline]
        psnr: dict[str, list[float]] = {m: [] for m in methods}
        secs: dict[str, list[float]] = {m: [] for m in methods}
        for img in images:
            x = SAMPLE_IMAGES[img](size)
            op = ir.make_operator(op_name, x.shape, device="cpu", **op_params)
            y = ir.simulate(x, op, seed=0, **noise)
            for m in methods:
                t = time.perf_counter()
                res = ir.reconstruct(y, op, m, reference=x, seed=0)
                secs[m].append(time.perf_counter() - t)
                psnr[m].append(res.metrics["psnr"])
        base = float(np.mean(psnr[baseline]))
        for m in methods:
            row = {"operator": op_name, "method": m, "baseline": baseline,
                   "psnr": float(np.mean(psnr[m])), "gain": float(np.mean(psnr[m])) - base,
                   "per_image": [round(v, 2) for v in psnr[m]],
                   "seconds": float(np.mean(secs[m]))}
            rows.append(row)
            log(f"{op_name:14s} {m:18s} {row['psnr']:6.2f} dB  {row['gain']:+6.2f} dB  "
                f"{row['seconds']:7.2f} s")
    return rows


def markdown(rows: list[dict], size: int = SIZE) -> str:
    """The README table."""
    out = [f"PSNR (dB, mean over {', '.join(IMAGES)} at {size} px), gain over the baseline "
           "(adjoint, or the first method where there is none) and time per run, default "
           "parameters, one CPU thread:", "",
           "| operator | settings | method | PSNR | gain | per image | time (s) |",
           "| --- | --- | --- | --: | --: | --- | --: |"]
    for r in rows:
        op_params, noise = SETTINGS.get(r["operator"], ({}, {}))
        settings = ", ".join(f"{k}={v}" for k, v in {**op_params, "noise": noise.get("sigma")}
                             .items())
        out.append(f"| `{r['operator']}` | {settings} | `{r['method']}` | {r['psnr']:.2f} | "
                   f"{r['gain']:+.2f} | {' / '.join(map(str, r['per_image']))} | "
                   f"{r['seconds']:.2f} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    print(f"== catalogue: every operator with its classical methods ({SIZE} px, default "
          "parameters)")
    print(f"{'operator':14s} {'method':18s} {'PSNR':>9s} {'gain':>9s} {'time':>9s}")
    rows = bench_catalogue()
    if "--write-readme" in argv:
        from napari_invrec.engine.catalogue import replace_block

        readme = Path(__file__).resolve().parents[1] / "README.md"
        readme.write_text(replace_block(readme.read_text(), "bench", markdown(rows)))
        print(f"wrote the table into {readme}")


if __name__ == "__main__":
    main()
