"""napari-invrec: explore reconstructions of imaging inverse problems ``y = A(x) + noise``.

The public API (imported lazily so that ``import napari_invrec`` loads neither torch nor Qt):

``list_operators()``, ``list_methods(operator=None)``, ``make_operator(name, shape, **params)``,
``simulate(x, op, noise="gaussian", sigma=..., seed=...)``, ``solve(y, op, method, **params)``,
``reconstruct(y, op, method, normalise="auto", **params) -> Result``, ``rerun(provenance, y)``,
``method_defaults(method, operator)`` (a method's defaults on an operator family),
``normalisation(y, op)`` (the map between the data's units and the units methods run in),
``estimate_noise(y, op)`` (noise std from the data alone),
``rerun_file(path) -> RerunReport`` (repeat the run of a result saved by the plugin's writer
and compare),
``estimate_quality(result)``, ``autotune(y, op, method)``, ``rank_methods(y, op, methods)``,
``best_for_data(y, op)`` (judge, tune and choose runs from the measurement alone),
``calibrate(result, source=...)`` (calibrated uncertainty bands).
``reconstruct_many(inputs, op, method, out=...)`` (a folder, glob, zarr array or stack, one
output with its provenance per input, on dask: threads, a LocalCluster or a cluster).
``reconstruct_tiled(y, op, method, tile="auto", out=PATH)`` (images larger than memory, tile
by tile from and to zarr, for local operators: blur, denoise, inpaint, superres).
"""

from ._version import __version__

_API = ("list_operators", "list_methods", "make_operator", "simulate", "solve",
        "reconstruct", "rerun", "Result", "method_params", "method_defaults",
        "operator_params", "normalisation",
        "estimate_noise", "rerun_file", "RerunReport", "estimate_quality", "autotune",
        "rank_methods", "best_for_data", "calibrate", "reconstruct_many",
        "reconstruct_tiled")

__all__ = ["__version__", *_API]


def __getattr__(name: str):
    if name in _API:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'napari_invrec' has no attribute {name!r}")
