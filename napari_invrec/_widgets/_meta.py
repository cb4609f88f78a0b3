"""The one place where the docks read a layer's plugin metadata (``layer.metadata["invrec"]``).

Layer metadata is input like any other: a file reader, a script or a user may put anything under
``"invrec"``. Every dock reads it through :func:`layer_meta`, which checks the structure the
plugin writes (:mod:`napari_invrec.engine.layers`) and answers

* ``{}`` for a layer that is not the plugin's (no ``"invrec"`` key, or ``None``),
* the metadata dict when it is well-formed,
* ``None`` when it is malformed (:func:`meta_problem` says why in one line).

Docks ignore malformed layers when they list runs, measurements or references
(:func:`usable_layers` filters a layer list before it reaches the engine), and refuse one that
the user picks explicitly with an :class:`~napari_invrec.core.errors.InputError`
(:func:`checked_meta`). Only the structure is checked here (types of the keys the plugin reads);
whether an operator spec names a real operator is the engine's business.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np

from ..core.errors import InputError

__all__ = ["META_KEY", "layer_meta", "meta_problem", "checked_meta", "layer_kind",
           "usable_layers"]

META_KEY = "invrec"

# ----------------------------------------------------------------------------- value checks
def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(
        v, (bool, np.bool_))


def _is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def _opt(check: Callable[[Any], str | None]) -> Callable[[Any], str | None]:
    """``check`` that also accepts ``None``."""
    return lambda v: None if v is None else check(v)


def _str(v: Any) -> str | None:
    return None if isinstance(v, str) else f"is a {type(v).__name__}, not a string"


def _mapping(v: Any) -> str | None:
    return None if isinstance(v, Mapping) else f"is a {type(v).__name__}, not a dict"


def _array(v: Any) -> str | None:
    """A numpy array (memory maps included) or a dask array (a file read lazily) of numbers."""
    lazy = type(v).__module__.startswith("dask.") and hasattr(v, "dtype") and hasattr(v, "shape")
    if not isinstance(v, np.ndarray) and not lazy:
        return f"is a {type(v).__name__}, not an array"
    if v.dtype.kind not in "biufc":
        return f"is an array of {v.dtype}, not of numbers"
    return None


def _dict_of(check: Callable[[Any], str | None], what: str) -> Callable[[Any], str | None]:
    """A check of a dict whose every value passes ``check``."""

    def run(v: Any) -> str | None:
        if not isinstance(v, Mapping):
            return f"is a {type(v).__name__}, not a dict of {what}"
        for k, x in v.items():
            why = check(x)
            if why:
                return f"[{k!r}] {why}"
        return None

    return run


def _shape(v: Any) -> str | None:
    if not isinstance(v, (list, tuple)) or not v or not all(_is_int(s) and s > 0 for s in v):
        return f"is {v!r}, not a list of positive integers"
    return None


def _numbers(v: Any) -> str | None:
    if not isinstance(v, (list, tuple)) or not all(_is_number(x) for x in v):
        return f"is {type(v).__name__}, not a list of numbers"
    return None


def _ints(v: Any) -> str | None:
    if not isinstance(v, (list, tuple)) or not all(_is_int(x) for x in v):
        return f"is {type(v).__name__}, not a list of integers"
    return None


def _number_map(v: Any) -> str | None:
    if not isinstance(v, Mapping):
        return f"is a {type(v).__name__}, not a dict"
    bad = [k for k, x in v.items() if not _is_number(x)]
    return f"[{bad[0]!r}] is not a number" if bad else None


def _spec(v: Any) -> str | None:
    """An operator spec: ``{"operator": str, "shape": [...], "measurement_shape": [...],
    "params": {...}}``."""
    if not isinstance(v, Mapping):
        return f"is a {type(v).__name__}, not an operator spec (dict)"
    return _check_keys(v, {"operator": _str, "shape": _shape,
                           "measurement_shape": _opt(_shape), "params": _mapping},
                       required=("operator", "shape"))


def _fingerprint(v: Any) -> str | None:
    if not isinstance(v, Mapping):
        return f"is a {type(v).__name__}, not an array fingerprint (dict)"
    return _check_keys(v, {"array_shape": _ints, "dtype": _str, "sha256": _str})


def _provenance(v: Any) -> str | None:
    if not isinstance(v, Mapping):
        return f"is a {type(v).__name__}, not a dict"
    return _check_keys(v, {"operator": _opt(_spec), "method": _str, "params": _mapping,
                           "seed": _opt(lambda s: None if _is_int(s) else "is not an integer"),
                           "measurement": _opt(_fingerprint), "noise": _opt(_mapping),
                           "ground_truth": _opt(_str), "timings": _number_map,
                           "metrics": _number_map})


#: checks of the keys the docks read, applied when the key is present
_CHECKS: dict[str, Callable[[Any], str | None]] = {
    "provenance": _opt(_provenance),  # absent/None: a run whose record was lost (docks say so)
    "operator": _opt(_spec),
    "arrays": _opt(_dict_of(_array, "arrays")),
    "complex_data": _opt(_array),
    "measurement": _opt(_array),
    "units": _opt(_mapping),
    "metric_history": _opt(_dict_of(_numbers, "lists of numbers")),
    "steps": _opt(_ints),
    "levels": _opt(_numbers),
    "noise": _opt(_mapping),
    "ground_truth": _opt(_str),
    "run": _opt(_str),
    "map": _opt(_str),
    "of": _opt(_str),
    "view": _opt(_str),
    "mode": _opt(_str),
    "method": _opt(_str),
    "params": _opt(_mapping),
}


def _check_keys(d: Mapping, checks: Mapping[str, Callable[[Any], str | None]],
                required: tuple[str, ...] = ()) -> str | None:
    for key in required:
        if key not in d:
            return f"has no {key!r}"
    for key, check in checks.items():
        if key in d:
            why = check(d[key])
            if why:
                return f"{key!r} {why}"
    return None


# ----------------------------------------------------------------------------- layers
def _raw(layer: Any) -> tuple[Any, str | None]:
    """``(metadata["invrec"], problem)`` of a layer."""
    metadata = getattr(layer, "metadata", None)
    if metadata is None:
        return None, None
    if not isinstance(metadata, Mapping):
        return None, f"its metadata is a {type(metadata).__name__}, not a dict"
    return metadata.get(META_KEY), None


def meta_problem(layer: Any) -> str | None:
    """Why the layer's ``metadata["invrec"]`` is malformed (one line), or ``None`` if it is
    well-formed or absent."""
    raw, why = _raw(layer)
    if why or raw is None:
        return why
    if not isinstance(raw, Mapping):
        return f"metadata['invrec'] is a {type(raw).__name__}, not a dict"
    kind = raw.get("kind")
    if not isinstance(kind, str):
        return ("metadata['invrec'] has no 'kind'" if kind is None
                else f"metadata['invrec']['kind'] is a {type(kind).__name__}, not a string")
    why = _check_keys(raw, _CHECKS)
    return f"metadata['invrec'] ({kind}) {why}" if why else None


def layer_meta(layer: Any) -> dict | None:
    """The layer's plugin metadata: ``{}`` if it has none, the dict (a shallow copy) if it is
    well-formed, ``None`` if it is malformed."""
    if meta_problem(layer) is not None:
        return None
    raw, _ = _raw(layer)
    return dict(raw) if raw is not None else {}


def checked_meta(layer: Any) -> dict:
    """The layer's plugin metadata (``{}`` if none).

    Raises
    ------
    InputError
        If it is malformed: the message names the layer and says what is wrong.
    """
    why = meta_problem(layer)
    if why is not None:
        raise InputError(f"layer {getattr(layer, 'name', '?')!r} has malformed napari-invrec "
                         f"metadata: {why}; remove metadata['invrec'] or pick another layer")
    return layer_meta(layer) or {}


def layer_kind(layer: Any) -> str | None:
    """``metadata["invrec"]["kind"]``, or ``None`` (not the plugin's, or malformed)."""
    meta = layer_meta(layer)
    return meta.get("kind") if meta else None


def usable_layers(layers: Iterable[Any]) -> list[Any]:
    """The layers whose plugin metadata is absent or well-formed (malformed ones are left out),
    for engine functions that scan a layer list (runs, companions)."""
    return [layer for layer in layers if meta_problem(layer) is None]
