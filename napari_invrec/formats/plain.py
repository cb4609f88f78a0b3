"""Plain array files: ``.npy`` (never pickles), ``.tif``/``.tiff`` and ``.png``/``.jpg``.

One reader for the command line (:mod:`napari_invrec.cli_files`) and the batch engine's
files (:mod:`.batch_files`); each turns a failure into its own one-line error.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["PLAIN_SUFFIXES", "read_plain"]

PLAIN_SUFFIXES = (".npy", ".tif", ".tiff", ".png", ".jpg", ".jpeg")


def read_plain(path: str | Path) -> np.ndarray:
    """The array stored in ``path``, as stored (shape and dtype unchecked).

    Raises
    ------
    ValueError
        A suffix outside :data:`PLAIN_SUFFIXES`; any reader error otherwise propagates.
    """
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix == ".npy":  # our own handle: numpy leaks it when a zip turns out corrupt
        with open(p, "rb") as f:
            return np.load(f, allow_pickle=False)
    if suffix in (".tif", ".tiff"):
        import tifffile

        return tifffile.imread(p)
    if suffix in PLAIN_SUFFIXES:
        from skimage.io import imread

        return imread(p)
    raise ValueError(f"unsupported format {suffix!r}")
