r"""Reconstruct the planes of a stack in batches: one method call for up to ``batch`` planes.

Core methods take a batch of measurements ``(B, 1, ...)``. For a stack ``(..., H, W)`` of
independent planes (multi-slice MRI k-space, a z-stack deconvolved plane by plane), running
``B`` planes through one generator call replaces ``B`` passes of Python, FFT set-up and
kernel launches by one. The result equals plane-by-plane runs
(:func:`~.stack.reconstruct_eager` with ``batch=1``) to float rounding because

* every plane is validated as :func:`~.runner.prepare_measurement` validates a single
  measurement, and refused (naming the plane) before its batch runs;
* every plane is normalised with its own affine map :math:`x_b = s_b u_b + o_b`
  (:func:`~.normalise.method_normalisation` on that plane alone), so the method sees exactly the
  :math:`y_{u,b} = (y_b - o_b A\mathbf 1)/s_b` a single run would, and its result is mapped
  back with that plane's :math:`s_b, o_b`;
* only methods whose maths is independent per batch element run batched
  (:data:`BATCHABLE`): no reduction over the batch (a shared step size, line search or a
  stopping rule on the batch's largest change), no random draw, no network trained on the
  data. Other methods keep the plane loop.

The batch size is the largest that fits the memory check of one run
(:func:`~.memory.estimate_run_bytes` grows linearly with the batch), at most
:data:`BATCH_CAP`, and on the CPU at most :data:`CPU_BATCH_BYTES` of images: there batching
pays for small planes only (see its note), so a stack of large planes keeps the plane loop
unless ``batch`` is given. A batch that runs out of memory all the same (another process took
the GPU's memory) is halved and retried, with a warning.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable, Generator
from typing import Any

import numpy as np
import torch

from ..core.cancel import cancel_point, cancellable
from ..core.errors import CancelledError, DivergenceError, InputError, ResourceError
from ..core.methods import get_method
from ..core.params import make_params
from ..core.threads import torch_threads
from .execute import method_params_for
from .layers import image_display
from .memory import estimate_run_bytes, fmt_bytes, free_bytes, is_out_of_memory
from .normalise import method_normalisation
from .runner import Progress, RunSettings, prepare_measurement

__all__ = ["BATCHABLE", "STOP_ON_BATCH", "BATCH_CAP", "CPU_BATCH_BYTES", "batchable", "auto_batch",
           "check_batch", "plane_axes", "check_planes", "reconstruct_batched"]

#: methods whose result on a batch of planes equals their result on each plane alone, to
#: float rounding (measured against plane-by-plane runs on mri, multi-coil mri, blur, ct,
#: superres and inpaint stacks: identical, or within 2e-6 of the plane's range after 20
#: iterations where batched FFTs and convolutions round differently; ``tests/test_slice_batch.py``
#: keeps the check). Left out: dip and csgm (random starts drawn for the whole batch; dip also
#: trains one network on all of it), hio, gerchberg-saxton and wirtinger-flow (random starts),
#: blind-deconv (it loops over the batch itself: nothing to gain), mcnn and neumann (no weights
#: here to check them), and every stochastic method
BATCHABLE = frozenset({"adjoint", "min-norm", "tikhonov", "sense-cg", "rss", "tv-fista",
                       "tv-admm", "tv-pdhg", "wavelet-fista", "sirt", "fbp", "bicubic",
                       "richardson-lucy", "wiener", "dpir", "pnp-pgd", "pnp-admm", "red",
                       "unet", "unrolled-pgd", "varnet"})

#: methods that stop once the largest relative change over the batch falls below ``tol``:
#: with ``tol > 0`` a batch runs until its slowest plane has converged, so they run batched
#: only with ``tol = 0`` (their default: a fixed number of iterations)
STOP_ON_BATCH = frozenset({"tv-fista", "tv-admm", "tv-pdhg", "wavelet-fista", "sirt"})

#: most planes per batch when the caller does not choose
BATCH_CAP = 16

#: on the CPU, the image bytes of one batch at most when the caller does not choose. A
#: larger batch makes every temporary larger than the allocator keeps cached, so each step
#: page-faults fresh memory in. Measured on 16 slices of 4x MRI (complex64; tv-fista, 1 and 2
#: threads, one process per setting, an idle 2-core machine): batches of 8-16 64x64 planes
#: ran 4-5x faster than the plane loop, batches of 4-8 128x128 planes (0.5-1 MB) mostly
#: 1.3-1.5x faster (one run of 4 at 2 threads 2.3x slower), while 256x256 planes ran 1.0-1.4x
#: *slower* in batches of 2 and 1.6-2.1x slower in batches of 16. A GPU has no such limit
#: (only :data:`BATCH_CAP` and its free memory); it was not measured here.
CPU_BATCH_BYTES = 512 * 1024


def batchable(method: str, params: Any = None) -> bool:
    """Whether ``method`` (with ``params``, its params dataclass instance, if given) may run
    several planes as one batch: in :data:`BATCHABLE`, not stochastic, and not stopping on a
    batch-wide tolerance (:data:`STOP_ON_BATCH` with ``tol > 0``)."""
    if method not in BATCHABLE or get_method(method).stochastic:
        return False
    return not (method in STOP_ON_BATCH and float(getattr(params, "tol", 0.0)) > 0)


def auto_batch(op: Any, method: str, params: Any, planes: int, *, cap: int = BATCH_CAP,
               available: dict | None = None) -> int:
    """The largest batch of at most ``min(cap, planes)`` whose estimated working memory,
    ``B`` times one run's (:func:`~.memory.estimate_run_bytes`, no history: only the final
    image is kept), fits the free memory of the operator's device; at least 1. On the CPU
    also at most :data:`CPU_BATCH_BYTES` of images (larger batches run slower there).

    ``available`` overrides the free bytes by device type (``{"cpu": n, "cuda": n}``).
    """
    work, _ = estimate_run_bytes(op, method, params, stochastic=False, budget_bytes=1)
    have = free_bytes(op.device, available)
    fits = have // max(work, 1)
    if torch.device(op.device).type == "cpu":
        cap = min(cap, CPU_BATCH_BYTES // (int(np.prod(op.shape)) * op.image_dtype.itemsize))
    return int(max(1, min(cap, planes, fits)))


def check_batch(batch: Any) -> int | None:
    """``batch`` (planes per method call) as an int, or ``None``; :class:`InputError` unless
    a whole number >= 1."""
    if batch is None:
        return None
    if isinstance(batch, bool) or not isinstance(batch, (int, np.integer)) or batch < 1:
        raise InputError(f"batch must be a whole number of planes >= 1, got {batch!r}")
    return int(batch)


def _check_batch_memory(op: Any, method: str, params: Any, batch: int,
                        available: dict | None) -> None:
    """Raise :class:`ResourceError` if ``batch`` planes' working memory exceeds free memory."""
    work, _ = estimate_run_bytes(op, method, params, stochastic=False, budget_bytes=1)
    have = free_bytes(op.device, available)
    if work * batch > have:
        raise ResourceError(f"{method} on {batch} planes of {'x'.join(map(str, op.shape))} at "
                            f"once needs about {fmt_bytes(work * batch)} on {op.device} but "
                            f"{fmt_bytes(have)} is free: use a smaller batch (at most "
                            f"{max(1, have // max(work, 1))}) or leave it to be chosen")


