"""Layer-data conventions shared by the widgets, sample data and the API (no Qt here).

napari layers are described as ``(data, kwargs, layer_type)`` tuples. Every layer the plugin
creates carries ``metadata["invrec"]``, a dict with at least ``"kind"``:

``"measurement"``
    ``operator`` (operator spec), ``noise`` (noise params dict; ``None`` for real data),
    ``ground_truth`` (name of the ground-truth or reference layer, or ``None``), ``arrays``
    (array parameters of the operator, e.g. a custom mask or kernel), ``complex_data`` (the
    complex measurement when the displayed data is its log-magnitude, else ``None``). A
    measurement read from a file (:func:`file_measurement_layer`) also carries ``units`` and
    ``notes`` (what the reader inferred, e.g. a mask detected from all-zero columns).

    Complex data: napari cannot show complex numbers, so the layer's ``data`` is
    ``log(1 + |y|)`` (float32) and the complex measurement itself travels in ``complex_data``,
    with the same shape; consumers take ``complex_data`` when it is not ``None``, else
    ``data`` (:func:`measurement_from_layer`). This is the one path for complex measurements,
    simulated (numpy) and read from files (numpy, memory-mapped numpy or dask, with ``data``
    then a lazy dask array computed per plane).
    Stacks put the stack axes first: ``(slices, H, W)`` or, for measurements that are 3-D
    themselves (multi-coil k-space), ``(slices, coils, H, W)``; the spec's
    ``measurement_shape`` is that of one measurement.
``"image"``
    A plain image read from a file (no operator known: the user picks one in Reconstruct):
    ``units`` (see :func:`file_image_layer`).
``"result"``, ``"history"``, ``"std"``, ``"live"``, ``"extra"``
    ``provenance`` (see :func:`napari_invrec.engine.provenance.make_provenance`),
    ``measurement`` (the measurement as it ran, so that a saved result can be re-run from its
    file alone; ``None`` when unknown) and ``arrays`` (operator array parameters); history layers
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


def _log_magnitude(block: np.ndarray) -> np.ndarray:
    return np.log1p(np.abs(block)).astype(np.float32)


def file_measurement_layer(kspace: Any, spec: dict, arrays: dict, *, name: str, units: dict,
                           ground_truth: str | None = None, notes: str | None = None,
                           contrast_limits: Any = None) -> tuple:
    """Layer tuple of a complex measurement read from a file (e.g. MRI k-space).

    Parameters
    ----------
    kspace
        The complex measurement, stack axes first (see the module docstring): numpy, a
        memory-mapped numpy array or dask. It is kept as it is in ``complex_data`` (a dask
        array stays lazy, a memory map stays on disk).
    spec
        Operator spec of one measurement (e.g. from
        :func:`~napari_invrec.core.operators.registry.measurement_spec`).
    arrays
        The spec's array parameters (e.g. ``{"mask_array": mask}``).
    name
        Layer name.
    units
        Its :func:`units_record`.
    ground_truth
        Name of the file's reference layer, when it is on the image grid.
    notes
        What the reader inferred rather than read (shown to whoever inspects the metadata).
    contrast_limits
        Display range of ``log(1 + |y|)``; without it napari computes it from the data.

    Returns
    -------
    tuple
        ``(data, kwargs, "image")`` with ``data`` = ``log(1 + |kspace|)`` as a dask array
        computed block by block (one block per plane when ``kspace`` is numpy). napari's
        ``scale`` is left at 1: k-space has no image-domain pixel size (``units["spacing"]``
        is that of the reconstructed image), and results overlay the data pixel for pixel.
    """
    import dask.array as da

    k = kspace
    if not isinstance(k, da.Array):
        k = da.from_array(k, chunks=(1,) * (np.ndim(k) - 2) + tuple(np.shape(k)[-2:]),
                          name=False)  # no hash of the whole array
    shown = k.map_blocks(_log_magnitude, dtype=np.float32)
    meta = {META_KEY: {
        "kind": "measurement", "operator": spec, "noise": None, "ground_truth": ground_truth,
        "arrays": {key: np.asarray(v) for key, v in arrays.items()}, "complex_data": kspace,
        "units": units, "notes": notes,
    }}
    kwargs = {"name": name, "metadata": meta, "colormap": "gray"}
    if contrast_limits is not None:
        kwargs["contrast_limits"] = [float(c) for c in contrast_limits]
    return (shown, kwargs, "image")


def units_record(*, spacing: Any = None, unit: str = "pixel", intensity: str = "a.u.",
                 source: Any = None, fmt: str | None = None, **extra: Any) -> dict:
    """The ``units`` entry of a layer read from a file (JSON types only).

    Parameters
    ----------
    spacing
        Physical size of a pixel along each axis (slowest first), in ``unit``; ``None``: 1.
    unit
        Length unit of ``spacing`` (``"mm"``, ``"um"``, ``"nm"``, ``"angstrom"``, ``"pixel"``).
    intensity
        What the values are (``"a.u."``, ``"counts"``, ``"HU"``...): results are returned in the
        same units.
    source, fmt
        File the data came from and its format name.
    **extra
        Format-specific facts worth keeping (e.g. ``rescale_slope``), JSON types.
    """
    return {"spacing": None if spacing is None else [float(s) for s in spacing],
            "unit": str(unit), "intensity": str(intensity),
            "source": None if source is None else str(source), "format": fmt, **extra}


def file_image_layer(data: Any, *, name: str, units: dict, **kwargs: Any) -> tuple:
    """Layer tuple of a plain image read from a file: ``kind="image"`` with its ``units``;
    napari's ``scale`` is the pixel spacing, so rulers and the scale bar are physical."""
    meta = {META_KEY: {"kind": "image", "units": units}}
    kw = {"name": name, "metadata": meta, "colormap": "gray", **kwargs}
    if units.get("spacing") is not None and "scale" not in kw:
        kw["scale"] = list(units["spacing"])
    return (data, kw, "image")


