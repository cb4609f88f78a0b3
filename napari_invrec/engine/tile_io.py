"""Chunked storage for tiled runs: read windows of numpy, dask or zarr arrays, write zarr.

Nothing here reads a whole array: :func:`read_window` reads the rectangular blocks a window
covers (at most four when it wraps around the border) and assembles them, continuing past the
border periodically (or by reflection); :func:`scan` streams row strips of bounded size to
validate the measurement and fingerprint it exactly as
:func:`~napari_invrec.core.params.array_fingerprint` does for the float32 copy a normal run
makes; outputs are zarr arrays written region by region (:class:`TileOutputs`).
"""

from __future__ import annotations

import hashlib
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..core.errors import InputError

__all__ = ["Source", "open_source", "read_window", "scan", "check_out_path", "create_array",
           "history_path", "ATTR", "STRIP_BYTES", "jsonable", "TileOutputs"]

#: attribute key under which tiled outputs record their run
ATTR = "napari_invrec_tiles"
#: bytes of one row strip read by :func:`scan`
STRIP_BYTES = 32 * 2 ** 20


class Source:
    """A 2-D numeric array read block by block (numpy, dask, or zarr)."""

    def __init__(self, array: Any, name: str, path: Path | None = None) -> None:
        self.array, self.name, self.path = array, name, path
        self.shape = tuple(int(n) for n in array.shape)
        self.dtype = np.dtype(array.dtype)

    def block(self, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
        """The in-bounds block ``[r0:r1, c0:c1]`` as a float32 numpy array."""
        b = self.array[r0:r1, c0:c1]
        if hasattr(b, "compute") and not isinstance(b, np.ndarray):
            b = b.compute()
        return np.asarray(b, dtype=np.float32)


def open_source(a: Any, name: str, *, ndim: int = 2, dtype_check: bool = True) -> Source:
    """``a`` (numpy, dask, zarr array, or the path of a zarr array) as a :class:`Source`.

    Raises
    ------
    InputError
        Not readable, not ``ndim``-D, or (``dtype_check``) not real floating point.
    """
    path = None
    if isinstance(a, (str, Path)):
        import zarr

        path = Path(a)
        try:
            a = zarr.open_array(str(path), mode="r")
        except Exception as e:  # noqa: BLE001 - any zarr failure is a bad store for the user
            raise InputError(f"{name} {str(path)!r} is not a readable zarr array "
                             f"({' '.join(str(e).split())}); give a zarr array path") from e
    elif not hasattr(a, "shape") or not hasattr(a, "dtype"):
        a = np.asarray(a)
    elif hasattr(a, "store") and hasattr(a, "chunks"):  # a zarr.Array: note its location
        root = getattr(a.store, "root", None)
        path = Path(root) / a.path if root is not None else None
    if len(a.shape) != ndim:
        raise InputError(f"{name} must be {ndim}-D for a tiled run, got shape {tuple(a.shape)}")
    if min(a.shape) < 2:
        raise InputError(f"{name} has shape {tuple(a.shape)}; tiles need at least 2x2 pixels")
    dt = np.dtype(a.dtype)
    if dtype_check and dt.kind != "f":
        what = {"b": "boolean", "c": "complex", "i": "integer", "u": "integer"}.get(dt.kind,
                                                                                 str(dt))
        raise InputError(f"{name} is {what} ({dt}); tiled runs take real floating-point data "
                         "(e.g. data.astype('float32') / its maximum)")
    return Source(a, name, path)


def _indices(start: int, length: int, size: int, mode: str) -> np.ndarray:
    """Indices ``start .. start + length - 1`` folded into ``[0, size)``: periodic
    (``wrap``) or mirrored without repeating the edge (``reflect``, period ``2 (size - 1)``)."""
    i = np.arange(start, start + length)
    if mode == "wrap":
        return i % size
    period = 2 * (size - 1)
    i = i % period
    return np.where(i < size, i, period - i)


def _runs(idx: np.ndarray) -> list[tuple[int, int, int, int]]:
    """Split an index array into runs of consecutive indices, rising or falling:
    ``(position, length, first, step)``."""
    out, k, n = [], 0, len(idx)
    while k < n:
        step = int(idx[k + 1] - idx[k]) if k + 1 < n and abs(int(idx[k + 1] - idx[k])) == 1 \
            else 1
        m = k + 1
        while m < n and int(idx[m] - idx[m - 1]) == step:
            m += 1
        out.append((k, m - k, int(idx[k]), step))
        k = m
    return out


def read_window(src: Source, origin: tuple[int, int], shape: tuple[int, int],
                mode: str = "wrap") -> np.ndarray:
    """The ``shape`` window of ``src`` starting at ``origin`` (float32), past the border by
    ``mode`` (``wrap`` or ``reflect``); only the blocks it covers are read."""
    out = np.empty(shape, dtype=np.float32)
    ri = _indices(origin[0], shape[0], src.shape[0], mode)
    ci = _indices(origin[1], shape[1], src.shape[1], mode)
    for pr, nr, fr, sr in _runs(ri):
        r0 = fr if sr > 0 else fr - nr + 1
        for pc, nc, fc, sc in _runs(ci):
            c0 = fc if sc > 0 else fc - nc + 1
            b = src.block(r0, r0 + nr, c0, c0 + nc)
            out[pr:pr + nr, pc:pc + nc] = b[::sr, ::sc]
    return out


def scan(src: Source) -> dict:
    """Check every value is finite and fingerprint the measurement as it runs (float32, C
    order), reading row strips of at most :data:`STRIP_BYTES`.

    Returns
    -------
    dict
        ``{"array_shape", "dtype", "sha256"}``, as ``array_fingerprint`` of the float32 copy.

    Raises
    ------
    InputError
        NaN/inf values (the first strip holding one is named).
    """
    h, w = src.shape
    rows = max(1, STRIP_BYTES // (4 * w))
    digest = hashlib.sha256()
    for r0 in range(0, h, rows):
        b = np.ascontiguousarray(src.block(r0, min(h, r0 + rows), 0, w))
        if not np.isfinite(b).all():
            raise InputError(f"{src.name} has NaN/inf values in rows {r0}..{min(h, r0 + rows)}"
                             "; fill or crop them (e.g. np.nan_to_num) before reconstructing")
        digest.update(b.tobytes())
    return {"array_shape": [h, w], "dtype": "float32", "sha256": digest.hexdigest()}


def history_path(out: Path) -> Path:
    """Where the iterate history of a run written to ``out`` goes: ``NAME.history.zarr``."""
    stem = out.name.removesuffix(".zarr")
    return out.with_name(f"{stem}.history.zarr")


def _is_ours(p: Path) -> bool:
    import zarr

    try:
        return ATTR in zarr.open_array(str(p), mode="r").attrs
    except Exception:  # noqa: BLE001 - not a zarr array at all: not ours
        return False


def check_out_path(out: Any, reads: list[Path]) -> Path:
    """Check the ``out`` path before any work: its folder exists and is writable, it is not
    an input, and it is new or a previous tiled output (which is replaced).

    Raises
    ------
    InputError
        With what to change.
    """
    import os

    if not isinstance(out, (str, Path)) or not str(out):
        raise InputError(f"out must be the path of a zarr array to write, got {out!r}")
    p = Path(out)
    if not p.parent.is_dir():
        raise InputError(f"out folder {str(p.parent)!r} does not exist; create it first")
    if not os.access(p.parent, os.W_OK):
        raise InputError(f"out folder {str(p.parent)!r} is not writable")
    for q in (p, history_path(p)):
        if any(q.resolve() == r.resolve() for r in reads):
            raise InputError(f"out {str(q)!r} is an input of the run; never overwrite the "
                             "input: choose another path")
        if q.exists() and not (q.is_dir() and _is_ours(q)):
            raise InputError(f"{str(q)!r} exists and is not a tiled napari-invrec output; "
                             "choose a new path or remove it")
    return p


def create_array(path: Path, shape: tuple[int, ...], chunks: tuple[int, ...]) -> Any:
    """A new float32 zarr array at ``path`` filled with zeros (replacing a previous one)."""
    import zarr

    arr = zarr.create_array(str(path), shape=shape, chunks=chunks, dtype="float32",
                            fill_value=0.0, overwrite=True)
    arr.attrs[ATTR] = {"kind": "incomplete"}
    return arr


def jsonable(v: Any) -> Any:
    """``v`` with non-finite floats as ``None`` (strict JSON for zarr attributes)."""
    if isinstance(v, dict):
        return {str(k): jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [jsonable(x) for x in v]
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


class TileOutputs:
    """The result and history arrays of one attempt (zarr under ``out``, else numpy)."""

    def __init__(self, out: Any, shape: tuple[int, int], frames: int) -> None:
        self.out, self.frames = out, frames
        self.t_setup = time.perf_counter()
        chunks = (min(shape[0], 1024), min(shape[1], 1024))
        if out is None:
            self.x = np.zeros(shape, np.float32)
            self.hist = np.zeros((frames, *shape), np.float32) if frames > 1 else None
        else:
            self.x = create_array(out, shape, chunks)
            self.hist = create_array(history_path(out), (frames, *shape), (1, *chunks)) \
                if frames > 1 else None

    def finish(self, prov: dict, steps: list[int]) -> tuple[Any, Any]:
        """``(x, iterates)``; records in ``prov["storage"]`` which arrays hold them, and
        zarr outputs get the run record as attributes."""
        final_only = "a view of x (the history budget holds only the final step)"
        if self.out is None:
            prov["storage"] = {"x": "numpy", "iterates": "numpy" if self.hist is not None
                               else final_only}
            return self.x, (self.hist if self.hist is not None else self.x[None])
        import dask.array as da

        prov["storage"] = {"x": f"zarr array {self.out} (Result.x: dask)",
                           "iterates": final_only if self.hist is None else
                           f"zarr array {history_path(self.out)} (Result.iterates: dask)"}
        rec = jsonable({"provenance": prov, "steps": steps})
        self.x.attrs[ATTR] = {"kind": "result", **rec}
        x = da.from_zarr(self.x)
        if self.hist is None:
            return x, x[None]
        self.hist.attrs[ATTR] = {"kind": "history", **rec}
        return x, da.from_zarr(self.hist)
