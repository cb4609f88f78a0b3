"""Reconstruction of measurement stacks (``(..., H, W)``, numpy or dask) plane by plane.

Three ways, none of which makes the input dense as a whole:

* :func:`reconstruct_plane` computes only the block holding one plane and reconstructs it
  (the interactive "plane in view" mode);
* :func:`reconstruct_lazy` returns a dask array with one block per plane whose blocks are
  reconstructed only when computed (napari computes the plane it shows);
* :func:`reconstruct_eager` reconstructs every plane in turn, yielding progress, into a numpy
  result (output memory only).
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import numpy as np

from .layers import image_display


def _as_dask(y: Any) -> Any:
    import dask.array as da

    if isinstance(y, da.Array):
        return y
    return da.from_array(np.asarray(y), chunks=(1,) * (np.ndim(y) - 2) + np.shape(y)[-2:])


def plane_chunks(y: Any) -> Any:
    """``y`` as dask with one block per plane (only the leading axes are re-chunked)."""
    y = _as_dask(y)
    return y.rechunk((1,) * (y.ndim - 2) + tuple(y.shape[-2:]))


def reconstruct_plane(y: Any, index: tuple[int, ...], op: Any, method: str,
                      **kwargs: Any) -> Any:
    """Reconstruct the plane ``y[index]`` of a stack; computes only that plane's block."""
    from ..api import reconstruct

    block = plane_chunks(y)[tuple(index)]
    return reconstruct(np.asarray(block.compute()), op, method, **kwargs)


def reconstruct_lazy(y: Any, op: Any, method: str, **kwargs: Any) -> Any:
    """A lazy ``(..., H, W)`` float32 dask array of display reconstructions, one block a plane."""
    from ..api import reconstruct

    yd = plane_chunks(y)

    def block_fn(block: np.ndarray) -> np.ndarray:
        lead = block.shape[:-2]
        res = reconstruct(np.asarray(block).reshape(block.shape[-2:]), op, method, **kwargs)
        return image_display(res.x).astype(np.float32).reshape(*lead, *op.shape)

    return yd.map_blocks(block_fn, dtype=np.float32,
                         chunks=tuple((1,) * n for n in yd.shape[:-2]) + tuple(
                             (s,) for s in op.shape))


def reconstruct_eager(y: Any, op: Any, method: str, **kwargs: Any
                      ) -> Generator[tuple[int, int], None, np.ndarray]:
    """Reconstruct every plane in turn; yields ``(done, total)``, returns the display stack."""
    from ..api import reconstruct

    yd = plane_chunks(y)
    lead = yd.shape[:-2]
    out = np.zeros((*lead, *op.shape), dtype=np.float32)
    total = int(np.prod(lead)) if lead else 1
    for k, idx in enumerate(np.ndindex(*lead)):
        res = reconstruct(np.asarray(yd[idx].compute()), op, method, **kwargs)
        out[idx] = image_display(res.x)
        yield k + 1, total
    return out
