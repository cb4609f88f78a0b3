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

Weights a user trains (``napari-invrec train --register``, the Train widget) go to a second,
writable manifest in :func:`user_weights_dir` (``$NAPARI_INVREC_WEIGHTS`` or
``~/.napari-invrec/weights``). :func:`read_manifest` without a path merges both, shipped
entries first; a user entry may not reuse a shipped name. ``task`` says what an entry is for
(``"denoiser"``, ``"end-to-end"``, ``"unrolled"``) and ``operator`` the operator's ``spec()``
(``{"operator": family, "shape", "params", ...}``) a network trained for one operator
configuration expects (:func:`trained_operator` reads the family).
"""

from __future__ import annotations

import hashlib
import json
import os
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
from .unrolled import NeumannNet, UnrolledPGD, VarNet
from .vae import VAE

__all__ = ["ARCHITECTURES", "WEIGHTS_DIR", "WeightsEntry", "read_manifest", "save_model",
           "load_model", "load_model_file", "architecture_name", "sha256_file", "entry_dict",
           "train_hint", "user_weights_dir", "register_weights", "weights_names",
           "trained_operator", "load_operator_network"]

ARCHITECTURES: dict[str, type[nn.Module]] = {"drunet": DRUNet, "dncnn": DnCNN, "unet": UNet,
                                             "mcnn": MCNN, "unrolled-pgd": UnrolledPGD,
                                             "varnet": VarNet, "neumann": NeumannNet,
                                             "vae": VAE}
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
    task: str = "denoiser"
    operator: dict | None = None
    metrics: dict = field(default_factory=dict)


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


def user_weights_dir() -> Path:
    """Folder of user-trained weights and their manifest (``$NAPARI_INVREC_WEIGHTS`` or
    ``~/.napari-invrec/weights``)."""
    env = os.environ.get("NAPARI_INVREC_WEIGHTS")
    return Path(env).expanduser() if env else Path.home() / ".napari-invrec" / "weights"


def _read_one(path: Path) -> dict[str, WeightsEntry]:
    if not path.is_file():
        return {}
    try:
        raw = json.loads(path.read_text())
        entries = [WeightsEntry(**e) for e in raw.get("weights", [])]
    except (ValueError, TypeError, AttributeError) as err:
        raise InputError(f"weights manifest {path} is malformed ({err}); fix or regenerate it "
                         "with `napari-invrec train`") from err
    for e in entries:  # files relative to their own manifest
        e.file = str(path.parent / e.file) if e.file else e.file
    return {e.name: e for e in entries}


def read_manifest(path: str | Path | None = None) -> dict[str, WeightsEntry]:
    """Entries of a manifest by name (``{}`` when the file does not exist); ``file`` is
    resolved against the manifest's folder.

    Without ``path``: the shipped manifest merged with the user manifest
    (:func:`user_weights_dir`); shipped names win.

    Raises
    ------
    InputError
        The manifest is not valid JSON or an entry lacks ``name``/``architecture``.
    """
    if path is not None:
        return _read_one(Path(path))
    user = _read_one(user_weights_dir() / "manifest.json")
    return user | _read_one(WEIGHTS_DIR / "manifest.json")


def trained_operator(entry: WeightsEntry) -> str | None:
    """Operator family a network was trained for (``entry.operator`` is the operator's
    :meth:`~..operators.base.ForwardOperator.spec`), ``None`` for denoisers."""
    spec = entry.operator or {}
    return spec.get("operator") or spec.get("name")


def weights_names(*, task: str | None = None, architectures: tuple[str, ...] | None = None,
                  operator: str | None = None, manifest: str | Path | None = None
                  ) -> tuple[str, ...]:
    """Sorted names of manifest entries with this ``task``, one of ``architectures`` and
    trained for the operator family ``operator`` (each filter optional)."""
    out = []
    for name, e in read_manifest(manifest).items():
        if task is not None and e.task != task:
            continue
        if architectures is not None and e.architecture not in architectures:
            continue
        if operator is not None and trained_operator(e) != operator:
            continue
        out.append(name)
    return tuple(sorted(out))


def register_weights(entry: WeightsEntry, *, manifest: str | Path | None = None) -> Path:
    """Add (or replace) ``entry`` in the user manifest (default in :func:`user_weights_dir`).

    ``entry.file`` is stored relative to the manifest's folder when the file lies inside it.

    Raises
    ------
    InputError
        ``entry.name`` is a shipped network's name.
    """
    mpath = Path(manifest) if manifest is not None else user_weights_dir() / "manifest.json"
    if manifest is None and entry.name in _read_one(WEIGHTS_DIR / "manifest.json"):
        raise InputError(f"{entry.name!r} is a shipped network; pick another name")
    mpath.parent.mkdir(parents=True, exist_ok=True)
    entries = {n: asdict(e) for n, e in _read_one(mpath).items()}
    rec = asdict(entry)
    f = Path(rec["file"])
    if f.is_absolute() and f.parent.resolve() == mpath.parent.resolve():
        rec["file"] = f.name
    entries[entry.name] = rec
    for e in entries.values():
        fe = Path(e["file"])
        if fe.is_absolute() and fe.parent.resolve() == mpath.parent.resolve():
            e["file"] = fe.name
    tmp = mpath.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"weights": list(entries.values())}, indent=2) + "\n")
    tmp.replace(mpath)
    return mpath


def save_model(model: nn.Module, path: str | Path, meta: dict[str, Any] | None = None
               ) -> WeightsEntry:
    """Save ``model`` (architecture, constructor kwargs, weights, ``meta``) to ``path``.

    Returns the manifest entry for the file (name = the file's stem unless ``meta["name"]``,
    other fields from ``meta``, ``file`` the absolute path, ``sha256`` of the written file),
    ready for :func:`register_weights` (which stores ``file`` relative to the manifest when the
    file lies in its folder).
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
                        kwargs=kwargs, file=str(path.resolve()), sha256=sha256_file(path),
                        **extra)


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

    ``manifest`` defaults to the shipped manifest merged with the user one (see
    :func:`read_manifest`).

    Raises
    ------
    InputError
        No such entry, or its file is missing / corrupt / incompatible; the message says how
        to train the weights (``napari-invrec train ...``).
    """
    entries = read_manifest(manifest)
    if name not in entries:
        have = ", ".join(sorted(entries)) or "none installed"
        where = manifest if manifest is not None else f"{WEIGHTS_DIR} and {user_weights_dir()}"
        raise InputError(f"no network weights named {name!r} (manifests in {where}: {have}); "
                         f"{train_hint(name)}")
    entry = entries[name]
    return load_model_file(entry.file, entry=entry, device=device)


def load_operator_network(name: str, *, task: str, architecture: str, operator: str,
                          device: torch.device | str | None = None
                          ) -> tuple[WeightsEntry, nn.Module]:
    """Entry and network ``name`` for a method that runs a network trained for an operator.

    Checks that the entry is a ``task`` network of ``architecture`` trained for the operator
    family ``operator`` (when recorded); a network trained for other parameters of the same
    family still runs.

    Raises
    ------
    InputError
        Missing weights, another task/architecture, or another operator family; every message
        ends with the ``napari-invrec train`` command that makes suitable weights.
    """
    how = (f"train one with `napari-invrec train --task {task} --arch {architecture} "
           f"--operator {operator} --op-params JSON --name NAME` (see `napari-invrec train "
           "--help`)")
    entries = read_manifest()
    if name not in entries:
        have = ", ".join(weights_names(task=task, architectures=(architecture,),
                                       operator=operator)) or "none installed"
        raise InputError(f"no {task} {architecture} weights named {name!r} for {operator!r} "
                         f"(installed: {have}); {how}")
    entry = entries[name]
    if entry.task != task or entry.architecture != architecture:
        raise InputError(f"weights {name!r} hold a {entry.architecture!r} network for the "
                         f"{entry.task!r} task; this method needs {architecture!r} for "
                         f"{task!r}; {how}")
    trained = trained_operator(entry)
    if trained is not None and trained != operator:
        params = (entry.operator or {}).get("params", {})
        raise InputError(f"network {name!r} was trained for the {trained!r} operator "
                         f"({params}), not {operator!r}; pick weights trained for "
                         f"{operator!r} or {how}")
    return entry, load_model_file(entry.file, entry=entry, device=device)


def entry_dict(entry: WeightsEntry) -> dict[str, Any]:
    """JSON-ready dict of a manifest entry."""
    return asdict(entry)