def _plane_tensor(plane: np.ndarray, k: int, total: int, op: Any) -> torch.Tensor:
    """``plane`` (number ``k`` of ``total``, 0-based) validated as one run's measurement,
    ``(1, 1, ...)`` on the operator's device."""
    try:
        return prepare_measurement(plane, op)
    except InputError as e:
        raise InputError(f"plane {k + 1} of {total}: {e}") from None


def plane_axes(y: Any, op: Any) -> tuple[int, ...]:
    """The leading (stack) axes of ``y``: all but the operator's measurement axes (two for
    an image, three for multi-coil k-space ``(coils, H, W)``)."""
    m = len(op.measurement_shape)
    if np.ndim(y) < m:
        raise InputError(f"a measurement stack must have at least {m} axes (the {op.name} "
                         f"operator's measurement is {tuple(op.measurement_shape)}), got "
                         f"shape {tuple(np.shape(y))}")
    return tuple(np.shape(y)[:np.ndim(y) - m])


def check_planes(y: Any, op: Any) -> None:
    """Validate every plane of the in-memory stack ``y`` as a single run's measurement.

    Raises
    ------
    InputError
        Naming the first plane that a single run would refuse (NaN/inf, wrong shape or
        dtype), with that run's reason.
    """
    y = np.asarray(y)
    lead = plane_axes(y, op)
    total = int(np.prod(lead))
    for k, idx in enumerate(np.ndindex(*lead)):
        _plane_tensor(y[idx], k, total, op)


