"""A bounded store of iterates: keeps every step until a memory budget is hit, then thins.

When the stored arrays exceed ``budget_bytes`` the keep-stride doubles and every stored step
that is not a multiple of it is dropped (the final step is always kept), so the history spans
the whole run at a uniform stride and its memory stays below the budget. A step whose streams
together exceed the budget keeps its iterate ``"x"`` alone.

Each stream is stored in one contiguous array (grown by doubling, or sized once with
:meth:`IterateHistory.reserve`), so :meth:`IterateHistory.stack` hands the stored frames over
as a view, without the copy that stacking them at the end of a run made (for a full 256 MB
budget, a 256 MB copy and twice the memory at the moment a run ends).
"""

from __future__ import annotations

import numpy as np

from ..core.errors import ResourceError

DEFAULT_BUDGET = 256 * 2 ** 20


def check_holds_one(size: int, budget_bytes: int) -> None:
    """Raise :class:`ResourceError` when one iterate of ``size`` bytes exceeds the budget."""
    if size > budget_bytes:
        raise ResourceError(f"one iterate needs {size / 2**20:.1f} MB, more than the "
                            f"history budget {budget_bytes / 2**20:.1f} MB; raise the budget")


class _Rows:
    """Equal-shaped frames of one stream, rows ``[:n]`` of one array grown by doubling."""

    def __init__(self, first: np.ndarray, capacity: int, limit: int) -> None:
        self.limit = max(int(limit), 1)
        rows = max(1, min(int(capacity), self.limit))
        self.buf = np.empty((rows, *first.shape), dtype=first.dtype)
        self.n = 0

    def append(self, a: np.ndarray) -> None:
        if a.shape != self.buf.shape[1:]:
            raise ValueError(f"a frame of shape {a.shape} in a history of {self.buf.shape[1:]}")
        if self.n == len(self.buf):
            grown = np.empty((max(min(2 * self.n, self.limit), self.n + 1), *a.shape),
                             dtype=self.buf.dtype)
            grown[:self.n] = self.buf[:self.n]
            self.buf = grown
        self.buf[self.n] = a
        self.n += 1

    def keep(self, rows: list[int]) -> None:
        """Keep ``rows`` (increasing), moved to the front in place."""
        for dst, src in enumerate(rows):
            if dst != src:
                self.buf[dst] = self.buf[src]
        self.n = len(rows)


class IterateHistory:
    """Bounded iterate history for one or more named image streams.

    Parameters
    ----------
    budget_bytes
        Upper bound on the memory of stored arrays (all streams together).
    """

    def __init__(self, budget_bytes: int = DEFAULT_BUDGET) -> None:
        self.budget_bytes = int(budget_bytes)
        self.stride = 1
        self._steps: list[int] = []
        self._frames: list[tuple[str, ...]] = []  # the streams each stored step holds
        self._sizes: list[int] = []
        self._rows: dict[str, _Rows] = {}
        self._nbytes = 0
        self._final_step: int | None = None
        self._expect = 0

    @property
    def nbytes(self) -> int:
        """Bytes currently stored."""
        return self._nbytes

    @property
    def steps(self) -> list[int]:
        """Step numbers of the stored entries, increasing."""
        return list(self._steps)

    def reserve(self, steps: int) -> None:
        """Expect about ``steps`` adds (a run's number of steps): the first frame of each stream
        then sizes its store once, for that many frames or as many as the budget holds, instead
        of growing it by doubling."""
        self._expect = max(0, int(steps))

    def wants(self, step: int, final: bool = False) -> bool:
        """Whether :meth:`add` would keep ``step`` (so callers can skip a device transfer)."""
        return final or step % self.stride == 0

    def add(self, step: int, frames: dict[str, np.ndarray], final: bool = False) -> None:
        """Store ``frames`` (stream name -> array, copied in) for ``step`` if the stride wants
        it."""
        if not self.wants(step, final):
            return
        if self._steps and self._steps[-1] == step:
            self._drop_last()
        frames = {k: np.asarray(a) for k, a in frames.items()}
        size = sum(a.nbytes for a in frames.values())
        if size > self.budget_bytes and "x" in frames:  # keep the iterate, drop extra streams
            frames = {"x": frames["x"]}
            size = frames["x"].nbytes
        check_holds_one(size, self.budget_bytes)
        if final:
            self._final_step = step
        for name, a in frames.items():
            rows = self._rows.get(name)
            if rows is None:
                rows = self._rows[name] = _Rows(a, capacity=self._expect or 8,
                                                limit=self.budget_bytes // max(a.nbytes, 1) + 1)
            rows.append(a)
        self._steps.append(step)
        self._frames.append(tuple(frames))
        self._sizes.append(size)
        self._nbytes += size
        while self._nbytes > self.budget_bytes and len(self._steps) > 1:
            self._thin()

    def _drop_last(self) -> None:
        for name in self._frames.pop():
            self._rows[name].n -= 1
        self._steps.pop()
        self._nbytes -= self._sizes.pop()

    def _thin(self) -> None:
        self.stride *= 2
        keep = [i for i, s in enumerate(self._steps)
                if s % self.stride == 0 or self._final_step == s]
        for name, rows in self._rows.items():
            holding = [i for i, f in enumerate(self._frames) if name in f]  # row order
            row_of = {i: r for r, i in enumerate(holding)}
            rows.keep([row_of[i] for i in keep if i in row_of])
        self._steps = [self._steps[i] for i in keep]
        self._frames = [self._frames[i] for i in keep]
        self._sizes = [self._sizes[i] for i in keep]
        self._nbytes = sum(self._sizes)

    def stack(self, name: str = "x") -> np.ndarray | None:
        """Stored arrays of stream ``name`` along a new first axis (``None`` if absent): a view
        of the store, valid until the next :meth:`add` (it keeps the whole store alive)."""
        rows = self._rows.get(name)
        return rows.buf[:rows.n] if rows is not None and rows.n else None

    def streams(self) -> list[str]:
        """Names of the stored streams."""
        names: list[str] = []
        for f in self._frames:
            names.extend(k for k in f if k not in names)
        return names