def invrec_meta(layer_metadata: dict | None) -> dict:
    """The plugin's metadata dict of a layer (empty if the layer is not ours)."""
    return dict((layer_metadata or {}).get(META_KEY, {}) or {})


def measurement_from_layer(data: Any, metadata: dict | None) -> Any:
    """The measurement array of a layer: its complex data if stored, else its data."""
    meta = invrec_meta(metadata)
    if meta.get("complex_data") is not None:
        return meta["complex_data"]
    return data


def display_range(data: Any) -> tuple[float, float]:
    """Contrast limits napari would compute for an in-memory array (its finite min and max),
    so that a layer can be created without napari scanning its data on the GUI thread.
    ``(0, 1)`` for an array without finite values; a constant array gets a unit-wide range."""
    a = np.asarray(data)
    if a.size == 0:
        return (0.0, 1.0)
    if np.iscomplexobj(a):
        a = np.abs(a)
    lo, hi = float(np.min(a)), float(np.max(a))
    if not (np.isfinite(lo) and np.isfinite(hi)):
        finite = a[np.isfinite(a)]
        if finite.size == 0:
            return (0.0, 1.0)
        lo, hi = float(finite.min()), float(finite.max())
    return (lo, hi) if hi > lo else (lo, lo + 1.0)


def with_contrast_limits(layers: list[tuple]) -> list[tuple]:
    """``layers`` (layer tuples) with explicit ``contrast_limits`` on every in-memory image
    layer that has none (:func:`display_range`); lazy (dask) data is left to napari. Meant to
    run off the GUI thread, next to the computation that made the arrays."""
    for data, kwargs, kind in layers:
        if kind == "image" and "contrast_limits" not in kwargs and isinstance(data, np.ndarray):
            kwargs["contrast_limits"] = display_range(data)
    return layers


def run_name(method: str, operator: str) -> str:
    """Base layer name of a run: ``"tv-fista · blur"``."""
    return f"{method} · {operator}"


def result_layers(result: Any, *, name: str, scale: Any = None) -> list[tuple]:
    """Layer tuples for a finished run: result, iterate history, extra streams, std, samples.

    Every tuple's metadata carries the run's provenance under ``metadata["invrec"]``; the
    history layer's first axis is the step (``steps`` gives each slice's step number, and
    ``levels`` each slice's degradation level for a run whose steps are levels, metric
    ``"t"``, else ``None``).
    """
    prov = result.provenance
    arrays = {k: np.asarray(v) for k, v in (result.arrays or {}).items()}

    def meta(kind: str, **extra: Any) -> dict:
        return {META_KEY: {"kind": kind, "provenance": prov, "arrays": arrays,
                           "measurement": result.measurement, "complex_data": None, **extra}}

    common = {"colormap": "gray"}
    if scale is not None:
        common["scale"] = scale
    x = np.asarray(result.x)
    history = {k: [float(v) for v in vals]
               for k, vals in (getattr(result, "metric_history", None) or {}).items()}
    out = [(image_display(x), {**common, "name": name,
                               "metadata": meta("result", complex_data=x if np.iscomplexobj(x)
                                                else None, metric_history=history)}, "image")]
    # the steps of a schedule run (dirac) are degradation levels: one per stored step
    levels = history.get("t")
    levels = ([levels[s - 1] for s in result.steps]
              if levels and len(levels) >= max(result.steps, default=0) else None)
    if result.iterates is not None and len(result.steps) > 1:
        out.append((result.iterates, {**common, "name": f"{name} [iterates]",
                                      "metadata": meta("history", steps=list(result.steps),
                                                       levels=levels)},
                    "image"))
    for k, stack in (result.streams or {}).items():
        if stack is not None:
            out.append((stack, {**common, "name": f"{name} [{k}]",
                                "metadata": meta("history", steps=list(result.steps),
                                                 stream=k, levels=levels)}, "image"))
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
