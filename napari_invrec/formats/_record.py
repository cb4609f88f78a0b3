"""The JSON record of a saved layer: encoding for :mod:`.save`, decoding for :mod:`.saved`.

Layout and markers are described in :mod:`.saved`. :func:`encode` turns a layer's metadata
into strict-JSON types and collects its numpy arrays by path; :func:`decode` undoes it.
"""

from __future__ import annotations

import base64
import json
import math
import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..core.errors import InputError
from ..engine.layers import META_KEY

__all__ = ["FORMAT", "GROUP", "KEY", "array_paths", "decode", "encode", "make_record"]

KEY = "napari_invrec"   #: attribute / description / sidecar key of the record
FORMAT = 1              #: version of the record layout
GROUP = "napari_invrec"  #: zarr subgroup holding the exact arrays
_RESERVED = ("format", "layer", "invrec_keys")
_LAYER_KEYS = ("scale", "translate", "colormap", "blending", "opacity", "rgb",
               "contrast_limits", "gamma", "visible")


def _part(key: Any) -> str:
    text = re.sub(r"[^A-Za-z0-9_.-]", "_", str(key)) or "_"
    return "_" + text if text.startswith((".", "__")) else text


def encode(obj: Any, path: str, arrays: dict[str, np.ndarray]) -> Any:
    """``obj`` as strict-JSON types; each numpy array goes to ``arrays`` under a unique path
    derived from ``path`` and is replaced by ``{"$array": PATH}`` (see :func:`decode`).
    """
    if isinstance(obj, Mapping):
        return {str(k): encode(v, f"{path}/{_part(k)}", arrays) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [encode(v, f"{path}/{i}", arrays) for i, v in enumerate(obj)]
    if obj is None or isinstance(obj, (bool, str, int)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else {"$float": str(obj)}
    if isinstance(obj, np.generic):
        return encode(obj.item(), path, arrays)
    if isinstance(obj, np.ndarray) or hasattr(obj, "__array__"):
        a = np.asarray(obj)
        if a.dtype.kind not in "biufc":
            return {"$list": json.loads(json.dumps(a.tolist(), default=str))}
        if a.ndim == 0 or a.size == 0:
            return {"$bytes": base64.b64encode(a.tobytes()).decode("ascii"),
                    "dtype": a.dtype.str, "shape": list(a.shape)}
        unique, n = path.strip("/") or "array", 1
        while unique in arrays:
            unique, n = f"{path}_{n}", n + 1
        arrays[unique] = a
        return {"$array": unique}
    return {"$repr": repr(obj)}


def _plain(v: Any) -> Any:
    if isinstance(v, np.ndarray) or isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v.item() if isinstance(v, np.generic) else v


def make_record(meta: Mapping, levels: int = 1) -> tuple[dict, dict[str, np.ndarray]]:
    """The JSON record of a layer (``meta``: its state or kwargs) and the arrays it names."""
    md = dict(meta.get("metadata") or {})
    invrec = md.pop(META_KEY, None)
    arrays: dict[str, np.ndarray] = {}
    name = str(meta.get("name") or "layer")
    rec: dict[str, Any] = {"format": FORMAT, "name": name}
    if isinstance(invrec, Mapping):
        clash = [k for k in invrec if k in _RESERVED]
        if clash:
            raise InputError(f"layer metadata['invrec'] uses the reserved key {clash[0]!r}; "
                             "rename it before saving")
        rec["invrec_keys"] = [str(k) for k in invrec]
        rec.update({str(k): encode(v, _part(k), arrays) for k, v in invrec.items()})
    cmap = meta.get("colormap")
    layer = {"name": name, "levels": levels,
             **{k: _plain(meta[k]) for k in _LAYER_KEYS if meta.get(k) is not None},
             "colormap": cmap if isinstance(cmap, str) else getattr(cmap, "name", None)}
    if md:
        layer["metadata"] = encode(md, "metadata", arrays)
    rec["layer"] = json.loads(json.dumps(encode(layer, "layer", arrays), allow_nan=False))
    return rec, arrays


def decode(obj: Any, arrays: dict[str, np.ndarray]) -> Any:
    """Undo :func:`encode`: markers become arrays and floats.

    Raises
    ------
    InputError
        A marker names an array the file does not hold.
    """
    if isinstance(obj, dict):
        if "$array" in obj and len(obj) == 1:
            path = obj["$array"]
            if path not in arrays:
                raise InputError(f"the saved record names array {path!r}, which the file does "
                                 "not hold; the file is incomplete")
            return arrays[path]
        if "$float" in obj and len(obj) == 1:
            return float(obj["$float"])
        if "$bytes" in obj:
            raw = base64.b64decode(obj["$bytes"])
            return np.frombuffer(raw, dtype=obj["dtype"]).reshape(obj["shape"]).copy()
        if "$list" in obj:
            return np.asarray(obj["$list"])
        return {k: decode(v, arrays) for k, v in obj.items()}
    if isinstance(obj, list):
        return [decode(v, arrays) for v in obj]
    return obj


def array_paths(obj: Any) -> list[str]:
    """The ``$array`` paths a record names."""
    if isinstance(obj, dict):
        if "$array" in obj and len(obj) == 1:
            return [obj["$array"]]
        return [p for v in obj.values() for p in array_paths(v)]
    if isinstance(obj, list):
        return [p for v in obj for p in array_paths(v)]
    return []
