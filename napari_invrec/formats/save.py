"""Save a layer with its provenance: OME-Zarr, TIFF or ``.npy`` (layout: :mod:`.saved`).

:func:`save_layer` takes napari's single-layer writer arguments (the data and the layer's
state or kwargs: ``name``, ``metadata``, ``scale``...). The data is written as it is
displayed (so any viewer shows the result), the run record (``metadata["invrec"]``) as strict
JSON beside it, and the arrays the record holds (the measurement as it ran, a complex result,
the operator's mask or kernel) natively, bit for bit.

A file that exists is replaced only when it is itself a napari-invrec save; anything else
(an input image, another program's file) is refused. Everything is written to a hidden
sibling first and swapped in at the end, so a failed save leaves the old file intact, and a
layer read lazily from the file it is saved over is fully read before the swap.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..core.errors import InputError
from ..engine.layers import META_KEY
from ._record import GROUP, KEY, make_record
from ._units import NGFF_NAMES, short_unit
from .saved import npy_sidecars, record_of

__all__ = ["SUFFIXES", "check_save_path", "save_layer"]

SUFFIXES = {".zarr": "zarr", ".tif": "tiff", ".tiff": "tiff", ".npy": "npy"}


# ---------------------------------------------------------------- formats
def _chunks(shape: tuple[int, ...]) -> tuple[int, ...]:
    if len(shape) < 2:
        return tuple(max(1, s) for s in shape)
    return (1,) * (len(shape) - 2) + tuple(max(1, min(s, 1024)) for s in shape[-2:])


def _store(target: Any, data: Any) -> None:
    """Copy ``data`` (numpy or dask) into the array-like ``target`` without materialising a
    dask array as a whole."""
    import dask.array as da

    if isinstance(data, da.Array):
        da.store(data, target, lock=False)
    else:
        target[...] = np.asarray(data)


def _per_axis(v: Any, nd: int, default: float) -> list[float]:
    """``v`` with one value per axis: padded on the left as napari does, or trimmed."""
    vals = [float(x) for x in (v if v is not None else [])][-nd:]
    return [default] * (nd - len(vals)) + vals


def _ngff(levels: list, rec: dict, meta: Mapping) -> dict | None:
    """NGFF 0.4 ``multiscales`` entry of the levels, or ``None`` when the data has no NGFF
    form (fewer than 2 or more than 5 axes, RGB)."""
    shape = tuple(levels[0].shape)
    nd = len(shape)
    if nd < 2 or nd > 5 or meta.get("rgb"):
        return None
    kind = rec.get("kind")
    lead = {3: [("t", "time")] if kind == "history" else [("c", "channel")]
            if kind == "samples" else [("z", "space")],
            4: [("c", "channel"), ("z", "space")],
            5: [("t", "time"), ("c", "channel"), ("z", "space")]}.get(nd, [])
    units = (meta.get("metadata") or {}).get(META_KEY, {}) or {}
    unit = NGFF_NAMES.get(short_unit((units.get("units") or {}).get("unit")) or "")
    axes = []
    for name, kind_ in [*lead, ("y", "space"), ("x", "space")]:
        ax = {"name": name, "type": kind_}
        if kind_ == "space" and unit:
            ax["unit"] = unit
        axes.append(ax)
    scale, shift = _per_axis(meta.get("scale"), nd, 1.0), _per_axis(meta.get("translate"), nd, 0.0)
    datasets = []
    for i, lev in enumerate(levels):
        factor = [a / max(1, b) for a, b in zip(shape, lev.shape, strict=True)]
        tr: list[dict] = [{"type": "scale", "scale": [s * f for s, f in zip(scale, factor,
                                                                          strict=True)]}]
        if any(shift):
            tr.append({"type": "translation", "translation": shift})
        datasets.append({"path": str(i), "coordinateTransformations": tr})
    return {"version": "0.4", "name": rec["name"], "axes": axes, "datasets": datasets}


def _write_zarr(p: Path, levels: list, rec: dict, arrays: dict, meta: Mapping) -> list[Path]:
    import zarr

    root = zarr.open_group(str(p), mode="w-", zarr_format=2)
    for i, lev in enumerate(levels):
        _store(root.create_array(str(i), shape=lev.shape, dtype=lev.dtype,
                                 chunks=_chunks(tuple(lev.shape))), lev)
    ngff = _ngff(levels, rec, meta)
    root.attrs.update({KEY: rec, **({"multiscales": [ngff]} if ngff else {})})
    sub = root.create_group(GROUP)
    for path, a in arrays.items():
        *folders, name = path.split("/")
        g = sub
        for f in folders:
            g = g.require_group(f)
        g.create_array(name, data=a)
    return [p]


def _planes(data: Any) -> Any:
    for idx in np.ndindex(*data.shape[:-2]):
        yield np.asarray(data[idx])


def _write_tiff(p: Path, levels: list, rec: dict, arrays: dict, meta: Mapping) -> list[Path]:
    import dask.array as da
    import tifffile

    data = levels[0]
    nbytes = int(np.prod(data.shape)) * np.dtype(data.dtype).itemsize + \
        sum(a.nbytes for a in arrays.values())
    rgb = bool(meta.get("rgb"))
    photometric = "rgb" if rgb else "minisblack"
    with tifffile.TiffWriter(p, bigtiff=nbytes > 2**31) as tw:
        if isinstance(data, da.Array) and data.ndim > 2 and not rgb:
            tw.write(_planes(data), shape=data.shape, dtype=data.dtype,
                     photometric=photometric, metadata={KEY: rec})
        else:
            tw.write(np.asarray(data), photometric=photometric, metadata={KEY: rec})
        for path, a in arrays.items():
            stored = a.reshape((1,) * (2 - a.ndim) + a.shape) if a.ndim < 2 else a
            tw.write(stored, photometric="minisblack",
                     metadata={"name": path, "array_shape": list(a.shape)})
    return [p]


def _write_npy(p: Path, levels: list, rec: dict, arrays: dict, meta: Mapping) -> list[Path]:
    import dask.array as da

    data = levels[0]
    if isinstance(data, da.Array):
        mm = np.lib.format.open_memmap(p, mode="w+", dtype=data.dtype, shape=data.shape)
        _store(mm, data)
        mm.flush()
        del mm
    else:
        with open(p, "wb") as f:
            np.save(f, np.asarray(data), allow_pickle=False)
    side, npz = npy_sidecars(p)
    side.write_text(json.dumps({KEY: rec}, indent=1, allow_nan=False), encoding="utf-8")
    if not arrays:
        return [p, side]
    with open(npz, "wb") as f:
        np.savez(f, **arrays)
    return [p, side, npz]


_WRITERS: dict[str, Callable[..., list[Path]]] = {"zarr": _write_zarr, "tiff": _write_tiff,
                                                  "npy": _write_npy}


# ---------------------------------------------------------------- replacing safely
def _companions(p: Path, fmt: str) -> list[Path]:
    return [p, *npy_sidecars(p)] if fmt == "npy" else [p]


def check_save_path(path: str | Path) -> str:
    """Check that a layer can be saved to ``path`` (before any work) and return its format
    (``"zarr"``, ``"tiff"``, ``"npy"``).

    Raises
    ------
    InputError
        An unsupported suffix, a missing folder, a folder where a file is needed, or an
        existing file that is not a napari-invrec save.
    """
    p = Path(path)
    fmt = SUFFIXES.get(p.suffix.lower())
    if fmt is None:
        raise InputError(f"cannot save {p.name!r}: napari-invrec saves .zarr (OME-Zarr), "
                         ".tif/.tiff or .npy; change the file name")
    _check_target(p, fmt)
    return fmt


def _check_target(p: Path, fmt: str) -> None:
    if not p.parent.is_dir():
        raise InputError(f"cannot save to {p}: folder {p.parent} does not exist; create it "
                         "first")
    existing = [q for q in _companions(p, fmt) if q.exists() or q.is_symlink()]
    if existing and record_of(p) is None:
        raise InputError(f"{existing[0]} exists and is not a result saved by napari-invrec; "
                         "it is never overwritten: choose another name or delete it first")
    if fmt != "zarr" and p.is_dir():
        raise InputError(f"cannot save to {p}: it is a folder; give a file name")


def _remove(q: Path) -> None:
    if q.is_dir() and not q.is_symlink():
        shutil.rmtree(q)
    elif q.exists() or q.is_symlink():
        q.unlink()


def save_layer(path: str | Path, data: Any, meta: Mapping) -> list[str]:
    """Save one image layer with its provenance.

    Parameters
    ----------
    path
        ``.zarr``/``.ome.zarr`` (OME-Zarr folder), ``.tif``/``.tiff`` or ``.npy`` (with
        ``NAME.npy.json`` and ``NAME.npy.arrays.npz`` beside it).
    data
        The layer's data (numpy or dask; the list of levels of a multiscale layer).
    meta
        The layer's state (``layer._get_state()``) or kwargs: ``name``, ``metadata``,
        ``scale``, ``translate``, ``colormap``, ``blending``, ``multiscale``...

    Returns
    -------
    list of str
        The paths written.

    Raises
    ------
    InputError
        An unsupported suffix, a missing folder, or an existing file that is not a
        napari-invrec save.
    """
    p = Path(path)
    fmt = check_save_path(p)
    levels = list(data) if meta.get("multiscale") else [data]
    if fmt != "zarr":
        levels = levels[:1]  # TIFF and .npy keep the full-resolution level
    rec, arrays = make_record(meta, len(levels))
    tmp = p.with_name(f".{p.name}.partial-{os.getpid()}")
    pairs = list(zip(_companions(tmp, fmt), _companions(p, fmt), strict=True))
    for t, _ in pairs:
        _remove(t)
    try:
        written = set(_WRITERS[fmt](tmp, levels, rec, arrays, meta))
    except BaseException as e:
        for t, _ in pairs:
            _remove(t)
        if isinstance(e, OSError):  # disk full, permissions: the user's to fix
            raise InputError(f"cannot save {p}: {e.strerror or e}") from e
        raise
    out = []
    for t, final in pairs:
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        if final.exists() or final.is_symlink():
            final.rename(old)
        if t in written:
            t.rename(final)
            out.append(str(final))
        _remove(old)
    return out