def _load(y: Any, chunk: list[tuple[int, ...]]) -> list[np.ndarray]:
    """The planes ``y[idx]`` of one batch (a dask stack computed once for the batch)."""
    if isinstance(y, np.ndarray):
        return [y[idx] for idx in chunk]
    import dask.array as da

    return list(da.stack([y[idx] for idx in chunk]).compute())


def _cancelled(method: str, e: str, first: int, last: int, total: int) -> CancelledError:
    return CancelledError(f"{method} was cancelled {e} (planes {first}-{last} of {total})")


def _run_batch(y_u: torch.Tensor, op: Any, method: str, p: Any, spec: Any, *, seed: int,
               cancel: threading.Event | None, progress: Callable[[Progress], Any] | None,
               planes: tuple[int, int, int]) -> torch.Tensor:
    """Drive the method generator on the normalised batch ``y_u``; the final iterate
    ``(B, 1, ...)`` in the method's units. ``planes``: (first, last, total) for messages."""
    gen = torch.Generator(device=op.device).manual_seed(int(seed))
    it = spec.fn(y_u, op, p, x0=None, generator=gen)
    state, step = None, 0
    try:
        while True:
            if cancel is not None and cancel.is_set():
                raise _cancelled(method, f"after step {step}", *planes)
            try:
                with cancellable(cancel):
                    cancel_point()
                    state = next(it)
            except StopIteration as stop:
                state = stop.value if stop.value is not None else state
                break
            except CancelledError:
                raise _cancelled(method, f"during step {step + 1}", *planes) from None
            except (torch.cuda.OutOfMemoryError, MemoryError, RuntimeError) as e:
                if not is_out_of_memory(e):
                    raise
                raise _BatchOutOfMemoryError(step) from e
            step = state.step
            bad = ~torch.isfinite(state.x.flatten(1)).all(dim=1)
            if bool(bad.any()):
                k = planes[0] + int(bad.nonzero()[0, 0])
                raise DivergenceError(f"{method} produced non-finite values at step {step} "
                                      f"(plane {k} of {planes[2]}); lower its step size or "
                                      "raise its regularisation weight")
            if progress is not None:
                progress(Progress(state.step, state.total, {}))
    finally:
        it.close()
    if state is None:
        raise RuntimeError(f"{method} yielded no state")
    return state.x


