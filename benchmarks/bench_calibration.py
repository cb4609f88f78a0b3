"""Calibration sources: does the stated 90 % coverage hold, and for which images?

A ``langevin-tv`` run (unadjusted Langevin with a TV prior) on a 64 px image blurred by a
Gaussian (sigma 2 px) with Gaussian noise 0.03 is calibrated by split-conformal prediction
(:func:`~napari_invrec.engine.calibration.calibrate_run`, per-pixel scores, alpha = 0.1) from three
sources of truths:

* ``phantoms``: 32 pairs from the synthetic ellipse-phantom generator (16 calibrate, 16 held
  out);
* ``images``: 32 reference images of the run's kind, fresh draws of its generator
  (:func:`~napari_invrec.core.data.fresh_draw`, indices 1-32; 16 calibrate, 16 held out);
* ``bootstrap``: 32 pairs whose truth is the run's own posterior mean.

For each, the table gives the stated coverage, the coverage measured on the source's own 16
held-out pairs with its standard error over those images (per-image coverages, not pixels), and
- the honest test - the coverage of the same bands on 32 *fresh truths of the run's kind*
(indices 100-131, never used to calibrate;
:func:`~napari_invrec.engine.trust.heldout_coverage`), with whether each lies in [0.88, 0.92]
and, since atoms images vary much more from image to image than phantoms (a standard error near
0.02 even on 32 images), whether the fresh-truth coverage lies within two standard errors of
0.90. The run's image is draw 0 of the kind; the rows are repeated for ``phantoms`` and
``atoms`` runs (``--kind=atoms`` or ``--kind=phantoms`` for one). The run is solved without
normalisation (its image already spans [0, 1]) so that all sources reconstruct exactly as the
run did. ``--quick`` halves the Langevin steps. One torch thread: on the shared 2-core machine,
two threads fighting other jobs made each Langevin step ~40x slower.
"""

from __future__ import annotations

import time

import numpy as np

SIZE = 64
NOISE = 0.03
ALPHA = 0.1
N_PAIRS = 32
N_FRESH = 32
BAND = (0.88, 0.92)
SOURCES = ("phantoms", "images", "bootstrap")
KINDS = ("phantoms", "atoms")


def _stack(kind: str, indices: range) -> np.ndarray:
    from napari_invrec.core.data import fresh_draw

    return np.stack([fresh_draw(kind, SIZE, i) for i in indices])


def _run(kind: str, iters: int):
    import napari_invrec as ir
    from napari_invrec.core.data import fresh_draw

    op = ir.make_operator("blur", (SIZE, SIZE), device="cpu", sigma=2.0)
    y = ir.simulate(fresh_draw(kind, SIZE, 0), op, sigma=NOISE, seed=0)
    res = ir.reconstruct(y, op, "langevin-tv", lam=0.02, sigma=NOISE, iters=iters,
                         burn_in=iters // 4, n_samples=8, normalise="off")
    res.provenance["noise"] = {"model": "gaussian", "sigma": NOISE}
    return res


def _inside(c: float) -> str:
    return "yes" if BAND[0] <= c <= BAND[1] else "no"


def main(flags: list[str]) -> None:
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _table(flags)
    finally:
        torch.set_num_threads(threads)


def _table(flags: list[str]) -> None:
    from napari_invrec.engine.calibration import calibrate_run, heldout_coverage

    iters = 100 if "--quick" in flags else 200
    kinds = [k for k in KINDS if f"--kind={k}" in flags] or list(KINDS)
    print(f"\n## Calibration sources (langevin-tv, {iters} steps, 8 chains; blur sigma 2 px, "
          f"{SIZE} px, noise {NOISE}; alpha {ALPHA}, {N_PAIRS} pairs)\n")
    print("| run's image | source | q | stated | measured on own held-out (16) ± se | in "
          f"[{BAND[0]}, {BAND[1]}] | on {N_FRESH} fresh truths of the run's kind ± se | in "
          f"[{BAND[0]}, {BAND[1]}] | within 2 se | time (s) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for kind in kinds:
        res = _run(kind, iters)
        refs, fresh = _stack(kind, range(1, 1 + N_PAIRS)), _stack(kind, range(100, 100 + N_FRESH))
        for source in SOURCES:
            t0 = time.perf_counter()
            rep = calibrate_run(res, source, n_pairs=N_PAIRS, alpha=ALPHA, batch=16,
                                images=refs if source == "images" else None)
            cov, se = heldout_coverage(res, rep, fresh, seed=7, batch=16)
            dt = time.perf_counter() - t0
            label = "phantoms (generator)" if source == "phantoms" else source
            print(f"| {kind} draw 0 | {label} | {rep.q:.3g} | {rep.stated:.2f} | "
                  f"{rep.measured:.3f} ± {rep.measured_se:.3f} | {_inside(rep.measured)} | "
                  f"{cov:.3f} ± {se:.3f} | {_inside(cov)} | "
                  f"{'yes' if abs(cov - rep.stated) <= 2 * se else 'no'} | {dt:.1f} |")
    print("\nOwn held-out = the source's second half (generator draws, the other 16 reference "
          "images, or fresh noise on the run's mean for bootstrap). Bootstrap's own figure "
          "only checks the sampler around its own answer; the fresh-truth column is the "
          "coverage a user of these bands would see on new images of the run's kind.")


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
