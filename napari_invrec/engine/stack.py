"""Reconstruction of measurement stacks (``(..., H, W)``, numpy or dask) plane by plane.

Three ways, none of which makes the input dense as a whole:

* :func:`reconstruct_plane` computes only the block holding one plane and reconstructs it
  (the interactive "plane in view" mode);
* :func:`reconstruct_lazy` returns a dask array with one block per plane whose blocks are
  reconstructed only when computed (napari computes the plane it shows);
* :func:`reconstruct_eager` reconstructs every plane, yielding progress, into a numpy
  result (output memory only): a batch of planes per method call where the method allows it
  (:mod:`~.slice_batch`), else plane by plane. A ``cancel`` event stops it within one step of
  the plane (or batch) being reconstructed, not only between planes.

Each plane runs through the engine's driver :func:`~.execute.run_to_result` (a batch of
planes through :func:`~.slice_batch.reconstruct_batched`). The method's
parameters are a params dataclass instance (``params``) or its fields as keywords (turned into
one with :func:`~napari_invrec.core.params.make_params`, so a bad value fails before any plane
runs).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Generator
from typing import Any

import numpy as np

from ..core.errors import CancelledError
from .execute import method_params_for, run_to_result
from .history import DEFAULT_BUDGET, check_holds_one
from .layers import image_display
from .runner import Progress, Result
from .slice_batch import batchable, check_batch, check_planes, reconstruct_batched

#: iterate-history budget of one plane of a whole-stack run, in plane images: only the final
#: image is kept, so the budget holds a few images of the plane (the iterate and its streams)
STACK_HISTORY_PLANES = 4


def plane_budget(op: Any, history_budget: int | None) -> int:
    """``history_budget``, or (``None``) room for :data:`STACK_HISTORY_PLANES` plane images."""
    if history_budget is not None:
        return history_budget
    return STACK_HISTORY_PLANES * 4 * int(np.prod(op.shape))


def _as_dask(y: Any) -> Any:
    import dask.array as da

    if isinstance(y, da.Array):
        return y
    return da.from_array(np.asarray(y), chunks=(1,) * (np.ndim(y) - 2) + np.shape(y)[-2:])


def plane_chunks(y: Any) -> Any:
    """``y`` as dask with one block per plane (only the leading axes are re-chunked)."""
    y = _as_dask(y)
    return y.rechunk((1,) * (y.ndim - 2) + tuple(y.shape[-2:]))


def reconstruct_plane(y: Any, index: tuple[int, ...], op: Any, method: str,
                      params: Any = None, *, seed: int = 0, x0: Any = None,
                      reference: Any = None, history_budget: int = DEFAULT_BUDGET,
                      threads: int | None = None, cancel: threading.Event | None = None,
                      progress: Callable[[Progress], Any] | None = None,
                      normalise: str = "auto", **fields: Any) -> Result:
    """Reconstruct the plane ``y[index]`` of a stack; computes only that plane's block.

    ``params`` / ``**fields``: the method's parameters (see the module docstring); the other
    keywords are those of :func:`~.execute.run_to_result`.
    """
    p = method_params_for(method, op, params, **fields)
    block = plane_chunks(y)[tuple(index)]
    return run_to_result(block, op, method, p, seed=seed, x0=x0, reference=reference,
                         budget_bytes=history_budget, threads=threads, cancel=cancel,
                         progress=progress, normalise=normalise)


def reconstruct_lazy(y: Any, op: Any, method: str, params: Any = None, *, seed: int = 0,
                     history_budget: int | None = None, threads: int | None = None,
                     normalise: str = "auto", **fields: Any) -> Any:
    """A lazy ``(..., H, W)`` float32 dask array of display reconstructions, one block a plane.

    The parameters are checked now; a plane is reconstructed when its block is computed.
    """
    p = method_params_for(method, op, params, **fields)
    yd = plane_chunks(y)

    def block_fn(block: np.ndarray) -> np.ndarray:
        lead = block.shape[:-2]
        res = run_to_result(np.asarray(block).reshape(block.shape[-2:]), op, method, p,
                            seed=seed, budget_bytes=plane_budget(op, history_budget),
                            threads=threads, normalise=normalise)
        return image_display(res.x).astype(np.float32).reshape(*lead, *op.shape)

    return yd.map_blocks(block_fn, dtype=np.float32,
                         chunks=tuple((1,) * n for n in yd.shape[:-2]) + tuple(
                             (s,) for s in op.shape))


def reconstruct_eager(y: Any, op: Any, method: str, params: Any = None, *, seed: int = 0,
                      history_budget: int | None = None, threads: int | None = None,
                      cancel: threading.Event | None = None,
                      progress: Callable[[Progress], Any] | None = None,
                      normalise: str = "auto", batch: int | None = None,
                      **fields: Any) -> Generator[tuple[int, int], None, np.ndarray]:
    """Reconstruct every plane; yields ``(done, total)`` per plane, returns the display stack.

    Parameters
    ----------
    y
        ``(..., H, W)`` measurement stack, numpy or dask (one plane, or one batch of planes,
        computed at a time). A numpy stack is validated whole before any plane runs.
    op, method
        Operator (for one plane) and method name.
    params, **fields
        The method's parameters (see the module docstring).
    seed, threads, normalise
        As for :func:`~.execute.run_to_result` (every plane uses ``seed``; each plane is
        normalised on its own data).
    history_budget
        Iterate-history bytes of each plane run on its own; ``None``: :func:`plane_budget`
        (only the final image of a plane is kept; a batched run keeps no history).
    cancel
        Checked before every step of every plane: once set, the current plane stops before
        its next step and :class:`~napari_invrec.core.errors.CancelledError` is raised (the
        input is never written to; nothing is returned).
    progress
        Called with each step's :class:`~.runner.Progress` within the current plane (or
        batch), in the thread that drives this generator.
    batch
        Planes per method call for a :func:`~.slice_batch.batchable` method (the result
        equals plane-by-plane runs to float rounding); ``None``: the largest batch that fits
        in memory, at most :data:`~.slice_batch.BATCH_CAP` (on the CPU at most
        :data:`~.slice_batch.CPU_BATCH_BYTES` of images, so large planes run one by one);
        ``1``: plane by plane. Other methods always run plane by plane.
    """
    p = method_params_for(method, op, params, **fields)
    if history_budget is not None:  # the final image of a plane is kept, batched or not
        check_holds_one(4 * int(np.prod(op.shape)), history_budget)
    if check_batch(batch) != 1 and batchable(method, p):
        return (yield from reconstruct_batched(y, op, method, p, batch=batch, seed=seed,
                                               threads=threads, cancel=cancel,
                                               progress=progress, normalise=normalise))
    if isinstance(y, np.ndarray):
        check_planes(y, op)  # a bad plane is refused before any plane runs
    yd = plane_chunks(y)
    lead = yd.shape[:-2]
    out = np.zeros((*lead, *op.shape), dtype=np.float32)
    total = int(np.prod(lead)) if lead else 1
    for k, idx in enumerate(np.ndindex(*lead)):
        try:
            res = run_to_result(yd[idx], op, method, p, seed=seed,
                                budget_bytes=plane_budget(op, history_budget), threads=threads,
                                cancel=cancel, progress=progress, normalise=normalise)
        except CancelledError as e:
            raise CancelledError(f"{e} (plane {k + 1} of {total})") from None
        out[idx] = image_display(res.x)
        yield k + 1, total
    return out
