r"""The normalisation of a tiled run, from every tile's core, as a whole-image run plans it.

A normal run solves in normalised units (:mod:`.normalise`): offset and scale are the 0.5th and
99.5th percentiles of the estimate :math:`\tilde x = A^H y / A^H A \mathbf 1`. Tiles must share
those units, so the estimate is formed tile by tile (each tile's operator is the whole image's
on its window; away from its edge, and with the periodic halo everywhere for blur,
:math:`\tilde x` equals the whole image's to float rounding) and its core values are pooled:
all of them up to :data:`MAX_SAMPLES` pixels, beyond that those on a regular lattice of stride
:math:`\lceil\sqrt{HW / \mathrm{MAX\_SAMPLES}}\rceil` (percentiles of 4 million samples are
within about 1e-3 of a percent of the exact ones). The rule applied to the pooled values is
:func:`~.normalise.plan_normalisation`'s.
"""

from __future__ import annotations

import numpy as np
import torch

from .normalise import Normalisation, normalisation_from_estimate
from .tile_grid import TileGrid
from .tile_io import read_window
from .tile_plan import Problem

__all__ = ["MAX_SAMPLES", "tile_normalisation"]

#: normalisation samples at most this many pixels (all of them up to 2048 x 2048)
MAX_SAMPLES = 2 ** 22


def _estimate(p: Problem, grid: TileGrid) -> tuple[np.ndarray, bool]:
    """Pooled core values of :math:`A^H y / A^H A 1` and whether ``A 1 >= 0`` everywhere."""
    h, w = p.image_shape
    stride = max(1, int(np.ceil(np.sqrt(h * w / MAX_SAMPLES))))
    f, samples, reliable, ops = grid.factor, [], True, {}
    for tile in grid.tiles():
        if p.mask is not None:
            op = p.tile_operator(tile)
        else:
            op = ops.setdefault(tile.shape, None) or p.tile_operator(tile)
            ops[tile.shape] = op
        y_t = torch.from_numpy(read_window(p.source, tile.origin, tile.shape,
                                           grid.boundary))[None, None].to(op.device)
        with torch.no_grad():
            a1 = op.A(torch.ones((1, 1, *op.shape), device=op.device))
            reliable &= float(a1.min()) >= -1e-6 * float(a1.abs().max())
            den = op.A_adjoint(a1).abs()[0, 0]
            num = op.A_adjoint(y_t)[0, 0]
        rows = np.arange(tile.rows[0] * f, tile.rows[1] * f)
        cols = np.arange(tile.cols[0] * f, tile.cols[1] * f)
        rows, cols = rows[rows % stride == 0], cols[cols % stride == 0]
        ri = torch.as_tensor(rows - tile.origin[0] * f)
        ci = torch.as_tensor(cols - tile.origin[1] * f)
        d, n = den[ri][:, ci], num[ri][:, ci]
        keep = d > 1e-6 * float(den.max())
        samples.append((n[keep] / d[keep]).double().cpu().numpy())
    return (np.concatenate(samples) if samples else np.zeros(0)), reliable


def tile_normalisation(p: Problem, grid: TileGrid, mode: str) -> Normalisation:
    """The normalisation of the tiled run ``p`` on ``grid`` (module docstring)."""
    if mode == "off":
        return Normalisation(mode, False, reason="off: the data run in their own units")
    est, reliable = _estimate(p, grid)
    return normalisation_from_estimate(est, reliable, mode, p.op_name,
                                       poisson=p.spec.likelihood == "poisson",
                                       complex_data=False)
