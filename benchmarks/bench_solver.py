"""Time per iteration of tv-fista on 256x256 blur and MRI, against one A^H A application."""

from __future__ import annotations

import time

import numpy as np
import torch


def _best_of(fn, repeats: int = 5) -> float:
    best = np.inf
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def bench_solver(size: int = 256, iters: int = 50) -> list[dict]:
    """Return one row per operator: ms/iteration, ms per A^H A, and their ratio."""
    import napari_invrec as ir
    from napari_invrec.core.data import shepp_logan

    torch.set_num_threads(torch.get_num_threads())
    x = shepp_logan(size)
    rows = []
    for name, params in (("blur", {"sigma": 2.0}), ("mri", {"acceleration": 4})):
        op = ir.make_operator(name, x.shape, device="cpu", **params)
        y = ir.simulate(x, op, sigma=0.01)
        xt = op.as_image(torch.from_numpy(x)[None, None])
        with torch.no_grad():
            t_ata = _best_of(lambda op=op, xt=xt: op.AtA(xt), repeats=20)

        def solve(op=op, y=y) -> None:
            for _ in ir.solve(y, op, "tv-fista", iters=iters, lam=0.005):
                pass

        solve()  # warm-up
        t_it = _best_of(solve, repeats=3) / iters
        rows.append({"operator": name, "size": size, "ms_per_iter": 1e3 * t_it,
                     "ms_AtA": 1e3 * t_ata, "ratio": t_it / t_ata})
    return rows


def main() -> None:
    print(f"== solver: tv-fista time per iteration (torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, cpu)")
    print(f"{'operator':10s} {'size':>5s} {'ms/iter':>9s} {'ms A^H A':>9s} {'ratio':>7s}")
    for r in bench_solver():
        print(f"{r['operator']:10s} {r['size']:5d} {r['ms_per_iter']:9.2f} {r['ms_AtA']:9.2f} "
              f"{r['ratio']:7.1f}")


if __name__ == "__main__":
    main()
