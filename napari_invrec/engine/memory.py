"""Memory a run will need, estimated before it starts, and the check that refuses it early.

A run's peak working memory is

.. math::

    M \\approx f_{\\mathrm{method}} \\, (b_x + b_y) \\, B + \\min(M_h, \\; T \\, s \\, b_d)

with :math:`b_x, b_y` the bytes of one image and one measurement, :math:`B` the batch (the
posterior samples of a stochastic method), :math:`f` the method's working set in image copies
(measured once per method by ``scripts/measure_memory.py`` on the CUDA allocator, which counts
every byte; kept in ``memory_factors.json`` with the command), and the stored history: its
budget :math:`M_h` or, when smaller, :math:`T` steps of :math:`s` display streams of
:math:`b_d` bytes each. :data:`MARGIN` covers what the measurement cannot see (the CPU
allocator's fragmentation, numpy copies for display). A run whose estimate exceeds the free
memory of its device is refused in well under a second, with the figure and what to change.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from pathlib import Path
from typing import Any

import numpy as np

from ..core.errors import ResourceError

#: factor applied to the estimate for allocator overheads and display copies
MARGIN = 1.25
#: working set (image copies) assumed for a method that was not measured
DEFAULT_FACTOR = 128.0
FACTORS_FILE = Path(__file__).with_name("memory_factors.json")


@functools.cache
def method_factors() -> dict[str, float]:
    """Measured working set of each method, in image copies per batch element."""
    rec = json.loads(FACTORS_FILE.read_text())
    return {m: float(v["images"]) for m, v in rec["factors"].items()}


def available_bytes(device: Any) -> int:
    """Free memory of ``device``: the CUDA driver's free bytes, else ``MemAvailable``."""
    import torch

    dev = torch.device(device)
    if dev.type == "cuda":
        return int(torch.cuda.mem_get_info(dev)[0])
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    import os

    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return 2 ** 62  # unknown (macOS, Windows): do not refuse


def _nbytes(shape: tuple[int, ...], dtype: Any) -> int:
    return int(np.prod(shape, dtype=np.float64)) * dtype.itemsize


def batch_of(params: Any, stochastic: bool) -> int:
    """Images a method carries at once: its posterior samples, else one."""
    names = {f.name for f in dataclasses.fields(params)}
    return int(params.n_samples) if stochastic and "n_samples" in names else 1


def run_steps(params: Any) -> int:
    """Steps a run of ``params`` takes at most (its ``iters`` or ``steps``; 1 for one-shot)."""
    names = {f.name for f in dataclasses.fields(params)}
    for n in ("iters", "steps"):
        if n in names:
            return int(getattr(params, n))
    return 1


def estimate_run_bytes(op: Any, method: str, params: Any, *, stochastic: bool,
                       budget_bytes: int) -> tuple[int, int]:
    """Estimated peak bytes of a run (module docstring): ``(on its device, in host memory for
    the stored history)``."""
    unit = _nbytes(op.shape, op.image_dtype) + _nbytes(op.measurement_shape,
                                                        op.measurement_dtype)
    f = method_factors().get(method, DEFAULT_FACTOR)
    work = MARGIN * f * unit * batch_of(params, stochastic)
    display = _nbytes(op.shape, np.dtype(np.float32))
    history = min(int(budget_bytes), run_steps(params) * 3 * display)
    return int(work), int(MARGIN * history)


