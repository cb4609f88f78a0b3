"""Results saved by napari-invrec (:mod:`.save`): read back exactly as the plugin made them.

A saved layer is its displayed data plus a JSON **record** (format version :data:`FORMAT`)::

    {"format": 1, "name": ..., "kind": ..., "provenance": ..., "metric_history": ...,
     "measurement": {"$array": "measurement"}, "arrays": {"mask": {"$array": "arrays/mask"}},
     "invrec_keys": [...], "layer": {"name": ..., "scale": ..., "colormap": ..., ...}}

Every key of the layer's ``metadata["invrec"]`` is a top-level key of the record (listed in
``invrec_keys``); numpy arrays inside it are stored natively beside the data and named by an
``{"$array": PATH}`` marker (a 0-d or empty array travels inline as ``{"$bytes": ...}``), and
non-finite floats as ``{"$float": "nan"}`` so that the record is strict JSON that any
parser (and any OME-Zarr viewer) reads. Where the record lives:

- OME-Zarr folder: root attribute ``"napari_invrec"``; level ``"0"`` holds the data (NGFF
  ``multiscales``), the arrays are in the ``napari_invrec/`` subgroup at their ``PATH``;
- TIFF: the first page's description (tifffile's shaped JSON with a ``"napari_invrec"`` key);
  the first series is the data, each array a further series named ``PATH``;
- ``.npy``: the data; ``NAME.npy.json`` holds ``{"napari_invrec": record}`` and
  ``NAME.npy.arrays.npz`` the arrays under their ``PATH``.

A layer that was not the plugin's has no ``invrec_keys`` and restores without provenance.
Encoding and decoding of the record: :mod:`._record`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..core.errors import InputError
from ..engine.layers import META_KEY
from ._record import FORMAT, GROUP, KEY, array_paths, decode

__all__ = ["KEY", "FORMAT", "GROUP", "SavedLayer", "accepts", "npy_sidecars", "read",
           "read_saved", "record_of"]

TIFF_SUFFIXES = (".tif", ".tiff")


def npy_sidecars(path: str | Path) -> tuple[Path, Path]:
    """``NAME.npy.json`` (the record) and ``NAME.npy.arrays.npz`` (the arrays)."""
    return Path(str(path) + ".json"), Path(str(path) + ".arrays.npz")


def _json_file(p: Path) -> Any:
    with open(p, encoding="utf-8") as f:
        return json.load(f)


def record_of(path: str | Path) -> dict | None:
    """The record of a file saved by napari-invrec, or ``None`` (not ours, unreadable).

    Reads only metadata: zarr attributes, the first TIFF page's description, the ``.npy``
    sidecar.
    """
    p = Path(path)
    try:
        if p.is_dir():
            if (p / ".zattrs").is_file():
                attrs = _json_file(p / ".zattrs")
            elif (p / "zarr.json").is_file():
                attrs = _json_file(p / "zarr.json").get("attributes", {})
            else:
                return None
        elif p.suffix.lower() in TIFF_SUFFIXES and p.is_file():
            import tifffile

            with tifffile.TiffFile(p) as tif:
                desc = tif.pages.first.description
            if KEY not in desc:
                return None
            attrs = json.loads(desc)
        elif p.suffix.lower() == ".npy" and p.is_file() and npy_sidecars(p)[0].is_file():
            attrs = _json_file(npy_sidecars(p)[0])
        else:
            return None
    except (OSError, ValueError, AttributeError, RecursionError):
        return None
    rec = attrs.get(KEY) if isinstance(attrs, dict) else None
    return rec if isinstance(rec, dict) and isinstance(rec.get("format"), int) else None


def accepts(path: Path) -> bool:
    """A ``.zarr`` folder, TIFF or ``.npy`` that holds a napari-invrec record."""
    return record_of(path) is not None


# ---------------------------------------------------------------- reading
@dataclass
class SavedLayer:
    """A saved layer as read back.

    Attributes
    ----------
    path
        The file.
    data
        The displayed data (numpy for a plane, dask beyond; a list of levels if multiscale).
    record
        The JSON record as stored.
    metadata
        The layer's metadata, restored (``metadata["invrec"]`` with numpy arrays).
    kwargs
        napari layer keyword arguments (name, scale, colormap...).
    """

    path: Path
    data: Any
    record: dict
    metadata: dict = field(default_factory=dict)
    kwargs: dict = field(default_factory=dict)

    @property
    def invrec(self) -> dict:
        """``metadata["invrec"]`` (empty for a layer that was not the plugin's)."""
        return self.metadata.get(META_KEY) or {}

    def layer_data(self) -> tuple:
        """napari's ``(data, kwargs, "image")`` tuple."""
        return (self.data, {**self.kwargs, "metadata": self.metadata}, "image")


def _lazy_if_stack(a: Any) -> Any:
    import dask.array as da

    if a.ndim <= 2:
        return np.asarray(a[...])
    return da.from_array(a, chunks=(1,) * (a.ndim - 2) + tuple(a.shape[-2:]))


def _read_zarr(p: Path, rec: dict) -> tuple[Any, dict[str, np.ndarray]]:
    import dask.array as da
    import zarr

    root = zarr.open_group(str(p), mode="r")
    n = int(rec.get("layer", {}).get("levels", 1))
    levels = [da.from_zarr(root[str(i)]) for i in range(n)]
    data: Any = levels if n > 1 else (np.asarray(root["0"][...]) if levels[0].ndim <= 2
                                      else levels[0])
    arrays = {path: np.asarray(root[f"{GROUP}/{path}"][...]) for path in array_paths(rec)}
    return data, arrays


def _read_tiff(p: Path) -> tuple[Any, dict[str, np.ndarray]]:
    import tifffile

    from .tiff import lazy_series

    with tifffile.TiffFile(p) as tif:
        meta = tif.shaped_metadata or ()
        arrays = {}
        for i, m in enumerate(meta[1:], start=1):
            if isinstance(m, dict) and isinstance(m.get("name"), str):
                a = tif.series[i].asarray()
                arrays[m["name"]] = a.reshape(m.get("array_shape", a.shape))
        first = tif.series[0]
        ndim = len(first.shape) - (1 if first.axes.endswith("S") else 0)
        data = first.asarray() if ndim <= 2 else None
    return (lazy_series(p, 1) if data is None else data), arrays


def _read_npy(p: Path) -> tuple[Any, dict[str, np.ndarray]]:
    mm = np.load(p, mmap_mode="r", allow_pickle=False)
    data = _lazy_if_stack(mm)
    npz = npy_sidecars(p)[1]
    arrays: dict[str, np.ndarray] = {}
    if npz.is_file():
        with open(npz, "rb") as f, np.load(f, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    return data, arrays


def read_saved(path: str | Path) -> SavedLayer:
    """Read a file saved by napari-invrec.

    Raises
    ------
    InputError
        The file holds no napari-invrec record, a newer record format, or is incomplete.
    """
    p = Path(path)
    rec = record_of(p)
    if rec is None:
        raise InputError(f"{p}: not a file saved by napari-invrec (no {KEY!r} record); open "
                         "it as an image instead")
    if rec["format"] > FORMAT:
        raise InputError(f"{p}: saved with record format {rec['format']}, newer than this "
                         f"napari-invrec reads ({FORMAT}); update napari-invrec")
    try:
        if p.is_dir():
            data, arrays = _read_zarr(p, rec)
        elif p.suffix.lower() == ".npy":
            data, arrays = _read_npy(p)
        else:
            data, arrays = _read_tiff(p)
    except (OSError, KeyError, ValueError) as e:
        raise InputError(f"{p}: the saved file is damaged ({' '.join(str(e).split())})") from e
    layer = dict(rec.get("layer") or {})
    metadata = dict(decode(layer.pop("metadata", None) or {}, arrays))
    keys = rec.get("invrec_keys")
    if isinstance(keys, list):
        metadata[META_KEY] = {k: decode(rec.get(k), arrays) for k in keys}
    layer.pop("levels", None)
    kwargs = {k: v for k, v in layer.items() if v is not None}
    kwargs.setdefault("name", rec.get("name") or p.name)
    if isinstance(data, list):
        kwargs["multiscale"] = True
    return SavedLayer(path=p, data=data, record=rec, metadata=metadata, kwargs=kwargs)


def read(path: Path) -> list[tuple]:
    """The saved layer as napari's layer tuple (see :func:`read_saved`)."""
    return [read_saved(path).layer_data()]
