"""npe2 reader contribution: ``viewer.open(path)`` / File > Open on the formats of
:mod:`napari_invrec.formats`."""

from __future__ import annotations

from typing import Any


def get_reader(path: Any) -> Any:
    """napari's reader hook: a function that reads ``path``, or ``None`` if no format accepts
    it (napari then tries other readers). A list of paths is read one by one."""
    from .formats import reader_for

    paths = path if isinstance(path, list) else [path]
    fns = [reader_for(p) for p in paths]
    if not paths or any(fn is None for fn in fns):
        return None

    def read(_: Any) -> list[tuple]:
        return [layer for fn, p in zip(fns, paths, strict=True) for layer in fn(p)]

    return read
