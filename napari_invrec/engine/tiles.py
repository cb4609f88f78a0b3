r"""Tiled reconstruction of images larger than memory, for operators whose physics is local.

:func:`run_tiled` solves each tile (core + halo, :mod:`.tile_grid`) as its own problem with the
same operator family and method, and blends the cores into the result, so that peak memory is
set by the tile, not by the image. The halo comes from the physics (:mod:`.tile_halo`): away
from the image border, tiled and untiled runs agree to about 1e-5 of the image range.

Passes, each reading the measurement window by window (:mod:`.tile_io`), never whole:

1. plan (:mod:`.tile_plan`): operator from its spec, locality, halo, memory, tile size;
2. scan: every value finite, the fingerprint of the measurement (as a normal run records it);
3. normalisation (unless ``off``, :mod:`.tile_units`): :math:`A^H y / A^H A \mathbf 1` on every
   core, then the same rule as a normal run, so every tile runs in the untiled run's units;
4. tiles: the method runs on each window; the core (with the blend margin) of its final
   iterate, and of the iterates at the steps of the shared history schedule, is added with
   its cosine weights into the output and the ``(N, H, W)`` history, both zarr arrays when
   ``out`` is given (else numpy).

The history follows :class:`~.history.IterateHistory`'s bounded-budget rule, computed ahead
(:func:`~.tile_grid.history_schedule`) so every tile stores the same steps; when the budget
holds a single frame only the final image is kept and ``Result.iterates`` is a view of it.

Out of memory (CUDA's ``OutOfMemoryError``, a ``MemoryError``, a ``ResourceError``): the tile
is halved and the run restarted; the progress callback and the provenance's
``tiling.warnings`` say so; below :func:`~.tile_plan.min_core` the run stops with
:class:`~napari_invrec.core.errors.ResourceError`.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch

from ..core.cancel import cancel_point, cancellable
from ..core.errors import CancelledError, DivergenceError, InputError, ResourceError
from .history import DEFAULT_BUDGET
from .memory import is_out_of_memory
from .normalise import NORMALISE_MODES, Normalisation
from .runner import Result
from .tile_grid import Tile, TileGrid, history_schedule
from .tile_io import TileOutputs, check_out_path, read_window, scan
from .tile_plan import Problem, choose_core, make_grid, min_core, resolve, tile_bytes
from .tile_units import tile_normalisation

__all__ = ["TileProgress", "TileOutput", "run_tiled", "run_tile"]


@dataclass
class TileProgress:
    """Progress of a tiled run, after each step of each tile.

    Attributes
    ----------
    tile, tiles
        Current tile (1-based) and number of tiles.
    step, total
        Step of the method within the tile.
    metrics
        ``residual`` of the tile's core at this step.
    message
        A notice (a tile halved after running out of memory), else ``None``.
    """

    tile: int
    tiles: int
    step: int
    total: int
    metrics: dict = field(default_factory=dict)
    message: str | None = None

    @property
    def fraction(self) -> float:
        """Fraction of the run done."""
        done = (self.tile - 1) + (self.step / self.total if self.total else 0.0)
        return max(0.0, min(1.0, done / max(1, self.tiles)))


@dataclass
class TileOutput:
    """What :func:`run_tile` returns: the final image window (input units) and the squared
    residual of the core at each step with the squared norm of the core's measurement."""

    x: np.ndarray
    residual_sq: list[float]
    measurement_sq: float


@dataclass
class _Context:
    problem: Problem
    grid: TileGrid
    norm: Normalisation
    slots: dict[int, int]
    seed: int
    cancel: threading.Event | None
    progress: Callable[[TileProgress], Any] | None
    _ops: dict = field(default_factory=dict)

    def operator(self, tile: Tile) -> Any:
        """The tile's operator: one per window shape, a new one where the mask differs."""
        if self.problem.mask is not None:
            return self.problem.tile_operator(tile)
        if tile.shape not in self._ops:
            self._ops[tile.shape] = self.problem.tile_operator(tile)
        return self._ops[tile.shape]


def _core(tile: Tile, grid: TileGrid) -> tuple[slice, slice]:
    """The core of ``tile`` in its window (measurement grid)."""
    return (slice(tile.rows[0] - tile.origin[0], tile.rows[1] - tile.origin[0]),
            slice(tile.cols[0] - tile.origin[1], tile.cols[1] - tile.origin[1]))


