"""Helpers shared by the test modules (importable because pytest puts tests/ on sys.path)."""

from __future__ import annotations

from typing import Any


def drain(gen: Any) -> tuple[list, Any]:
    """Run a generator to its end: (list of yielded values, returned value)."""
    yielded = []
    while True:
        try:
            yielded.append(next(gen))
        except StopIteration as stop:
            return yielded, stop.value


def run_method(method: str, y: Any, op: Any, *, x0: Any = None, generator: Any = None,
               **params: Any) -> tuple[list, Any]:
    """Drain the registered method ``method``: (list of yielded states, returned state)."""
    from napari_invrec.core.methods import METHODS
    from napari_invrec.core.params import make_params

    spec = METHODS[method]
    return drain(spec.fn(y, op, make_params(spec.params, **params), x0=x0,
                         generator=generator))