def reconstruct_batched(y: Any, op: Any, method: str, params: Any = None, *,
                        batch: int | None = None, seed: int = 0, threads: int | None = None,
                        cancel: threading.Event | None = None,
                        progress: Callable[[Progress], Any] | None = None,
                        normalise: str = "auto", available: dict | None = None,
                        **fields: Any) -> Generator[tuple[int, int], None, np.ndarray]:
    """Reconstruct every plane of ``y``, ``batch`` planes per method call; yields
    ``(done, total)`` once per plane (after its batch), returns the display stack.

    Parameters
    ----------
    y
        ``(..., H, W)`` measurement stack, numpy or dask (one batch of planes computed at a
        time). A numpy stack is validated whole before any plane runs; a dask stack batch by
        batch, before the batch runs (validating it whole would read it twice).
    op, method, params, **fields
        As for :func:`~.stack.reconstruct_eager`; ``method`` must be :func:`batchable`.
    batch
        Planes per method call; ``None``: :func:`auto_batch`.
    seed, threads, normalise
        As for one run (:func:`~.runner.run`); each plane gets its own normalisation.
    cancel
        Checked before every step and at the method's cancel points: once set, the batch
        stops and :class:`~napari_invrec.core.errors.CancelledError` is raised naming the
        planes it held.
    progress
        Called with each step's :class:`~.runner.Progress` (no metrics: they would mix the
        planes) in the thread that drives this generator.
    available
        Overrides the free bytes by device type for the memory check (tests).

    Raises
    ------
    InputError
        A method that is not batchable, bad parameters, or a plane a single run would refuse.
    ResourceError
        ``batch`` planes do not fit in free memory (checked before the run), or one plane
        alone runs out of memory. A batch that runs out of memory while it runs (CUDA's
        ``OutOfMemoryError``) is halved and its planes run again, with a ``RuntimeWarning``
        that says so.
    """
    spec = get_method(method, op.name)
    spec.check_geometry(op)
    p = method_params_for(method, op, params, **fields)
    if not batchable(method, p):
        why = ("a tolerance tol > 0 stops the whole batch together" if method in BATCHABLE
               else "its planes are not independent in a batch")
        raise InputError(f"{method} cannot run planes as one batch ({why}); run the stack "
                         "plane by plane (batch=1)")
    settings = make_params(RunSettings, seed=seed, threads=threads, normalise=normalise)
    if not hasattr(y, "compute"):
        y = np.asarray(y)
        check_planes(y, op)
    lead = plane_axes(y, op)
    total = int(np.prod(lead))
    if check_batch(batch) is None:
        batch = auto_batch(op, method, p, total, available=available)
    else:
        batch = max(1, min(int(batch), total))
        _check_batch_memory(op, method, p, batch, available)
    out = np.zeros((*lead, *op.shape), dtype=np.float32)
    indices = list(np.ndindex(*lead))
    start = 0
    while start < total:
        chunk = indices[start:start + batch]
        if cancel is not None and cancel.is_set():
            raise _cancelled(method, "before it started", start + 1, start + len(chunk), total)
        ys = [_plane_tensor(a, start + j, total, op) for j, a in enumerate(_load(y, chunk))]
        try:
            with torch.no_grad(), torch_threads(settings.threads):
                norms = [method_normalisation(t, op, settings.normalise, spec) for t in ys]
                y_u = torch.cat([n.measurement(t, op) for n, t in zip(norms, ys)])
                del ys
                x = _run_batch(y_u, op, method, p, spec, seed=settings.seed, cancel=cancel,
                               progress=progress,
                               planes=(start + 1, start + len(chunk), total))
                for j, idx in enumerate(chunk):
                    out[idx] = image_display(norms[j].to_units(x[j:j + 1]).detach()[0, 0]
                                             .cpu().numpy())
        except _BatchOutOfMemoryError as e:
            y_u = x = None
            batch = _halved(method, op, batch, e.step, e.__cause__)
            continue  # the same planes again, fewer at once
        for j in range(len(chunk)):
            yield start + j + 1, total
        start += len(chunk)
    return out


class _BatchOutOfMemoryError(Exception):
    """A batch ran out of memory at ``step`` (the allocator's error is its cause)."""

    def __init__(self, step: int) -> None:
        super().__init__(step)
        self.step = step


def _halved(method: str, op: Any, batch: int, step: int, cause: BaseException | None) -> int:
    """Half of ``batch`` after it ran out of memory at ``step``, with a warning that says so;
    :class:`~napari_invrec.core.errors.ResourceError` when one plane alone does not fit."""
    if batch <= 1:
        raise ResourceError(f"{method} ran out of memory after step {step} on {op.device} with "
                            "one plane at a time: use device 'cpu' or a smaller image") from cause
    smaller = batch // 2
    warnings.warn(f"{method}: out of memory on {op.device} with {batch} planes at once "
                  f"({type(cause).__name__}); retrying those planes {smaller} at a time",
                  RuntimeWarning, stacklevel=2)
    if op.device.type == "cuda":
        torch.cuda.empty_cache()
    return smaller
