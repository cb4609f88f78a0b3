"""A bounded store of iterates: keeps every step until a memory budget is hit, then thins.

When the stored arrays exceed ``budget_bytes`` the keep-stride doubles and every stored step
that is not a multiple of it is dropped (the final step is always kept), so the history spans
the whole run at a uniform stride and its memory stays below the budget. A step whose streams
together exceed the budget keeps its iterate ``"x"`` alone.
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
        self._frames: list[dict[str, np.ndarray]] = []
        self._nbytes = 0
        self._final_step: int | None = None

    @property
    def nbytes(self) -> int:
        """Bytes currently stored."""
        return self._nbytes

    @property
    def steps(self) -> list[int]:
        """Step numbers of the stored entries, increasing."""
        return list(self._steps)

    def wants(self, step: int, final: bool = False) -> bool:
        """Whether :meth:`add` would keep ``step`` (so callers can skip a device transfer)."""
        return final or step % self.stride == 0

    def add(self, step: int, frames: dict[str, np.ndarray], final: bool = False) -> None:
        """Store ``frames`` (stream name -> array) for ``step`` if the stride wants it."""
        if not self.wants(step, final):
            return
        if self._steps and self._steps[-1] == step:
            self._nbytes -= sum(a.nbytes for a in self._frames[-1].values())
            self._steps.pop()
            self._frames.pop()
        size = sum(a.nbytes for a in frames.values())
        if size > self.budget_bytes and "x" in frames:  # keep the iterate, drop extra streams
            frames = {"x": frames["x"]}
            size = frames["x"].nbytes
        check_holds_one(size, self.budget_bytes)
        if final:
            self._final_step = step
        self._steps.append(step)
        self._frames.append(frames)
        self._nbytes += size
        while self._nbytes > self.budget_bytes and len(self._steps) > 1:
            self._thin()

    def _thin(self) -> None:
        self.stride *= 2
        keep = [i for i, s in enumerate(self._steps)
                if s % self.stride == 0 or self._final_step == s]
        self._steps = [self._steps[i] for i in keep]
        self._frames = [self._frames[i] for i in keep]
        self._nbytes = sum(a.nbytes for f in self._frames for a in f.values())

    def stack(self, name: str = "x") -> np.ndarray | None:
        """Stored arrays of stream ``name`` stacked along a new first axis (``None`` if absent)."""
        arrs = [f[name] for f in self._frames if name in f]
        return np.stack(arrs) if arrs else None

    def streams(self) -> list[str]:
        """Names of the stored streams."""
        names: list[str] = []
        for f in self._frames:
            names.extend(k for k in f if k not in names)
        return names
