"""Layer-data conventions shared by the widgets, sample data and the API (no Qt here).

napari layers are described as ``(data, kwargs, layer_type)`` tuples. Every layer the plugin
creates carries ``metadata["invrec"]``, a dict with at least ``"kind"``:

``"measurement"``
    ``operator`` (operator spec), ``noise`` (noise params dict), ``ground_truth`` (name of the
    ground-truth layer or ``None``), ``arrays`` (array parameters of the operator, e.g. a custom
    mask or kernel), ``complex_data`` (the complex measurement when the displayed data is its
    log-magnitude, else ``None``).
``"result"``, ``"history"``, ``"std"``, ``"live"``, ``"extra"``
    ``provenance`` (see :func:`napari_invrec.engine.provenance.make_provenance`); history layers
    also carry ``steps`` (the step number of each slice); result layers also carry
    ``metric_history`` (metric name -> list of per-step values, for convergence plots).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..core.params import to_dict

META_KEY = "invrec"


def display_array(a: np.ndarray) -> np.ndarray:
    """What napari shows for an array: itself if real, ``log(1 + |a|)`` if complex."""
    a = np.asarray(a)
    if np.iscomplexobj(a):
        return np.log1p(np.abs(a)).astype(np.float32)
    return a


def image_display(a: np.ndarray) -> np.ndarray:
    """Image-domain display: magnitude for complex images (MRI), the array itself otherwise."""
    a = np.asarray(a)
    return np.abs(a).astype(np.float32) if np.iscomplexobj(a) else a


def measurement_layer(y: np.ndarray, op: Any, noise: Any, *, name: str,
                      ground_truth: str | None = None) -> tuple:
    """Layer tuple for a simulated or loaded measurement, with everything needed to invert it.

    Parameters
    ----------
    y
        The measurement (2-D, real or complex).
    op
        The :class:`~napari_invrec.core.operators.base.LinearOperator` that produced it.
    noise
        Its :class:`~napari_invrec.core.operators.noise.NoiseParams` (or ``None`` for real data).
    name
        Layer name.
    ground_truth
        Name of the ground-truth layer, if known.
    """
    from ..core.operators.registry import operator_arrays

    y = np.asarray(y)
    meta = {META_KEY: {
        "kind": "measurement",
        "operator": op.spec(),
        "noise": to_dict(noise) if noise is not None else None,
        "ground_truth": ground_truth,
        "arrays": {k: np.asarray(v) for k, v in operator_arrays(op).items()},
        "complex_data": y if np.iscomplexobj(y) else None,
    }}
    kwargs = {"name": name, "metadata": meta, "colormap": "gray"}
    return (display_array(y), kwargs, "image")


def invrec_meta(layer_metadata: dict | None) -> dict:
    """The plugin's metadata dict of a layer (empty if the layer is not ours)."""
    return dict((layer_metadata or {}).get(META_KEY, {}) or {})


def measurement_from_layer(data: Any, metadata: dict | None) -> Any:
    """The measurement array of a layer: its complex data if stored, else its data."""
    meta = invrec_meta(metadata)
    if meta.get("complex_data") is not None:
        return meta["complex_data"]
    return data


def run_name(method: str, operator: str) -> str:
    """Base layer name of a run: ``"tv-fista · blur"``."""
    return f"{method} · {operator}"


def result_layers(result: Any, *, name: str, scale: Any = None) -> list[tuple]:
    """Layer tuples for a finished run: result, iterate history, extra streams, std, samples.

    Every tuple's metadata carries the run's provenance under ``metadata["invrec"]``; the
    history layer's first axis is the step (``steps`` gives each slice's step number).
    """
    prov = result.provenance
    arrays = {k: np.asarray(v) for k, v in (result.arrays or {}).items()}

    def meta(kind: str, **extra: Any) -> dict:
        return {META_KEY: {"kind": kind, "provenance": prov, "arrays": arrays,
                           "complex_data": None, **extra}}

    common = {"colormap": "gray"}
    if scale is not None:
        common["scale"] = scale
    x = np.asarray(result.x)
    history = {k: [float(v) for v in vals]
               for k, vals in (getattr(result, "metric_history", None) or {}).items()}
    out = [(image_display(x), {**common, "name": name,
                               "metadata": meta("result", complex_data=x if np.iscomplexobj(x)
                                                else None, metric_history=history)}, "image")]
    if result.iterates is not None and len(result.steps) > 1:
        out.append((result.iterates, {**common, "name": f"{name} [iterates]",
                                      "metadata": meta("history", steps=list(result.steps))},
                    "image"))
    for k, stack in (result.streams or {}).items():
        if stack is not None:
            out.append((stack, {**common, "name": f"{name} [{k}]",
                                "metadata": meta("history", steps=list(result.steps),
                                                 stream=k)}, "image"))
    if result.std is not None:
        out.append((np.asarray(result.std, dtype=np.float32),
                    {**common, "name": f"{name} [std]", "colormap": "magma",
                     "blending": "additive", "metadata": meta("std")}, "image"))
    for k, arr in (getattr(result, "extras", None) or {}).items():
        out.append((image_display(arr), {"colormap": "gray", "name": f"{name} [{k}]",
                                         "metadata": meta("extra", stream=k)}, "image"))
    if result.samples is not None:
        smp = np.asarray(result.samples)
        out.append((image_display(smp), {
            **common, "name": f"{name} [samples]",
            "metadata": meta("samples", complex_data=smp if np.iscomplexobj(smp) else None)},
            "image"))
    return out
