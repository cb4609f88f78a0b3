"""Learned priors against TV on held-out images: Gaussian deblurring, inpainting, 4x MRI.

For each task in :data:`TASKS` and each held-out image (:mod:`napari_invrec.core.data.heldout`:
never used to train or tune a shipped network) the measurement is simulated with seed 0 and:

* the baseline, ``tv-fista`` at the weight of :data:`TV_GRID` with the best mean PSNR over the
  task's images (TV tuned on the test set itself); TV at the best weight *per image* (an oracle
  no user has) is printed too;
* every learned method with its DEFAULT parameters (what a user gets without tuning); only the
  measurement's noise level is passed, to each method's noise-level fields (``dpir``'s
  ``sigma``, ``pnp-admm``'s ``noise``, ...), in the units the run works in
  (:func:`~napari_invrec.engine.noise_level.run_units_level`: the runs normalise the data, so
  0.01 on a held-out image can be 0.03 in the run), as the Reconstruct dock fills them.
  Methods whose default weights were trained for another operator are skipped;
* the classical references of :data:`REFERENCES`: ``dpir`` with BM3D as its denoiser (no
  learning at all), the bar a learned prior has to clear (``--no-bm3d`` leaves it out: about
  2 s per BM3D call at 128 px).

Printed per task: mean PSNR of each method, its gain over TV and its worst per-image margin.
The target of issue 4: the best learned method beats TV by >= 1 dB on average and is below it
on no image. ``benchmarks/run.py learned --write-readme`` stores the table in README.md.

``--size=256`` runs at another size, ``--methods=dpir,pnp-admm`` a subset, and
``--den=NAME[,NAME]`` adds ``dpir`` and ``pnp-admm`` rows with other installed denoisers (e.g.
one being trained) next to the defaults.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

SIZE = 128
NOISE = 0.01
#: task label -> (operator, operator params)
TASKS: dict[str, tuple[str, dict]] = {
    "blur sigma 2": ("blur", {"sigma": 2.0}),
    "inpaint 50 %": ("inpaint", {"keep": 0.5}),
    "MRI 4x": ("mri", {"acceleration": 4}),
}
TV_GRID = (0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02)
LEARNED = ("dpir", "pnp-admm", "red", "unet", "swinir", "cgan", "mcnn", "unrolled-pgd",
           "varnet", "neumann", "dirac")
#: the deep image prior fits one network per image (minutes each): only with ``--with-dip``
SLOW = ("dip",)
#: classical plug-and-play references: row label -> (method, parameters)
REFERENCES = {"dpir (bm3d)": ("dpir", {"denoiser": "bm3d"})}


def bench_learned(size: int = SIZE, images=None, methods=LEARNED, log=print,
                  references: dict | None = None) -> list[dict]:
    """One row per (task, method) with per-image PSNR and the per-image TV oracle, then one
    per reference of ``references`` (default :data:`REFERENCES`)."""
    import torch

    import napari_invrec as ir
    from napari_invrec.core.data import HELDOUT_IMAGES, heldout_image
    from napari_invrec.core.errors import InputError
    from napari_invrec.core.methods.registry import get_method
    from napari_invrec.engine.noise_level import noise_values, run_units_level

    torch.set_num_threads(1)
    images = tuple(images or HELDOUT_IMAGES)
    rows = []
    for task, (op_name, op_params) in TASKS.items():
        truths = [heldout_image(name, size) for name in images]
        ops = [ir.make_operator(op_name, x.shape, device="cpu", **op_params) for x in truths]
        ys = [ir.simulate(x, op, seed=0, sigma=NOISE) for x, op in zip(truths, ops)]
        levels = [run_units_level(y, op, NOISE) for y, op in zip(ys, ops)]
        t0 = time.perf_counter()
        grid = np.array([[ir.reconstruct(y, op, "tv-fista", reference=x, lam=lam)
                          .metrics["psnr"] for x, op, y in zip(truths, ops, ys)]
                         for lam in TV_GRID])
        best = int(np.argmax(grid.mean(1)))
        tv, oracle = grid[best], grid.max(0)
        secs = (time.perf_counter() - t0) / grid.size
        rows.append({"task": task, "method": f"tv-fista (lam={TV_GRID[best]})",
                     "per_image": list(tv), "seconds": secs})
        rows.append({"task": task, "method": "tv-fista (best lam per image, oracle)",
                     "per_image": list(oracle), "seconds": secs,
                     "gain": float((oracle - tv).mean()), "worst": float((oracle - tv).min())})
        log(f"{task:14s} {'tv-fista':14s} {tv.mean():6.2f} dB  lam {TV_GRID[best]}  "
            f"(oracle {oracle.mean():6.2f})")
        runs = [(m, m, {}) for m in methods] + [
            (label, m, kw) for label, (m, kw) in (REFERENCES if references is None
                                                  else references).items()]
        for label, m, kw in runs:
            if not ir.list_methods(op_name) or m not in ir.list_methods(op_name):
                continue
            psnr, t0 = [], time.perf_counter()
            try:
                for x, op, y, level in zip(truths, ops, ys, levels):
                    extra = noise_values(get_method(m).params, level) | kw
                    res = ir.reconstruct(y, op, m, reference=x, seed=0, **extra)
                    psnr.append(res.metrics["psnr"])
            except InputError as err:
                log(f"{task:14s} {label:14s} skipped: {str(err)[:90]}")
                continue
            secs = (time.perf_counter() - t0) / len(images)
            margin = np.asarray(psnr) - np.asarray(tv)
            rows.append({"task": task, "method": label, "per_image": psnr, "seconds": secs,
                         "gain": float(margin.mean()), "worst": float(margin.min())})
            log(f"{task:14s} {label:14s} {np.mean(psnr):6.2f} dB  gain {margin.mean():+5.2f}  "
                f"worst {margin.min():+5.2f}  {secs:6.2f} s/image")
    return rows


def markdown(rows: list[dict], images=None, size: int = SIZE) -> str:
    """The README table: per task, TV's oracle PSNR and each learned method's."""
    from napari_invrec.core.data import HELDOUT_IMAGES

    images = tuple(images or HELDOUT_IMAGES)
    out = [f"PSNR (dB) on held-out images ({', '.join(images)}; {size} px, Gaussian noise "
           f"{NOISE}), learned methods with default parameters; TV at the weight from "
           f"{list(TV_GRID)} that is best on average for the task (first row) and at the best "
           "weight per image (second row, an oracle). Gain = mean margin over the first row, "
           "worst = smallest per-image margin:",
           "", "| task | method | mean PSNR | gain | worst | per image | s/image |",
           "| --- | --- | --: | --: | --: | --- | --: |"]
    for r in rows:
        per = " / ".join(f"{v:.1f}" for v in r["per_image"])
        gain = f"{r['gain']:+.2f}" if "gain" in r else ""
        worst = f"{r['worst']:+.2f}" if "worst" in r else ""
        out.append(f"| {r['task']} | `{r['method']}` | {np.mean(r['per_image']):.2f} | {gain} "
                   f"| {worst} | {per} | {r['seconds']:.2f} |")
    return "\n".join(out)


def flag_value(argv: list[str], name: str) -> str | None:
    """The value of ``--name=VALUE`` on the command line (``None`` if absent)."""
    return next((a.split("=", 1)[1] for a in argv if a.startswith(f"--{name}=")), None)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    size = int(flag_value(argv, "size") or SIZE)
    methods = tuple(m for m in (flag_value(argv, "methods") or "").split(",") if m) or (
        LEARNED + (SLOW if "--with-dip" in argv else ()))
    refs = {} if "--no-bm3d" in argv else dict(REFERENCES)
    for den in (d for d in (flag_value(argv, "den") or "").split(",") if d):
        refs |= {f"{m} ({den})": (m, {"denoiser": den}) for m in ("dpir", "pnp-admm")}
    print(f"== learned priors vs TV on held-out images ({size} px, noise {NOISE})")
    rows = bench_learned(size=size, methods=methods, references=refs)
    if "--write-readme" in argv and size == SIZE and methods == LEARNED:
        from napari_invrec.engine.catalogue import replace_block

        readme = Path(__file__).resolve().parents[1] / "README.md"
        readme.write_text(replace_block(readme.read_text(), "learned", markdown(rows)))
        print(f"wrote the table into {readme}")


if __name__ == "__main__":
    main()
