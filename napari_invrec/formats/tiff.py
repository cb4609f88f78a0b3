"""TIFF: OME-TIFF with physical pixel sizes, ImageJ TIFF, plain TIFF (tifffile).

The first series is the layer. Pixel sizes come from the OME-XML (``PhysicalSizeX/Y/Z`` with
their units, micrometres by default) or, for an ImageJ file that names a unit, from the
``XResolution``/``YResolution`` tags and the ``spacing`` entry; a plain TIFF has no physical
size (unit ``"pixel"``: resolution tags of plain files are usually a screen's 72 dpi). A single
plane is read at once; a series larger than a plane is opened lazily through tifffile's zarr
view (``tifffile.imread(path, aszarr=True)``: one chunk per page or tile), and a pyramidal
series becomes a multiscale layer. Values keep their stored dtype.

Files saved by napari-invrec are TIFF too; :mod:`.saved` (tried first) reads those.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..core.errors import InputError
from ..engine.layers import file_image_layer, units_record
from ._units import common_spacing

__all__ = ["accepts", "lazy_series", "read"]

SUFFIXES = (".tif", ".tiff")
_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


def accepts(path: Path) -> bool:
    """A ``.tif``/``.tiff`` file that starts with a TIFF or BigTIFF header."""
    p = Path(path)
    if not (p.is_file() and p.suffix.lower() in SUFFIXES):
        return False
    with open(p, "rb") as f:
        return f.read(4) in _MAGIC


def _ome_sizes(tif: Any) -> dict[str, tuple[float, str]]:
    """Axis letter -> (physical size, unit) from the OME-XML of the first image."""
    import tifffile

    try:
        ome = tifffile.xml2dict(tif.ome_metadata)["OME"]
        image = ome["Image"][0] if isinstance(ome["Image"], list) else ome["Image"]
        pixels = image["Pixels"]
    except (KeyError, IndexError, TypeError, ValueError):
        return {}
    out = {}
    for ax in "XYZ":
        v = pixels.get(f"PhysicalSize{ax}")
        if isinstance(v, (int, float)) and v > 0:
            out[ax] = (float(v), str(pixels.get(f"PhysicalSize{ax}Unit", "\u00b5m")))
    return out


def _imagej_sizes(tif: Any) -> dict[str, tuple[float, str]]:
    meta = tif.imagej_metadata or {}
    unit = meta.get("unit")
    if not isinstance(unit, str) or unit.lower() in ("", "pixel", "pixels"):
        return {}
    unit = unit.encode().decode("unicode_escape") if "\\u" in unit else unit
    out = {}
    tags = tif.pages.first.tags
    for ax, tag in (("X", "XResolution"), ("Y", "YResolution")):
        if tag in tags:
            num, den = tags[tag].value
            if num > 0 and den > 0:
                out[ax] = (den / num, unit)
    spacing = meta.get("spacing")
    if isinstance(spacing, (int, float)) and spacing > 0:
        out["Z"] = (float(spacing), unit)
    return out


def _units(tif: Any, axes: str, path: Path) -> dict:
    sizes = _ome_sizes(tif) if tif.is_ome else _imagej_sizes(tif) if tif.is_imagej else {}
    fmt = "ome-tiff" if tif.is_ome else "imagej-tiff" if tif.is_imagej else "tiff"
    spatial = [a for a in axes if a != "S"]  # samples (RGB) are not an axis of napari's scale
    if not sizes:
        return units_record(source=path, fmt=fmt, axes=axes)
    spacing, unit = common_spacing([sizes.get(a, (1.0, None))[0] for a in spatial],
                                   [sizes.get(a, (1.0, None))[1] for a in spatial])
    return units_record(spacing=spacing, unit=unit, source=path, fmt=fmt, axes=axes)


class _Owner:
    """Holds tifffile's zarr store; closes the file once no dask array uses it."""

    def __init__(self, store: Any) -> None:
        self.store = store

    def __del__(self) -> None:
        self.store.close()


class _Level:
    """Array-like over one level of the zarr view (what dask reads chunks from)."""

    def __init__(self, arr: Any, owner: _Owner) -> None:
        self.arr, self.owner = arr, owner
        self.shape, self.dtype, self.ndim = tuple(arr.shape), arr.dtype, arr.ndim

    def __getitem__(self, index: Any) -> Any:
        return self.arr[index]


def lazy_series(path: Path, levels: int) -> Any:
    """Dask view of the first series (a list of levels when pyramidal), one chunk per page
    or tile, read through ``tifffile.imread(path, aszarr=True)``; the file stays open while
    a dask array uses it."""
    import dask.array as da
    import numpy as np
    import tifffile
    import zarr

    store = tifffile.imread(path, aszarr=True, series=0)
    owner = _Owner(store)
    node = zarr.open(store, mode="r")
    arrays = [node[str(i)] for i in range(levels)] if levels > 1 else [node]
    stamp = f"{Path(path).resolve()}-{Path(path).stat().st_mtime_ns}"
    out = [da.from_array(_Level(a, owner), chunks=a.chunks, name=f"tiff-{stamp}-{i}",
                         meta=np.empty((0,) * a.ndim, a.dtype))
           for i, a in enumerate(arrays)]
    return out if levels > 1 else out[0]


def read(path: Path) -> list[tuple]:
    """Read the first series of a TIFF: a plane at once, anything larger lazily.

    Raises
    ------
    InputError
        The file is not a readable TIFF (truncated, corrupt, unsupported compression).
    """
    import tifffile

    p = Path(path)
    try:
        with tifffile.TiffFile(p) as tif:
            series = tif.series[0]
            axes, shape, levels = series.axes, tuple(series.shape), len(series.levels)
            units = _units(tif, axes, p)
        rgb = axes.endswith("S") and shape[-1] in (3, 4)
        planes = len(shape) - (3 if rgb else 2)
        if planes > 0 or levels > 1:
            data = lazy_series(p, levels)
        else:
            data = tifffile.imread(p, series=0)
    except (tifffile.TiffFileError, OSError, ValueError, KeyError, IndexError) as e:
        raise InputError(f"{p}: not a readable TIFF ({' '.join(str(e).split())})") from e
    name = p.name
    for suffix in (".tiff", ".tif", ".ome"):
        name = name.removesuffix(suffix).removesuffix(suffix.upper())
    kw: dict[str, Any] = {"rgb": rgb}
    if isinstance(data, list):
        kw["multiscale"] = True
    return [file_image_layer(data, name=name, units=units, **kw)]
