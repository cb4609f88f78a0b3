r"""Comparison of finished runs (no Qt): gather runs from layers, metric rows, trust maps.

The Compare dock widget only displays what this module computes:

* :func:`find_runs` collects the result layers (``metadata["invrec"]["kind"] == "result"``) and
  finds each run's measurement among the other layers by the fingerprint in its provenance;
* :func:`metric_rows` scores every run against a reference image (PSNR, SSIM, NRMSE on
  magnitudes) and against its own data, with the relative residual
  :math:`\|A \hat x - y\|_2 / \|y\|_2` (the operator rebuilt from the provenance);
* :func:`hallucination_map` computes the maps of Bhadra et al. (IEEE TMI 2021), with
  :math:`P = A^+ A`:

  - ``"null-space (vs reference)"``: :math:`(I - P)(\hat x - x_\mathrm{true})` (needs ground truth),
  - ``"measurement-space"``: :math:`P \hat x - A^+ y` (needs only the data),
  - ``"null-space difference"``: :math:`(I - P)(\hat x - x_\mathrm{ref})` against another
    (data-consistent) result,
  - ``"error |x - ref|"``: :math:`|\hat x - x_\mathrm{true}|`;

* :func:`map_layer` wraps a map in a layer tuple (``metadata["invrec"]["kind"] ==
  "hallucination"``) with a diverging colormap and symmetric contrast limits for signed maps.

Layers may be napari layers or ``(data, kwargs, layer_type)`` tuples.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..core.errors import InputError
from ..core.params import array_fingerprint
from .layers import META_KEY, image_display, invrec_meta

NULL_SPACE = "null-space (vs reference)"
MEASUREMENT_SPACE = "measurement-space"
NULL_DIFFERENCE = "null-space difference"
ERROR = "error |x - ref|"
#: the kinds of map :func:`hallucination_map` computes, in the order the GUI lists them
MAP_KINDS = (NULL_SPACE, MEASUREMENT_SPACE, NULL_DIFFERENCE, ERROR)

_MAP_DOC = {
    NULL_SPACE: "(I - P)(x_hat - x_true), P = A_pinv A: structure of the error that the "
                "measurements cannot see",
    MEASUREMENT_SPACE: "P x_hat - A_pinv y: disagreement of the result with the data",
    NULL_DIFFERENCE: "(I - P)(x_hat - x_ref): null-space content that differs from the "
                     "reference result",
    ERROR: "|x_hat - x_true|",
}


# ----------------------------------------------------------------------------- layer access
def layer_parts(layer: Any) -> tuple[str, Any, dict, str]:
    """``(name, data, metadata, layer_type)`` of a napari layer or a layer tuple."""
    if isinstance(layer, tuple):
        data, kwargs, ltype = (tuple(layer) + ({}, "image"))[:3]
        kwargs = kwargs or {}
        return str(kwargs.get("name", "")), data, dict(kwargs.get("metadata") or {}), str(ltype)
    return (str(layer.name), layer.data, dict(layer.metadata or {}),
            type(layer).__name__.lower())


def layer_image(data: Any, metadata: dict | None) -> np.ndarray:
    """The image array of a layer: the complex image (result) or samples stored with a run of a
    complex-image operator if any, else its data."""
    meta = invrec_meta(metadata)
    if meta.get("kind") in ("result", "samples") and meta.get("complex_data") is not None:
        return np.asarray(meta["complex_data"])
    return np.asarray(data)


# ----------------------------------------------------------------------------- runs
@dataclass
class RunInfo:
    """One finished run, as found on a result layer.

    Attributes
    ----------
    name
        Layer name.
    method, operator
        Method and operator registry names.
    params
        Method parameters (the provenance's dict).
    time_s
        Total wall-clock time of the run, seconds (``None`` if not recorded).
    metric_history
        Metric name -> per-step values (empty if the layer predates it).
    provenance
        The full re-run record.
    result
        The result image (complex for complex operators).
    arrays
        Operator array parameters stored beside the provenance.
    measurement, measurement_layer
        The run's measurement and the layer it was found on (``None`` if not found).
    """

    name: str
    method: str
    operator: str
    params: dict
    time_s: float | None
    metric_history: dict[str, list[float]]
    provenance: dict
    result: np.ndarray
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    measurement: np.ndarray | None = None
    measurement_layer: str | None = None

    @property
    def ground_truth(self) -> str | None:
        """Name of the ground-truth layer recorded at run time, if any."""
        return self.provenance.get("ground_truth")

    @property
    def meta(self) -> dict:
        """The plugin metadata of this run's result layer (for :func:`hallucination_map`)."""
        return {"kind": "result", "provenance": self.provenance, "arrays": self.arrays}

    def params_text(self, limit: int = 48) -> str:
        """Short ``"lam=0.005, iters=50"`` summary of the parameters (cut at ``limit`` chars)."""
        full = format_params(self.params)
        return full if len(full) <= limit else full[:limit - 1] + "…"


def format_params(params: dict) -> str:
    """``"k=v, ..."`` of the parameters (arrays, stored as fingerprints, shown as ``<array>``)."""
    parts = []
    for k, v in params.items():
        if isinstance(v, dict):
            v = "<array>"
        elif isinstance(v, float):
            v = f"{v:.4g}"
        parts.append(f"{k}={v}")
    return ", ".join(parts)


def _find_measurement(prov: dict, candidates: list[tuple[str, Any, dict]]) -> tuple:
    """The measurement layer whose array matches the provenance fingerprint, else ``(None,)*2``.

    Measurement layers (kind ``"measurement"``) are tried first; any other image layer of the
    recorded shape and dtype is hashed only if none matches.
    """
    fp = prov.get("measurement") or {}
    shape, dtype = tuple(fp.get("array_shape", ())), fp.get("dtype")
    if not fp.get("sha256"):
        return None, None
    ordered = sorted(candidates, key=lambda c: invrec_meta(c[2]).get("kind") != "measurement")
    for name, data, metadata in ordered:
        meta = invrec_meta(metadata)
        if meta.get("kind") not in (None, "measurement"):
            continue
        arr = meta.get("complex_data") if meta.get("complex_data") is not None else data
        if tuple(getattr(arr, "shape", ())) != shape or str(getattr(arr, "dtype", "")) != dtype:
            continue
        arr = np.asarray(arr)
        if array_fingerprint(arr)["sha256"] == fp["sha256"]:
            return arr, name
    return None, None


def find_runs(layers: Iterable[Any]) -> list[RunInfo]:
    """Every result layer in ``layers`` as a :class:`RunInfo`, in layer order.

    Each run's measurement is looked up among the image layers by the SHA-256 fingerprint
    stored in its provenance.
    """
    parts = [layer_parts(layer) for layer in layers]
    images = [(n, d, m) for n, d, m, t in parts if t == "image"]
    runs = []
    for name, data, metadata, ltype in parts:
        meta = invrec_meta(metadata)
        if ltype != "image" or meta.get("kind") != "result":
            continue
        prov = dict(meta.get("provenance") or {})
        y, y_name = _find_measurement(prov, images)
        timings = prov.get("timings") or {}
        runs.append(RunInfo(
            name=name, method=str(prov.get("method", "?")),
            operator=str((prov.get("operator") or {}).get("operator", "?")),
            params=dict(prov.get("params") or {}),
            time_s=float(timings["total_s"]) if "total_s" in timings else None,
            metric_history={k: list(v) for k, v in (meta.get("metric_history") or {}).items()},
            provenance=prov, result=layer_image(data, metadata),
            arrays=dict(meta.get("arrays") or {}), measurement=y, measurement_layer=y_name))
    return runs


# ----------------------------------------------------------------------------- operators
_OP_CACHE: dict[str, Any] = {}


def run_operator(meta: dict, device: Any = None) -> Any:
    """Rebuild the operator of a run from its layer metadata (provenance spec + arrays).

    ``meta`` is the layer's ``metadata`` or its ``metadata["invrec"]``. Operators without
    array parameters are cached by their spec.

    Raises
    ------
    InputError
        If the layer carries no operator spec (it is not a result of this plugin).
    """
    from ..core.operators.registry import operator_from_spec
    from .device import choose_device, replay_device

    meta = invrec_meta(meta) if META_KEY in (meta or {}) else dict(meta or {})
    spec = (meta.get("provenance") or {}).get("operator") or meta.get("operator")
    if not spec:
        raise InputError("this layer records no operator; pick a result layer made by "
                         "napari-invrec (its metadata holds the run's provenance)")
    arrays = meta.get("arrays") or {}
    device = choose_device(device) if device else replay_device(
        (meta.get("provenance") or {}).get("device"))
    key = json.dumps(spec, sort_keys=True) + str(device)
    if arrays:
        return operator_from_spec(spec, arrays, device=device)
    if key not in _OP_CACHE:
        if len(_OP_CACHE) > 16:
            _OP_CACHE.clear()
        _OP_CACHE[key] = operator_from_spec(spec, None, device=device)
    return _OP_CACHE[key]


def _image_tensor(a: np.ndarray, op: Any) -> torch.Tensor:
    return op.as_image(torch.from_numpy(np.ascontiguousarray(a))[None, None])


def _measurement_tensor(a: np.ndarray, op: Any) -> torch.Tensor:
    return op.as_measurement(torch.from_numpy(np.ascontiguousarray(a))[None, None])


def _real_tensor(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(image_display(a), dtype=np.float32))[None, None]


def _plane(t: torch.Tensor) -> np.ndarray:
    return t.detach()[0, 0].cpu().numpy()


# ----------------------------------------------------------------------------- metrics
def metric_rows(runs: list[RunInfo], reference: np.ndarray | None,
                measurement: np.ndarray | None = None) -> list[dict]:
    r"""One dict of scores per run.

    Keys: ``name, method, operator, params, time_s, psnr, ssim, nrmse, residual, estimate,
    estimate_note, note``. PSNR, SSIM and NRMSE compare :math:`|\hat x|` with
    :math:`|x_\mathrm{ref}|`; the residual is :math:`\|A \hat x - y\|_2 / \|y\|_2` with
    ``measurement`` if given (and of the right shape), else the run's own measurement.
    ``estimate`` is the ground-truth-free estimate stored in the run's provenance
    (``"quality"``, :func:`~.quality_runs.short_label`; ``estimate_note`` its summary), which
    needs no reference. A score that cannot be computed is ``None`` and ``note`` says why.
    """
    from ..core.analysis.metrics import nrmse, psnr, residual, ssim
    from .quality_runs import short_label, stored_estimate

    ref = None if reference is None else np.asarray(reference)
    rows = []
    for run in runs:
        row: dict[str, Any] = {"name": run.name, "method": run.method, "operator": run.operator,
                               "params": run.params_text(), "time_s": run.time_s,
                               "psnr": None, "ssim": None, "nrmse": None, "residual": None}
        est = stored_estimate(run.provenance)
        row["estimate"] = None if est is None else short_label(est)
        row["estimate_note"] = "" if est is None else est.summary()
        notes = []
        if ref is not None:
            if ref.shape == run.result.shape:
                x_t, r_t = _real_tensor(run.result), _real_tensor(ref)
                row["psnr"] = float(psnr(x_t, r_t))
                row["ssim"] = float(ssim(x_t, r_t))
                row["nrmse"] = float(nrmse(x_t, r_t))
            else:
                notes.append(f"reference shape {ref.shape} differs from the result's "
                             f"{run.result.shape}")
        y = run.measurement
        if measurement is not None and np.ndim(measurement) == np.ndim(run.result):
            y = np.asarray(measurement)
        if y is None:
            notes.append("measurement layer not found (residual needs it)")
        else:
            try:
                op = run_operator(run.meta)
                if tuple(y.shape) != tuple(op.measurement_shape):
                    raise InputError(f"measurement shape {y.shape} is not the operator's "
                                     f"{tuple(op.measurement_shape)}")
                with torch.no_grad():
                    row["residual"] = float(residual(op, _image_tensor(run.result, op),
                                                     _measurement_tensor(y, op)))
            except InputError as err:
                notes.append(str(err))
        row["note"] = "; ".join(notes)
        rows.append(row)
    return rows


# ----------------------------------------------------------------------------- maps
def _need(value: Any, what: str, kind: str) -> np.ndarray:
    if value is None:
        raise InputError(f"the {kind!r} map needs {what}; choose it in the Compare widget "
                         "(or pass it) first")
    return np.asarray(value)


_NEEDS = {
    NULL_SPACE: "a reference (ground-truth) image",
    ERROR: "a reference (ground-truth) image",
    NULL_DIFFERENCE: "a reference result to compare with",
}


def check_map_inputs(kind: str, result: np.ndarray, reference: np.ndarray | None = None,
                     measurement: np.ndarray | None = None) -> None:
    """Cheap checks of :func:`hallucination_map`'s inputs (no operator is built).

    Raises
    ------
    InputError
        Unknown kind, result not 2-D, a needed reference or measurement missing, or a reference
        whose shape differs from the result's.
    """
    if kind not in MAP_KINDS:
        raise InputError(f"unknown map kind {kind!r}; choose one of {', '.join(MAP_KINDS)}")
    x = np.asarray(result)
    if x.ndim != 2:
        raise InputError(f"the result must be a 2-D image, got shape {x.shape}")
    if kind == MEASUREMENT_SPACE:
        _need(measurement, "the run's measurement (no layer holding it was found)", kind)
        return
    ref = _need(reference, _NEEDS[kind], kind)
    if ref.shape != x.shape:
        raise InputError(f"the reference has shape {ref.shape} but the result is {x.shape}; "
                         "pick a reference layer of the result's size")


def hallucination_map(kind: str, run_layer_meta: dict, result: np.ndarray,
                      reference: np.ndarray | None = None,
                      measurement: np.ndarray | None = None) -> np.ndarray:
    r"""A trust map of ``result`` (see the module docstring for the four kinds).

    Parameters
    ----------
    kind
        One of :data:`MAP_KINDS`.
    run_layer_meta
        The result layer's metadata (or its ``["invrec"]`` dict): the operator is rebuilt
        from its provenance.
    result
        The result image :math:`\hat x` (complex for complex operators).
    reference
        Ground truth :math:`x_\mathrm{true}` (null-space, error maps) or the other result
        :math:`x_\mathrm{ref}` (null-space difference).
    measurement
        The run's measurement :math:`y` (measurement-space map).

    Returns
    -------
    numpy.ndarray
        2-D float32 map; signed for real images, the modulus for complex ones.

    Raises
    ------
    InputError
        Unknown kind, a needed input missing, or shapes that differ.
    """
    from ..core.analysis import hallucination as hal

    check_map_inputs(kind, result, reference, measurement)
    x = np.asarray(result)
    if kind == ERROR:
        out = hal.error_map(_real_tensor(x), _real_tensor(np.asarray(reference)))
        return _plane(out).astype(np.float32)
    op = run_operator(run_layer_meta)
    if x.shape != tuple(op.shape):
        raise InputError(f"the result has shape {x.shape} but its operator expects {op.shape}")
    x_t = _image_tensor(x, op)
    with torch.no_grad():
        if kind == MEASUREMENT_SPACE:
            y = np.asarray(measurement)
            if tuple(y.shape) != tuple(op.measurement_shape):
                raise InputError(f"the measurement has shape {y.shape} but the operator "
                                 f"expects {tuple(op.measurement_shape)}")
            out = hal.measurement_space_map(op, x_t, _measurement_tensor(y, op))
        elif kind == NULL_SPACE:
            out = hal.null_space_map(op, x_t, _image_tensor(np.asarray(reference), op))
        else:
            out = hal.null_space_difference(op, x_t, _image_tensor(np.asarray(reference), op))
    plane = _plane(out)
    return (np.abs(plane) if np.iscomplexobj(plane) else plane).astype(np.float32)


def map_layer(kind: str, run_name: str, data: np.ndarray, *,
              reference_name: str | None = None, scale: Any = None) -> tuple:
    """Layer tuple ``"<run> [<kind>]"`` for a map from :func:`hallucination_map`.

    Signed maps get the diverging ``"PiYG"`` colormap with contrast limits symmetric about 0;
    non-negative maps (error, complex moduli) get ``"magma"`` from 0.
    """
    data = np.asarray(data, dtype=np.float32)
    peak = float(np.max(np.abs(data))) if data.size else 0.0
    peak = peak if peak > 0 else 1.0
    signed = bool(data.size) and float(data.min()) < 0
    kwargs: dict[str, Any] = {
        "name": f"{run_name} [{kind}]",
        "colormap": "PiYG" if signed else "magma",
        "contrast_limits": (-peak, peak) if signed else (0.0, peak),
        "metadata": {META_KEY: {"kind": "hallucination", "map": kind, "run": run_name,
                                "reference": reference_name, "signed": signed,
                                "description": _MAP_DOC[kind]}},
    }
    if scale is not None:
        kwargs["scale"] = scale
    return (data, kwargs, "image")