def run_tile(tile: Tile, ctx: _Context, sink: Callable[[int, np.ndarray], None]) -> TileOutput:
    """Run the method on one tile's window; ``sink(slot, image)`` receives the iterates of the
    history schedule (input units, the image window)."""
    p = ctx.problem
    y_w = read_window(p.source, tile.origin, tile.shape, ctx.grid.boundary)
    op = ctx.operator(tile)
    y_t = torch.from_numpy(y_w)[None, None].to(op.device)
    rs, cs = _core(tile, ctx.grid)
    y_sq = float((y_t[..., rs, cs].double() ** 2).sum())
    gen = torch.Generator(device=op.device).manual_seed(int(ctx.seed))
    it = p.spec.fn(ctx.norm.measurement(y_t, op), op, p.params, x0=None, generator=gen)
    where = f"tile {tile.index + 1}/{ctx.grid.n}"
    res: list[float] = []
    state = None
    try:
        with torch.no_grad():
            while True:
                if ctx.cancel is not None and ctx.cancel.is_set():
                    raise CancelledError(f"{p.method} was cancelled in {where}")
                try:
                    with cancellable(ctx.cancel):
                        cancel_point()
                        state = next(it)
                except StopIteration as stop:
                    state = stop.value if stop.value is not None else state
                    break
                x = ctx.norm.to_units(state.x[:1])
                if not bool(torch.isfinite(x).all()):
                    raise DivergenceError(f"{p.method} produced non-finite values in {where} "
                                          f"at step {state.step}; lower its step size or raise "
                                          "its regularisation weight")
                r = (op.A(x) - y_t)[..., rs, cs]
                res.append(float((r.double() ** 2).sum()))
                if state.step in ctx.slots:
                    sink(ctx.slots[state.step], x[0, 0].cpu().numpy())
                if ctx.progress is not None:
                    rel = (res[-1] / y_sq) ** 0.5 if y_sq > 0 else 0.0
                    ctx.progress(TileProgress(tile.index + 1, ctx.grid.n, state.step,
                                              state.total, {"residual": rel}))
    finally:
        it.close()
    if state is None:
        raise RuntimeError(f"{p.method} yielded no state in {where}")
    x = ctx.norm.to_units(state.x[:1])[0, 0].cpu().numpy()
    last = max(ctx.slots, default=None)
    if last is not None and state.step < last:  # stopped early: its final iterate closes
        sink(ctx.slots[last], x)
    return TileOutput(x, res, y_sq)


def _add(target: Any, tile: Tile, grid: TileGrid, slot: int | None, x: np.ndarray) -> None:
    """Add ``tile``'s weighted contribution from its window image ``x`` into ``target``."""
    ra, ca = grid.image_axes()
    i, j = tile.grid_pos
    r0, r1, wr = ra.contribution(i)
    c0, c1, wc = ca.contribution(j)
    o_r, o_c = tile.origin[0] * grid.factor, tile.origin[1] * grid.factor
    part = x[r0 - o_r:r1 - o_r, c0 - o_c:c1 - o_c] * wr[:, None] * wc[None, :]
    key = (slice(r0, r1), slice(c0, c1)) if slot is None else (slot, slice(r0, r1),
                                                               slice(c0, c1))
    target[key] = target[key] + part


def _attempt(p: Problem, grid: TileGrid, normalise: str, out: Any, steps: list[int],
             frames: int, seed: int, cancel: threading.Event | None,
             progress: Callable[[TileProgress], Any] | None) -> tuple:
    """One pass over the tiles: ``(normalisation, outputs, residual^2 per step, |y|^2)``."""
    norm = tile_normalisation(p, grid, normalise)
    outs = TileOutputs(out, p.image_shape, len(steps) if frames > 1 else 1)
    slots = {s: i for i, s in enumerate(steps)} if outs.hist is not None else {}
    ctx = _Context(p, grid, norm, slots, seed, cancel, progress)
    res_sq: list[float] = []
    y_sq = 0.0
    for t in grid.tiles():
        o = run_tile(t, ctx, functools.partial(_add, outs.hist, t, grid))
        _add(outs.x, t, grid, None, o.x)
        res_sq = o.residual_sq if not res_sq else [a + b for a, b in zip(res_sq, o.residual_sq)]
        y_sq += o.measurement_sq
    return norm, outs, res_sq, y_sq


