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


def reconstruct_dock(viewer: Any, truth: Any, operator: str = "blur",
                     **op_params: Any) -> tuple[Any, Any]:
    """``viewer`` with the ground truth ``truth`` and a measurement simulated from it (as the
    Simulate dock makes: sigma 0.02, seed 1), and a Reconstruct dock on it."""
    from napari_invrec import api
    from napari_invrec._widgets.reconstruct import ReconstructWidget
    from napari_invrec.core.operators import NoiseParams
    from napari_invrec.engine.layers import measurement_layer

    viewer.add_image(truth, name="truth")
    op = api.make_operator(operator, truth.shape, **op_params)
    y = api.simulate(truth, op, sigma=0.02, seed=1)
    data, kw, _ = measurement_layer(y, op, NoiseParams(sigma=0.02, seed=1), name="y",
                                    ground_truth="truth")
    viewer.add_image(data, **kw)
    return viewer, ReconstructWidget(viewer)
