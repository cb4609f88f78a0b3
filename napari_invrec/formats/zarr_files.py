"""Zarr: OME-Zarr images (NGFF 0.4 and 0.5) and plain zarr arrays.

An OME-Zarr group's first ``multiscales`` entry becomes one napari layer: a multiscale layer
(a list of dask arrays, one per level, nothing read until napari draws) when there are several
levels, else one dask array. The level-0 ``coordinateTransformations`` (times the multiscale's
own, if any) give napari's ``scale`` and ``translate``; the axes' units give the layer's
length unit (spatial axes converted to one unit; time and channel axes keep spacing 1 or
their own value). A plain zarr array, or a group holding exactly one array, opens as one
lazy layer without physical units.

Files saved by napari-invrec are zarr too; :mod:`.saved` (tried first) reads those.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..core.errors import InputError
from ..engine.layers import file_image_layer, units_record
from ._units import common_spacing

__all__ = ["accepts", "read", "multiscales_of"]

_MARKERS = (".zarray", ".zgroup", ".zattrs", "zarr.json")


def accepts(path: Path) -> bool:
    """A folder with zarr metadata (``.zarray``/``.zgroup``/``.zattrs`` or ``zarr.json``)."""
    p = Path(path)
    return p.is_dir() and any((p / m).is_file() for m in _MARKERS)


def multiscales_of(attrs: dict) -> list | None:
    """The NGFF ``multiscales`` list of a group's attributes (0.4: top level, 0.5: under
    ``"ome"``), or ``None``."""
    ms = attrs.get("multiscales")
    if ms is None and isinstance(attrs.get("ome"), dict):
        ms = attrs["ome"].get("multiscales")
    return ms if isinstance(ms, list) and ms else None


def _transform(transforms: Any, kind: str, ndim: int) -> list[float] | None:
    for t in transforms or []:
        if isinstance(t, dict) and t.get("type") == kind:
            v = t.get("scale" if kind == "scale" else "translation")
            if isinstance(v, list) and len(v) == ndim:
                return [float(x) for x in v]
    return None


def _geometry(ms: dict, ndim: int) -> tuple[list[float], list[float], list[str | None]]:
    """Level-0 scale, translation and per-axis units of a multiscales entry."""
    ds0 = ms["datasets"][0]
    scale = _transform(ds0.get("coordinateTransformations"), "scale", ndim) or [1.0] * ndim
    shift = _transform(ds0.get("coordinateTransformations"), "translation", ndim) or \
        [0.0] * ndim
    outer = ms.get("coordinateTransformations")
    oscale = _transform(outer, "scale", ndim) or [1.0] * ndim
    oshift = _transform(outer, "translation", ndim) or [0.0] * ndim
    scale = [a * b for a, b in zip(scale, oscale, strict=True)]
    shift = [a * b + c for a, b, c in zip(shift, oscale, oshift, strict=True)]
    axes = ms.get("axes") or []
    units: list[str | None] = [None] * ndim
    if len(axes) == ndim:
        units = [a.get("unit") if isinstance(a, dict) and a.get("type", "space") == "space"
                 else None for a in axes]
    return scale, shift, units


def _open(p: Path) -> Any:
    import zarr

    try:
        return zarr.open(str(p), mode="r")
    except Exception as e:  # noqa: BLE001 - any zarr failure is a bad store for the user
        raise InputError(f"{p}: not a readable zarr store ({' '.join(str(e).split())})") from e


def _multiscale_layer(group: Any, ms: dict, p: Path) -> tuple:
    import dask.array as da

    datasets = ms.get("datasets")
    if not isinstance(datasets, list) or not datasets:
        raise InputError(f"{p}: OME-Zarr multiscales entry lists no datasets; the metadata is "
                         "malformed")
    try:
        levels = [da.from_zarr(group[str(d["path"])]) for d in datasets]
    except (KeyError, TypeError) as e:
        raise InputError(f"{p}: OME-Zarr dataset {e} is missing; the store is incomplete") from e
    ndim = levels[0].ndim
    scale, shift, axis_units = _geometry(ms, ndim)
    spacing, unit = common_spacing(scale, axis_units)
    units = units_record(spacing=spacing, unit=unit, intensity="a.u.", source=p,
                         fmt="ome-zarr", axes=[a.get("name") if isinstance(a, dict) else a
                                               for a in (ms.get("axes") or [])] or None)
    name = ms.get("name") if isinstance(ms.get("name"), str) and ms.get("name") != "image" \
        else p.name.removesuffix(".zarr").removesuffix(".ome")
    kw: dict[str, Any] = {"translate": shift} if any(shift) else {}
    if len(levels) > 1:
        return file_image_layer(levels, name=name, units=units, multiscale=True, **kw)
    return file_image_layer(levels[0], name=name, units=units, **kw)


def read(path: Path) -> list[tuple]:
    """Read an OME-Zarr image (multiscale, lazy) or a plain zarr array (lazy).

    Raises
    ------
    InputError
        Not a readable zarr store, malformed NGFF metadata, or a group holding several
        arrays and no ``multiscales`` (open the array's own folder instead).
    """
    import dask.array as da
    import zarr

    p = Path(path)
    node = _open(p)
    name = p.name.removesuffix(".zarr")
    units = units_record(source=p, fmt="zarr")
    if isinstance(node, zarr.Array):
        return [file_image_layer(da.from_zarr(node), name=name, units=units)]
    attrs = json.loads(json.dumps(dict(node.attrs)))
    ms = multiscales_of(attrs)
    if ms is not None:
        if not isinstance(ms[0], dict):
            raise InputError(f"{p}: OME-Zarr 'multiscales' entry is not an object")
        return [_multiscale_layer(node, ms[0], p)]
    arrays = sorted(node.arrays(), key=lambda kv: kv[0])
    if len(arrays) != 1:
        listed = ", ".join(k for k, _ in arrays[:6]) or "none"
        raise InputError(f"{p}: a zarr group with {len(arrays)} arrays ({listed}) and no "
                         "OME-Zarr metadata; open one array's folder (e.g. "
                         f"{p / (arrays[0][0] if arrays else 'ARRAY')})")
    key, arr = arrays[0]
    return [file_image_layer(da.from_zarr(arr), name=f"{name}/{key}", units=units)]
