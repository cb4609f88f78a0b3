"""npe2 writer contribution: File > Save Selected Layer(s) with the napari-invrec writer.

One image layer is saved with its provenance as OME-Zarr (``.zarr``/``.ome.zarr``), TIFF
(``.tif``/``.tiff``) or ``.npy`` (with ``NAME.npy.json`` and ``NAME.npy.arrays.npz``); the
layout is described in :mod:`napari_invrec.formats.saved`, the writing done by
:mod:`napari_invrec.formats.save`. Reopening the file (``viewer.open(path,
plugin="napari-invrec")``) restores the layer with its run record, and
``napari_invrec.api.rerun_file(path)`` repeats the run.
"""

from __future__ import annotations

from typing import Any


def write_image(path: str, data: Any, meta: dict) -> list[str]:
    """napari's single-layer writer hook.

    Parameters
    ----------
    path
        Target file; its suffix picks the format.
    data
        The layer's data.
    meta
        The layer's state (``layer._get_state()``: ``name``, ``metadata``, ``scale``...).

    Returns
    -------
    list of str
        The paths written.

    Raises
    ------
    InputError
        An unsupported suffix, or an existing file that is not a napari-invrec save (input
        files are never overwritten); one line saying what to change.
    """
    from .formats.save import save_layer

    return save_layer(path, data, meta)