def run_tiled(y: Any, op: Any, method: str, params: Any = None, *, tile: Any = "auto",
              out: Any = None, halo: int | None = None, seed: int = 0, device: Any = None,
              arrays: dict | None = None, normalise: str = "auto",
              history_budget: int = DEFAULT_BUDGET, max_memory: int | None = None,
              available: dict | None = None,
              progress: Callable[[TileProgress], Any] | None = None,
              cancel: threading.Event | None = None) -> Result:
    """Reconstruct ``y`` tile by tile (module docstring) and return a :class:`Result`.

    Parameters
    ----------
    y
        2-D real measurement: numpy, dask, a ``zarr.Array`` or the path of one. Never modified.
    op
        An operator (its family and parameters are read; it may be built for any shape) or a
        spec ``{"operator": name, "params": {...}}`` (plus ``arrays`` for fingerprinted array
        parameters).
    method, params
        Method name and its params (instance, mapping or ``None``).
    tile
        ``"auto"`` (one tile when the image fits, else the largest that fits) or the core
        size in pixels of the measurement grid.
    out
        Path of a zarr array for the result (its history goes beside it,
        :func:`~.tile_io.history_path`); ``None`` keeps both in memory.
    halo
        Override the derived halo (pixels of the image grid).
    seed, device, normalise
        As for a normal run.
    history_budget
        Bytes of the stored history (on disk with ``out``).
    max_memory, available
        A cap on the tiles' working memory; free bytes by device type (tests).
    progress
        Called with a :class:`TileProgress` after each step of each tile.
    cancel
        Once set, the run stops with :class:`CancelledError` within a step.

    Returns
    -------
    Result
        ``x`` and ``iterates`` are numpy without ``out``, dask arrays over the zarr arrays
        with it; ``provenance["tiling"]`` records the tiling, ``["storage"]`` says which.

    Raises
    ------
    InputError
        A non-local operator or method, bad data, a tile smaller than the halo, a bad
        ``out`` path; all before any work.
    ResourceError
        The smallest tile does not fit, or memory ran out below the smallest tile.
    """
    from ..core.operators.registry import operator_arrays
    from .memory import run_steps
    from .provenance import make_provenance

    t0 = time.perf_counter()
    if normalise not in NORMALISE_MODES:
        raise InputError(f"normalise must be one of {', '.join(NORMALISE_MODES)}, got "
                         f"{normalise!r}")
    p = resolve(y, op, method, params, arrays=arrays, device=device, halo=halo)
    reads = [s.path for s in (p.source, p.mask) if s is not None and s.path is not None]
    out_path = None if out is None else check_out_path(out, reads)
    h, w = p.image_shape
    frames = max(1, int(history_budget) // (4 * h * w))
    total = run_steps(p.params)
    steps = history_schedule(total, frames) if frames > 1 else [total]
    host = 0 if out is not None else 4 * h * w * (1 + (len(steps) if frames > 1 else 0))
    core, memory = choose_core(p, tile, available=available, max_memory=max_memory,
                               host_bytes=host)
    fingerprint = scan(p.source)
    warnings: list[str] = []
    while True:
        grid = make_grid(p, core)
        try:
            norm, outs, res_sq, y_sq = _attempt(p, grid, normalise, out_path, steps, frames,
                                                seed, cancel, progress)
            break
        except Exception as e:
            if not (isinstance(e, ResourceError) or is_out_of_memory(e)):
                raise
            smaller = max(grid.rows.window - 2 * grid.rows.pad,
                          grid.cols.window - 2 * grid.cols.pad) // 2
            low = min_core(p)
            if smaller < low:
                raise ResourceError(f"{method} ran out of memory on {p.device} with tiles of "
                                    f"{core} px, and {smaller} px is below the smallest tile "
                                    f"({low} px): use device 'cpu' or a lighter method") from e
            note = (f"out of memory on {p.device} with tiles of {core} px "
                    f"({type(e).__name__}); retrying with {smaller} px")
            warnings.append(note)
            if progress is not None:
                progress(TileProgress(0, grid.n, 0, total, {}, message=note))
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            core = smaller
    t_setup = outs.t_setup - t0
    residual = [(r / y_sq) ** 0.5 if y_sq > 0 else 0.0 for r in res_sq]
    metrics = {"residual": residual[-1]} if residual else {}
    t_total = time.perf_counter() - t0
    prov = make_provenance(SimpleNamespace(spec=p.op_spec), method, p.params, seed=seed,
                           device=str(p.device), measurement=np.zeros(0, np.float32),
                           timings={"setup_s": t_setup, "total_s": t_total, "steps": total},
                           metrics=metrics, normalise=norm.to_dict())
    prov["measurement"] = fingerprint
    core = max(b - a for ax in (grid.rows, grid.cols) for a, b in zip(ax.cuts, ax.cuts[1:]))
    prov["tiling"] = {"tile": int(core), "halo": p.reach.halo, "halo_rule": p.reach.rule,
                      "align": p.reach.align, "tiles": grid.n, **grid.as_dict(),
                      "requested": tile if tile == "auto" else int(tile), **memory,
                      "estimate_bytes": tile_bytes(p, grid), "warnings": warnings}
    x, iterates = outs.finish(prov, steps)
    return Result(x=x, iterates=iterates, steps=list(steps), streams={}, metrics=metrics,
                  metric_history={"residual": residual}, provenance=prov,
                  arrays=dict(operator_arrays(SimpleNamespace(params=p.op_params))),
                  measurement=_measurement(p))


def _measurement(p: Problem) -> Any:
    """The measurement as it ran: float32 numpy input itself (a memory map stays one), else
    a lazy float32 dask array over the input (never read whole here)."""
    a = p.source.array
    if isinstance(a, np.ndarray) and (a.dtype == np.float32 or not isinstance(a, np.memmap)):
        return a.astype(np.float32, copy=False)
    import dask.array as da

    if not isinstance(a, da.Array):
        a = da.from_zarr(a) if hasattr(a, "store") and hasattr(a, "chunks") else \
            da.from_array(a)
    return a.astype(np.float32)
