"""Quality without ground truth: does the estimate order runs, tune and choose like the truth?

Every figure is measured on held-out images (never trained or tuned on,
:mod:`napari_invrec.core.data.heldout`); the ground truth is used only to score.

* ``spearman``: per operator family, the Spearman correlation between the estimate (its
  ``score``, lower is better) and the true PSNR over a grid of (method, hyperparameter) runs,
  per image; target at least 0.8 for every family.
* ``autotune``: auto-tuned ``tv-fista`` against TV at the oracle weight (a 13-point log grid
  refined by golden section on the true PSNR), per image; target within 0.3 dB.
* ``select``: the ranked choice among five candidates against the per-image best candidate
  (target within 0.5 dB) and against the adjoint / measurement (never below).
* ``phantom-mri``: "best for this data" on the plugin's own phantom-mri sample (256 px, 4x,
  noise 0.01) against ``tv-fista`` at its oracle weight (target: at least as good).

Run: ``python benchmarks/run.py quality`` (``--quick``: fewer images, no phantom-mri;
``--families=cs,mri``: only those families; ``--tables=spearman,select``: only those tables
of spearman, autotune, select, phantom-mri).
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch
from bench_learned import flag_value
from scipy.stats import spearmanr

import napari_invrec as ir
from napari_invrec.core.data import shepp_logan
from napari_invrec.core.data.heldout import heldout_image
from napari_invrec.engine.autotune import autotune_steps
from napari_invrec.engine.execute import drain
from napari_invrec.engine.quality import estimate_quality
from napari_invrec.engine.ranking import rank_steps

FAMILIES = {
    "denoise": ({}, 0.05),
    "blur": ({"sigma": 2.0}, 0.02),
    "superres": ({"factor": 2}, 0.02),
    "inpaint": ({"keep": 0.5}, 0.02),
    "mri": ({"acceleration": 4, "center_fraction": 0.08}, 0.01),
    "ct": ({"n_angles": 60}, 0.02),
    "cs": ({"ratio": 0.5}, 0.02),
    "mri-multicoil": ({"acceleration": 4, "center_fraction": 0.08, "n_coils": 4}, 0.01),
    "lensless": ({}, 0.01),
}
IMAGES = ("moon", "cell", "brick", "shepp-logan")
AUTOTUNE_FAMILIES = ("denoise", "blur", "inpaint", "mri")
SELECT_FAMILIES = ("denoise", "blur", "inpaint", "mri", "ct", "cs")
GRID = ([("tv-fista", {"lam": lam, "iters": 100}) for lam in (1e-3, 3e-3, 1e-2, 3e-2, 0.1)]
        + [("tikhonov", {"lam": lam}) for lam in (1e-3, 1e-2, 0.1)]
        + [("pnp-admm", {}), ("dpir", {}), ("adjoint", {})])
CANDIDATES = [("tv-fista", {}), ("tikhonov", {}), ("pnp-admm", {}), ("dpir", {}),
              ("adjoint", {})]


def _problem(family: str, image: str, n: int):
    kw, sigma = FAMILIES[family]
    x = heldout_image(image, n)
    op = ir.make_operator(family, x.shape, **kw)
    return x, op, ir.simulate(x, op, sigma=sigma, seed=1), sigma


def _true(y, op, x, method, params) -> float:
    return ir.reconstruct(y, op, method, reference=x, **params).metrics["psnr"]


def spearman_table(images, n: int, families=tuple(FAMILIES)) -> dict:
    print("\n## Estimate against true PSNR (Spearman over the grid of "
          f"{len(GRID)} runs, per image, {n} px)")
    print(f"{'family':13s} {'estimator':10s} " + " ".join(f"{i:>11s}" for i in images)
          + "   min   target 0.8")
    out = {}
    for fam in families:
        rs, est_name, t0 = [], "", time.perf_counter()
        for img in images:
            x, op, y, sigma = _problem(fam, img, n)
            score, true = [], []
            for m, kw in GRID:
                res = ir.reconstruct(y, op, m, reference=x, **kw)
                q = estimate_quality(y, op, m, ir.method_params(m)(**kw), x_hat=res.x,
                                     sigma=sigma)
                score.append(-q.score)
                true.append(res.metrics["psnr"])
                est_name = q.estimator
            rs.append(spearmanr(score, true).correlation)
        out[fam] = min(rs)
        print(f"{fam:13s} {est_name:10s} " + " ".join(f"{r:11.3f}" for r in rs)
              + f" {min(rs):6.3f}   {'ok' if min(rs) >= 0.8 else 'MISSED'}"
              f"   ({time.perf_counter() - t0:.0f} s)", flush=True)
    return out


def oracle_tv(y, op, x, iters: int = 100) -> tuple[float, float]:
    """TV's oracle weight by the true PSNR: 13-point log grid, then golden section."""
    grid = np.logspace(-4, 0, 13)
    vals = {lam: _true(y, op, x, "tv-fista", {"lam": lam, "iters": iters}) for lam in grid}
    best = max(vals, key=vals.get)
    lo, hi = math.log10(best) - 1 / 3, math.log10(best) + 1 / 3
    g = (math.sqrt(5) - 1) / 2
    for _ in range(8):
        a, b = hi - g * (hi - lo), lo + g * (hi - lo)
        fa = _true(y, op, x, "tv-fista", {"lam": 10 ** a, "iters": iters})
        fb = _true(y, op, x, "tv-fista", {"lam": 10 ** b, "iters": iters})
        vals[10 ** a], vals[10 ** b] = fa, fb
        lo, hi = (lo, b) if fa >= fb else (a, hi)
    best = max(vals, key=vals.get)
    return best, vals[best]


