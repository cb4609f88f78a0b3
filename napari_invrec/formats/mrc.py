"""MRC / MRCS (cryo-EM, electron tomography), with mrcfile.

The header is read and validated with ``mrcfile.mmap(path, mode="r", permissive=False)``; the
voxels are then memory-mapped read-only (``numpy.memmap`` at the header's data offset), so a
volume or an image stack is read plane by plane as napari asks for it (a dask array with one
chunk per plane). The voxel size (Å) becomes napari's ``scale`` with unit ``"angstrom"``; an
image stack (``.mrcs``, or a header with ``ispg == 0``) gets a spacing of 1 along its first
(image-index) axis. A voxel size of 0 means unknown: unit ``"pixel"``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..core.errors import InputError
from ..engine.layers import file_image_layer, units_record

__all__ = ["accepts", "read"]

SUFFIXES = (".mrc", ".mrcs", ".rec", ".st")


def accepts(path: Path) -> bool:
    """A file named ``.mrc``, ``.mrcs``, ``.rec`` or ``.st``."""
    p = Path(path)
    return p.is_file() and p.suffix.lower() in SUFFIXES


def _header(p: Path) -> dict[str, Any]:
    import mrcfile

    try:
        with mrcfile.mmap(p, mode="r", permissive=False) as m:
            data = m.data
            if data is None:
                raise ValueError("no data block")
            vs = m.voxel_size
            return {"dtype": data.dtype, "shape": tuple(data.shape), "offset": int(data.offset),
                    "voxel": (float(vs.z), float(vs.y), float(vs.x)),
                    "stack": bool(m.is_image_stack()) or p.suffix.lower() == ".mrcs"}
    except (ValueError, OSError, EOFError) as e:
        raise InputError(f"{p}: not a valid MRC file ({' '.join(str(e).split())}); check the "
                         "file (mrcfile.validate) or convert it") from e


def read(path: Path) -> list[tuple]:
    """Read an MRC volume, image or stack, memory-mapped (lazy beyond a plane).

    Raises
    ------
    InputError
        An invalid header, or complex (mode 3/4) data.
    """
    import dask.array as da

    p = Path(path)
    h = _header(p)
    if h["dtype"].kind == "c":
        raise InputError(f"{p}: holds complex data (MRC mode 3/4); napari-invrec opens real "
                         "MRC images (save the magnitude or real part)")
    shape = h["shape"]
    mm = np.memmap(p, dtype=h["dtype"], mode="r", offset=h["offset"], shape=shape)
    vz, vy, vx = h["voxel"]
    spacing = None
    if vx > 0 and vy > 0:
        spacing = [vy, vx] if len(shape) == 2 else [1.0 if h["stack"] or vz <= 0 else vz,
                                                    vy, vx]
    units = units_record(spacing=spacing, unit="angstrom" if spacing else "pixel",
                         intensity="a.u.", source=p, fmt="mrc", stack=h["stack"])
    if len(shape) == 2:
        data: Any = np.array(mm)
    else:
        data = da.from_array(mm, chunks=(1,) * (len(shape) - 2) + shape[-2:],
                             name=f"mrc-{p.resolve()}-{p.stat().st_mtime_ns}")
    return [file_image_layer(data, name=p.stem, units=units)]
