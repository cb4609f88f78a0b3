"""Provenance: the JSON-serialisable record from which a run can be repeated."""

from __future__ import annotations

import datetime as _dt
import platform
from typing import Any

from .._version import __version__
from ..core.params import array_fingerprint, to_dict


def package_version() -> str:
    """Installed version of napari-invrec."""
    return __version__


def make_provenance(op: Any, method: str, params: Any, *, seed: int, device: str,
                    measurement: Any, timings: dict, metrics: dict,
                    noise: dict | None = None, ground_truth: str | None = None,
                    normalise: dict | None = None) -> dict:
    """Everything needed to re-run a reconstruction, as plain JSON types.

    Parameters
    ----------
    op
        The operator (its :meth:`spec` is stored; array parameters are fingerprinted and kept
        beside the provenance by the caller).
    method, params, seed, device
        What ran and how.
    measurement
        The measurement array (fingerprinted, not stored).
    timings, metrics
        Wall-clock seconds by phase, final metrics.
    noise, ground_truth
        Noise parameters of a simulated measurement and the reference's name, when known.
    normalise
        The run's :class:`~napari_invrec.engine.normalise.Normalisation` record (mode, offset,
        scale): re-running with the same mode on the same data gives the same map.
    """
    import torch

    return {
        "package": "napari-invrec",
        "version": package_version(),
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "operator": op.spec(),
        "method": method,
        "params": to_dict(params),
        "seed": int(seed),
        "device": str(device),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "measurement": array_fingerprint(measurement),
        "noise": noise,
        "ground_truth": ground_truth,
        "normalise": normalise,
        "timings": {k: round(float(v), 6) for k, v in timings.items()},
        "metrics": {k: float(v) for k, v in metrics.items()},
    }
