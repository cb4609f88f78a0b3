r"""Shipped network weights: the manifest, :func:`save_model` and :func:`load_model`.

Weights live in ``napari_invrec/models/weights/`` next to a ``manifest.json``::

    {"weights": [
      {"name": "drunet-natural", "architecture": "drunet",
       "kwargs": {"in_channels": 1, "width": 16, "scales": 4, "blocks": 2},
       "file": "drunet-natural.pt",
       "train_command": "napari-invrec train drunet-natural ...",
       "seed": 0, "data": "what it was trained on", "figures": ["validation.png"],
       "sha256": "<hex digest of the file>", "description": "one line"}
    ]}

A weights file is a ``torch.save`` dict ``{"architecture", "kwargs", "state_dict", "meta"}``
(loadable with ``weights_only=True``). Nothing is ever downloaded: a missing file is an
:class:`~..errors.InputError` that says how to train it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import InputError
from .dncnn import DnCNN
from .drunet import DRUNet
from .mcnn import MCNN
from .unet import UNet

__all__ = ["ARCHITECTURES", "WEIGHTS_DIR", "WeightsEntry", "read_manifest", "save_model",
           "load_model", "load_model_file", "architecture_name", "sha256_file", "entry_dict",
           "train_hint"]

ARCHITECTURES: dict[str, type[nn.Module]] = {"drunet": DRUNet, "dncnn": DnCNN, "unet": UNet,
                                             "mcnn": MCNN}
WEIGHTS_DIR = Path(__file__).resolve().parents[2] / "models" / "weights"


@dataclass
class WeightsEntry:
    """One manifest entry (see the module docstring for the JSON layout)."""

    name: str
    architecture: str
    kwargs: dict = field(default_factory=dict)
    file: str = ""
    train_command: str = ""
    seed: int | None = None
    data: str = ""
    figures: list = field(default_factory=list)
    sha256: str = ""
    description: str = ""


def train_hint(name: str) -> str:
    """The sentence every missing-weights error ends with."""
    return (f"train them with `napari-invrec train {name}` (see `napari-invrec train --help`) "
            "and add the result to the weights manifest, or pick a classical denoiser "
            "('tv', 'gaussian')")


def architecture_name(model: nn.Module) -> str:
    """Registry key of ``model``'s class (``"drunet"``...)."""
    for key, cls in ARCHITECTURES.items():
        if type(model) is cls:
            return key
    raise InputError(f"{type(model).__name__} is not a registered architecture; use one of "
                     f"{', '.join(ARCHITECTURES)}")


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 digest of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_manifest(path: str | Path | None = None) -> dict[str, WeightsEntry]:
    """Entries of a manifest by name (``{}`` when the file does not exist).

    Raises
    ------
    InputError
        The manifest is not valid JSON or an entry lacks ``name``/``architecture``.
    """
    path = Path(path) if path is not None else WEIGHTS_DIR / "manifest.json"
    if not path.is_file():
        return {}
    try:
        raw = json.loads(path.read_text())
        entries = [WeightsEntry(**e) for e in raw.get("weights", [])]
    except (ValueError, TypeError, AttributeError) as err:
        raise InputError(f"weights manifest {path} is malformed ({err}); fix or regenerate it "
                         "with `napari-invrec train`") from err
    return {e.name: e for e in entries}


def save_model(model: nn.Module, path: str | Path, meta: dict[str, Any] | None = None
               ) -> WeightsEntry:
    """Save ``model`` (architecture, constructor kwargs, weights, ``meta``) to ``path``.

    Returns the manifest entry for the file (name = the file's stem unless ``meta["name"]``,
    other fields from ``meta``, ``sha256`` of the written file) to append to a manifest.
    """
    path = Path(path)
    meta = dict(meta or {})
    arch = architecture_name(model)
    kwargs = dict(getattr(model, "config", {}))
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"architecture": arch, "kwargs": kwargs, "state_dict": state,
                "meta": json.loads(json.dumps(meta, default=str))}, path)
    known = set(WeightsEntry.__dataclass_fields__) - {"name", "architecture", "kwargs", "file",
                                                      "sha256"}
    extra = {k: v for k, v in meta.items() if k in known}
    return WeightsEntry(name=str(meta.get("name", path.stem)), architecture=arch,
                        kwargs=kwargs, file=path.name, sha256=sha256_file(path), **extra)


def load_model_file(path: str | Path, *, entry: WeightsEntry | None = None,
                    device: torch.device | str | None = None) -> nn.Module:
    """Build the network saved in ``path`` and load its weights (eval mode).

    Raises
    ------
    InputError
        The file is missing, unreadable, of an unknown architecture, or its weights do not
        fit the architecture; the message says how to (re)train it.
    """
    path = Path(path)
    name = entry.name if entry is not None else path.stem
    hint = (f"; {entry.train_command}" if entry is not None and entry.train_command else "")
    if not path.is_file():
        raise InputError(f"weights file {path} for {name!r} is missing; "
                         f"{train_hint(name)}{hint}")
    if entry is not None and entry.sha256 and sha256_file(path) != entry.sha256:
        raise InputError(f"weights file {path} does not match the manifest's sha256 for "
                         f"{name!r} (corrupt or replaced); {train_hint(name)}{hint}")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        arch = entry.architecture if entry is not None else blob["architecture"]
        kwargs = dict(blob.get("kwargs", {}))
        if entry is not None and entry.kwargs:
            kwargs.update(entry.kwargs)
        if arch not in ARCHITECTURES:
            raise InputError(f"unknown architecture {arch!r} in {path}; known: "
                             f"{', '.join(ARCHITECTURES)}")
        model = ARCHITECTURES[arch](**kwargs)
        model.load_state_dict(blob["state_dict"])
    except InputError:
        raise
    except Exception as err:  # noqa: BLE001 - any failure here means incompatible weights
        why = " ".join(str(err).split())[:200]
        raise InputError(f"weights file {path} for {name!r} is incompatible with this version "
                         f"({type(err).__name__}: {why}); "
                         f"{train_hint(name)}{hint}") from err
    model.eval()
    return model.to(device) if device is not None else model


def load_model(name: str, *, manifest: str | Path | None = None,
               device: torch.device | str | None = None) -> nn.Module:
    """Load the shipped network ``name`` from the manifest (eval mode, on ``device``).

    ``manifest`` defaults to ``napari_invrec/models/weights/manifest.json``; the entry's
    ``file`` is relative to the manifest's folder.

    Raises
    ------
    InputError
        No such entry, or its file is missing / corrupt / incompatible; the message says how
        to train the weights (``napari-invrec train ...``).
    """
    mpath = Path(manifest) if manifest is not None else WEIGHTS_DIR / "manifest.json"
    entries = read_manifest(mpath)
    if name not in entries:
        have = ", ".join(sorted(entries)) or "none installed"
        raise InputError(f"no network weights named {name!r} (manifest {mpath}: {have}); "
                         f"{train_hint(name)}")
    entry = entries[name]
    return load_model_file(mpath.parent / entry.file, entry=entry, device=device)


def entry_dict(entry: WeightsEntry) -> dict[str, Any]:
    """JSON-ready dict of a manifest entry."""
    return asdict(entry)
