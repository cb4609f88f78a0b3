"""File formats: readers that turn a scientist's file into the layers Reconstruct needs, and
writers that save a result with its provenance (no Qt here).

Each format module exposes ``accepts(path) -> bool`` (a cheap check: suffix, magic bytes, a
folder's contents; it never reads the pixel data) and ``read(path) -> list[LayerData]``, where
``LayerData`` is napari's ``(data, kwargs, layer_type)`` tuple. The layer conventions are those
of :mod:`napari_invrec.engine.layers`: a measurement carries ``metadata["invrec"]`` with its
operator spec and array parameters (so that picking the layer in Reconstruct is enough), the
physical pixel size goes in ``kwargs["scale"]`` and ``metadata["invrec"]["units"]``, and
complex data travels in ``metadata["invrec"]["complex_data"]`` while the layer shows its
magnitude (:func:`~napari_invrec.engine.layers.file_measurement_layer`). Anything larger than
a plane is read lazily (dask) from the file.

:data:`FORMATS` lists the modules in the order they are tried; :func:`reader_for` picks the
first that accepts a path.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..core.errors import InputError

#: format modules (``napari_invrec.formats.<name>``), most specific first
FORMATS = ("saved", "fastmri", "ismrmrd_file", "kspace_npy", "dicom", "mrc", "zarr_files",
           "tiff")

LayerData = tuple  # (data, kwargs, layer_type)

__all__ = ["FORMATS", "reader_for", "read", "LayerData"]


def _module(name: str) -> Any:
    return importlib.import_module(f"{__name__}.{name}")


def reader_for(path: str | Path) -> Callable[[str | Path], list[LayerData]] | None:
    """The ``read`` function of the first format that accepts ``path``, else ``None``."""
    p = Path(path)
    for name in FORMATS:
        mod = _module(name)
        try:
            ok = mod.accepts(p)
        except (OSError, ValueError):
            ok = False
        if ok:
            return mod.read
    return None


def read(path: str | Path) -> list[LayerData]:
    """Read ``path`` into layer tuples.

    Raises
    ------
    InputError
        No format accepts the file, or the file is malformed (one line saying what is wrong).
    """
    fn = reader_for(path)
    if fn is None:
        raise InputError(f"{path}: not a format napari-invrec reads (fastMRI .h5, ISMRMRD .h5, "
                         ".npy/.npz k-space, DICOM, .mrc/.mrcs, .zarr, .tif)")
    return fn(Path(path))
