r"""The tile grid: cores, windows (core + halo), seam blending, and the shared history schedule.

Along each axis of :math:`N` pixels the image is cut into :math:`n = \lceil N / C \rceil` cores
of about :math:`N/n \le C` pixels, their boundaries :math:`0 = c_0 < c_1 < \dots < c_n = N` at
multiples of ``align`` (a network's down-sampling factor), so every tile sees the image's pixel
lattice. Tile :math:`i` solves the window :math:`[c_i - p,\ c_i - p + L)` with the margin
:math:`p = \lceil h + b/2 \rceil` (halo :math:`h`, blend width :math:`b`) rounded up to
``align``, and :math:`L = \max_i (c_{i+1} - c_i) + 2p` the same for every tile, so one operator
serves them all. Outside the image the window continues periodically (``wrap``, the blur's own
boundary model, so near the border a tile sees what the untiled run sees), or stops at the
border (``clip``, for pointwise operators: a border tile is smaller and meets the image border
where the untiled run does, TV's Neumann boundary and a network's padding included). An axis
with a single core has no margin: the window is the whole axis.

Seams are blended over :math:`b` pixels centred on each interior boundary :math:`c_i` with the
cosine window :math:`r(s) = \sin^2(\tfrac\pi2 \operatorname{clip}(s, 0, 1))`,
:math:`s = (x + \tfrac12 - c_i + \tfrac b2)/b` at pixel centre :math:`x`: tile :math:`i` weighs
:math:`r`, tile :math:`i - 1` weighs :math:`1 - r`, so the weights of all tiles sum to exactly
one (a partition of unity) and the 2-D weight is the product of the two axes' weights. Each
tile contributes on :math:`[c_i - b/2,\ c_{i+1} + b/2)`, which lies :math:`h` inside its window.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

__all__ = ["Axis", "Tile", "TileGrid", "split_axis", "history_schedule", "BLEND"]

#: default width of the cosine cross-fade over each seam (pixels)
BLEND = 32


def _ceil_to(v: int, m: int) -> int:
    return -(-int(v) // m) * m


@dataclass(frozen=True)
class Axis:
    """One axis of the grid: ``size`` pixels, core boundaries ``cuts``, margin ``pad``, window
    length ``window`` and blend width ``blend`` (all in pixels of this axis)."""

    size: int
    cuts: tuple[int, ...]
    pad: int
    window: int
    blend: int

    @property
    def n(self) -> int:
        """Number of cores."""
        return len(self.cuts) - 1

    def scaled(self, f: int) -> Axis:
        """The same axis on a grid ``f`` times finer (super-resolution's image grid)."""
        return Axis(self.size * f, tuple(c * f for c in self.cuts), self.pad * f,
                    self.window * f, self.blend * f)

    def contribution(self, i: int) -> tuple[int, int, np.ndarray]:
        """``(lo, hi, w)``: tile ``i`` contributes to pixels ``[lo, hi)`` with weights ``w``."""
        b, c0, c1 = self.blend, self.cuts[i], self.cuts[i + 1]
        lo = c0 - b // 2 if i > 0 else 0
        hi = c1 + (b - b // 2) if i < self.n - 1 else self.size
        x = np.arange(lo, hi, dtype=np.float64) + 0.5
        w = np.ones(hi - lo)
        if i > 0:
            w *= _ramp(x, c0, b)
        if i < self.n - 1:
            w *= 1.0 - _ramp(x, c1, b)
        return lo, hi, w.astype(np.float32)


def _ramp(x: np.ndarray, c: int, b: int) -> np.ndarray:
    if b <= 0:
        return (x >= c).astype(np.float64)
    s = np.clip((x - c + b / 2) / b, 0.0, 1.0)
    return np.sin(0.5 * np.pi * s) ** 2


def split_axis(size: int, core: int, halo: int, align: int = 1, blend: int = BLEND) -> Axis:
    """Cut an axis of ``size`` pixels into cores of at most about ``core`` pixels (module
    docstring); ``core >= size`` gives one core and no margin."""
    size, align = int(size), max(1, int(align))
    n = max(1, -(-size // max(1, int(core))))
    if n == 1:
        return Axis(size, (0, size), 0, size, 0)
    inner = sorted({align * round(i * size / (n * align)) for i in range(1, n)} - {0, size})
    cuts = (0, *inner, size)
    smallest = min(b - a for a, b in zip(cuts, cuts[1:]))
    b = max(0, min(int(blend), smallest // 2)) // 2 * 2
    pad = _ceil_to(int(halo) + b // 2, align)
    return Axis(size, cuts, pad, max(b - a for a, b in zip(cuts, cuts[1:])) + 2 * pad, b)


@dataclass(frozen=True)
class Tile:
    """One tile: its index (0-based), core ``rows``/``cols`` ``(start, stop)``, window
    ``origin`` (negative or past the end with ``wrap``) and window ``shape``, all on the
    measurement grid, and its position ``(i, j)`` in the grid."""

    index: int
    rows: tuple[int, int]
    cols: tuple[int, int]
    origin: tuple[int, int]
    shape: tuple[int, int]
    grid_pos: tuple[int, int]


@dataclass(frozen=True)
class TileGrid:
    """Cores and windows of a tiled run.

    Attributes
    ----------
    rows, cols
        The axes on the measurement grid.
    factor
        Image pixels per measurement pixel (super-resolution; 1 otherwise).
    boundary
        ``"wrap"`` (windows continue periodically past the image border) or ``"clip"``
        (windows stop at it).
    """

    rows: Axis
    cols: Axis
    factor: int = 1
    boundary: str = "wrap"

    @property
    def n(self) -> int:
        """Number of tiles."""
        return self.rows.n * self.cols.n

    @property
    def window(self) -> tuple[int, int]:
        """The largest measurement window (every window with ``wrap``)."""
        return (self.rows.window, self.cols.window)

    @property
    def image_window(self) -> tuple[int, int]:
        """The largest image window (the largest tile operator's image shape)."""
        return (self.rows.window * self.factor, self.cols.window * self.factor)

    def _span(self, axis: Axis, i: int) -> tuple[int, int]:
        """Window ``(origin, length)`` of core ``i`` along ``axis``."""
        start = axis.cuts[i] - axis.pad
        if self.boundary == "wrap" or axis.n == 1:
            return start, axis.window
        lo = max(0, start)
        return lo, min(axis.size, axis.cuts[i + 1] + axis.pad) - lo

    def image_axes(self) -> tuple[Axis, Axis]:
        """The axes on the image grid."""
        return self.rows.scaled(self.factor), self.cols.scaled(self.factor)

    def tiles(self) -> Iterator[Tile]:
        """Tiles in raster order."""
        k = 0
        for i in range(self.rows.n):
            for j in range(self.cols.n):
                (ro, rn), (co, cn) = self._span(self.rows, i), self._span(self.cols, j)
                yield Tile(k, (self.rows.cuts[i], self.rows.cuts[i + 1]),
                           (self.cols.cuts[j], self.cols.cuts[j + 1]), (ro, co), (rn, cn),
                           (i, j))
                k += 1

    def as_dict(self) -> dict:
        """JSON record for the provenance."""
        return {"grid": [self.rows.n, self.cols.n], "window": list(self.window),
                "pad": [self.rows.pad, self.cols.pad], "blend": [self.rows.blend,
                                                                 self.cols.blend],
                "row_cuts": list(self.rows.cuts), "col_cuts": list(self.cols.cuts),
                "factor": self.factor, "boundary": self.boundary,
                "blend_window": "cosine (sin^2 ramp, partition of unity)"}


def history_schedule(total: int, frames: int) -> list[int]:
    """Steps an :class:`~.history.IterateHistory` holding at most ``frames`` equal frames keeps
    of a run of ``total`` steps: the same bounded-budget rule (stride doubling, final step
    kept), computed ahead so that every tile stores the same steps."""
    from .history import IterateHistory

    h = IterateHistory(max(1, int(frames)))
    one = {"x": np.zeros(1, np.uint8)}
    for k in range(1, int(total) + 1):
        h.add(k, one, final=k == total)
    return h.steps