def autotune_table(images, n: int, families=AUTOTUNE_FAMILIES) -> None:
    print(f"\n## Auto-tuned tv-fista against TV at the oracle weight ({n} px, budget 10)")
    print(f"{'family':10s} {'image':12s} {'oracle lam':>10s} {'oracle dB':>9s} "
          f"{'auto lam':>9s} {'auto dB':>8s} {'gap dB':>7s}  target <= 0.3")
    gaps = []
    for fam in families:
        for img in images:
            x, op, y, sigma = _problem(fam, img, n)
            lam_o, p_o = oracle_tv(y, op, x)
            tuned = drain(autotune_steps(y, op, "tv-fista", {"iters": 100}, budget=10,
                                         sigma=sigma))
            p_a = _true(y, op, x, "tv-fista", {"lam": tuned.values["lam"], "iters": 100})
            gaps.append(p_o - p_a)
            print(f"{fam:10s} {img:12s} {lam_o:10.3g} {p_o:9.2f} {tuned.values['lam']:9.3g} "
                  f"{p_a:8.2f} {p_o - p_a:7.2f}  {'ok' if p_o - p_a <= 0.3 else 'MISSED'}",
                  flush=True)
    print(f"mean gap {np.mean(gaps):.2f} dB, worst {max(gaps):.2f} dB; within 0.3 dB on "
          f"{sum(g <= 0.3 for g in gaps)}/{len(gaps)}")


def select_table(images, n: int, families=SELECT_FAMILIES) -> None:
    names = ", ".join(m for m, _ in CANDIDATES)
    print(f"\n## Ranked choice among {names} ({n} px)")
    print(f"{'family':10s} {'image':12s} {'chosen':10s} {'dB':>6s} {'best':10s} {'dB':>6s} "
          f"{'gap':>5s} {'adjoint':>7s} {'sure':>5s}  target gap <= 0.5, >= adjoint")
    for fam in families:
        for img in images:
            x, op, y, sigma = _problem(fam, img, n)
            true = {m: _true(y, op, x, m, kw) for m, kw in CANDIDATES}
            ranking = drain(rank_steps(y, op, CANDIDATES, sigma=sigma))
            chosen = ranking.best.method
            best = max(true, key=true.get)
            gap = true[best] - true[chosen]
            ok = gap <= 0.5 and true[chosen] >= true["adjoint"]
            print(f"{fam:10s} {img:12s} {chosen:10s} {true[chosen]:6.2f} {best:10s} "
                  f"{true[best]:6.2f} {gap:5.2f} {true['adjoint']:7.2f} "
                  f"{ranking.confidence[0]:5.0%}  {'ok' if ok else 'MISSED'}", flush=True)


def phantom_mri_best() -> None:
    print("\n## 'Best for this data' on the phantom-mri sample (256 px, 4x, noise 0.01)")
    x = shepp_logan(256)
    op = ir.make_operator("mri", x.shape, acceleration=4, center_fraction=0.08,
                          pattern="random", seed=0)
    y = ir.simulate(x, op, sigma=0.01, seed=0)
    t0 = time.perf_counter()
    res, ranking = ir.best_for_data(y, op, budget=6, noise={"model": "gaussian",
                                                            "sigma": 0.01})
    t_best = time.perf_counter() - t0
    chosen = ir.reconstruct(y, op, res.provenance["method"], reference=x,
                            **res.provenance["params"]).metrics["psnr"]
    lam_o, p_o = oracle_tv(y, op, x)
    print(ranking.summary())
    print(f"chosen {res.provenance['method']} {chosen:.2f} dB in {t_best:.0f} s; tv-fista at "
          f"the oracle weight {lam_o:.3g}: {p_o:.2f} dB -> "
          f"{'ok' if chosen >= p_o else 'MISSED'} (target: at least as good)")


def main(flags: list[str] | None = None) -> None:
    flags = flags or []
    quick = "--quick" in flags
    chosen = flag_value(flags, "families")
    tables = (flag_value(flags, "tables") or "spearman,autotune,select,phantom-mri").split(",")

    def fams(default):
        return tuple(f for f in default if chosen is None or f in chosen.split(","))
    torch.manual_seed(0)
    images = IMAGES[:2] if quick else IMAGES
    t0 = time.perf_counter()
    if "spearman" in tables:
        spearman_table(images, 64, fams(FAMILIES))
    if "autotune" in tables:
        autotune_table(images[:3], 64, fams(AUTOTUNE_FAMILIES))
    if "select" in tables:
        select_table(images[:3], 64, fams(SELECT_FAMILIES))
    if not quick and "phantom-mri" in tables:
        phantom_mri_best()
    print(f"\nquality benchmark: {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