def _fmt(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


def is_out_of_memory(e: BaseException) -> bool:
    """Whether ``e`` is an allocation failure: CUDA's ``OutOfMemoryError``, a ``MemoryError``,
    or a ``RuntimeError`` of torch's CPU allocator ("can't allocate memory", "out of memory")."""
    import torch

    if isinstance(e, (torch.cuda.OutOfMemoryError, MemoryError)):
        return True
    text = str(e).lower()
    return isinstance(e, RuntimeError) and ("can't allocate memory" in text
                                            or "out of memory" in text)


def fmt_bytes(n: float) -> str:
    """``n`` bytes as ``B``/``KB``/``MB``/``GB``/``TB`` text."""
    return _fmt(n)


def check_run_memory(op: Any, method: str, params: Any, *, stochastic: bool,
                     budget_bytes: int, available: dict | None = None) -> int:
    """Refuse a run that would not fit in free memory; returns the estimated total bytes.

    ``available`` overrides the free bytes by device type (``{"cpu": n, "cuda": n}``), for
    tests.

    Raises
    ------
    ResourceError
        With the estimate, the free memory, and what to reduce.
    """
    import torch

    work, history = estimate_run_bytes(op, method, params, stochastic=stochastic,
                                       budget_bytes=budget_bytes)
    dev = torch.device(op.device)

    def free(d: Any) -> int:
        d = torch.device(d)
        if available is not None and d.type in available:
            return int(available[d.type])
        return available_bytes(d)

    needs = {dev: work + history} if dev.type == "cpu" else {dev: work, torch.device("cpu"):
                                                             history}
    for d, need in needs.items():
        have = free(d)
        if need <= have:
            continue
        batch = batch_of(params, stochastic)
        advice = [f"fewer samples (n_samples={batch})"] if batch > 1 else []
        advice += ["a smaller history budget"] if history > work else []
        advice += ["a smaller image (crop or bin it)", "a lighter method"]
        if d.type == "cuda":
            advice.append("device 'cpu'")
        raise ResourceError(f"{method} on a {'x'.join(map(str, op.shape))} image needs about "
                            f"{_fmt(need)} on {d} but {_fmt(have)} is free: use "
                            f"{', '.join(advice)}")
    return work + history


# ---------------------------------------------------------------------- tiles
#: peak host bytes per image pixel of building a local operator on a tile, transient (freed
#: before the method runs): blur and super-resolution embed the kernel on the tile's periodic
#: grid in float64 and take its rFFT and pseudo-inverse filter in complex128 (measured: 31
#: B/px for a 2048² blur, ``ru_maxrss``); inpainting keeps its mask window (float32) and the
#: operator's copy
BUILD_BYTES = {"blur": 32.0, "superres": 40.0, "inpaint": 8.0, "denoise": 0.0}
#: bytes per pixel an operator keeps: the blur's transfer function, pseudo-inverse filter
#: (complex64, half spectrum) and passband (float32)
KEEP_BYTES = {"blur": 10.0, "superres": 10.0, "inpaint": 4.0, "denoise": 0.0}
#: the method's working set on the CPU over the CUDA-measured factors (torch's CPU FFT and
#: allocator): measured 72 vs 44 B/px (Richardson-Lucy) and 98 vs 68 B/px (tv-fista), 2048²
CPU_WORK_FACTOR = 1.6
#: host bytes per tile pixel of the tiled run's own buffers: the measurement window (float32),
#: the tile's result and its blended contribution, the region of the output read, added to
#: and written back, and one history frame (float32 each)
TILE_IO_BYTES = 24.0


def free_bytes(device: Any, available: dict | None = None) -> int:
    """Free memory of ``device``, or ``available[device type]`` when that override is given
    (``{"cpu": n, "cuda": n}``, for tests and for a user's cap)."""
    import torch

    d = torch.device(device)
    if available is not None and d.type in available:
        return int(available[d.type])
    return available_bytes(d)


def estimate_tile_bytes(op_name: str, shape: tuple[int, int],
                        measurement_shape: tuple[int, int], method: str, params: Any, *,
                        stochastic: bool = False, device_type: str = "cpu") -> int:
    r"""Estimated peak bytes of running ``method`` on one tile of image ``shape``.

    .. math::

        M_t \approx \mathrm{MARGIN}\,\big(\kappa\,n + \max(c\,f\,(b_x + b_y)\,B,\;
        \beta\,n) + \gamma\, n\big)

    with :math:`n` the tile's pixels, :math:`f` the method's measured working set
    (:func:`method_factors`, image copies), :math:`c` = :data:`CPU_WORK_FACTOR` on the CPU
    (1 on CUDA, where :math:`f` was measured), :math:`b_x, b_y` the bytes of the tile's
    float32 image and measurement, :math:`B` the batch, :math:`\beta` the operator's transient
    construction bytes per pixel (:data:`BUILD_BYTES`, freed before the method allocates),
    :math:`\kappa` what the operator keeps (:data:`KEEP_BYTES`) and :math:`\gamma` the tiled
    run's own buffers (:data:`TILE_IO_BYTES`). Local operators are real: every array is
    float32.
    """
    n = float(shape[0]) * float(shape[1])
    unit = 4.0 * (n + float(measurement_shape[0]) * float(measurement_shape[1]))
    c = CPU_WORK_FACTOR if device_type == "cpu" else 1.0
    work = c * method_factors().get(method, DEFAULT_FACTOR) * unit * batch_of(params,
                                                                               stochastic)
    build = BUILD_BYTES.get(op_name, 64.0) * n
    keep = KEEP_BYTES.get(op_name, 10.0) * n
    return int(MARGIN * (keep + max(work, build) + TILE_IO_BYTES * n))
