r"""Network weights: :func:`save_model`, :func:`load_model` and friends (no downloads).

A weights file is a ``torch.save`` dict ``{"architecture", "kwargs", "state_dict", "meta"}``
(loadable with ``weights_only=True``). :func:`load_model` finds a name in the manifests
(:mod:`.manifest`), checks the file against the entry's ``sha256`` before
``torch.load(weights_only=True)`` and the kwargs with
:func:`~.arch_check.check_architecture_kwargs` before the network is built. Nothing is ever
downloaded: a missing file is an :class:`~..errors.InputError` that says how to train it.

This module is also the registry's front: its ``__all__`` re-exports what callers use from
:mod:`.architectures`, :mod:`.manifest`, :mod:`.registration` and :mod:`.arch_check`
(``from napari_invrec.core.models.registry import read_manifest`` works).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import InputError
from .arch_check import MAX_PARAMETERS, MAX_TENSORS, check_architecture_kwargs
from .architectures import ARCHITECTURES, architecture_name
from .manifest import (
    REREGISTER,
    WEIGHTS_DIR,
    WeightsEntry,
    entry_dict,
    error_line,
    find_entry,
    manifest_problems,
    read_manifest,
    sha256_file,
    train_hint,
    trained_operator,
    user_weights_dir,
    valid_sha256,
    weights_names,
)
from .registration import register_weights

__all__ = ["ARCHITECTURES", "WEIGHTS_DIR", "WeightsEntry", "read_manifest", "save_model",
           "load_model", "load_model_file", "architecture_name", "sha256_file", "entry_dict",
           "train_hint", "user_weights_dir", "register_weights", "weights_names",
           "trained_operator", "load_operator_network", "manifest_problems", "find_entry",
           "check_architecture_kwargs", "MAX_PARAMETERS", "MAX_TENSORS"]


def save_model(model: nn.Module, path: str | Path, meta: dict[str, Any] | None = None
               ) -> WeightsEntry:
    """Save ``model`` (architecture, constructor kwargs, weights, ``meta``) to ``path``.

    Returns the manifest entry for the file (name = the file's stem unless ``meta["name"]``,
    other fields from ``meta``, ``file`` the absolute path, ``sha256`` of the written file),
    ready for :func:`register_weights` (which stores ``file`` relative to the manifest when the
    file lies in its folder and copies it there otherwise).
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

    With ``entry`` (a manifest entry), the file must match ``entry.sha256``, hashed from the
    same open file that ``torch.load(weights_only=True)`` then reads; ``entry.kwargs`` override
    the file's. The kwargs are checked by :func:`check_architecture_kwargs` before the network
    is built.

    Raises
    ------
    InputError
        The file is missing, unreadable, does not match the entry's sha256 (or the entry has
        none), has an unknown architecture or unusable kwargs, or its weights do not fit the
        architecture; the message says how to (re)train it.
    """
    path = Path(path)
    name = entry.name if entry is not None else path.stem
    hint = (f"; {entry.train_command}" if entry is not None and entry.train_command else "")
    if entry is not None and not valid_sha256(entry.sha256):
        raise InputError(f"weights entry {name!r} has no valid sha256 (64 lowercase hex "
                         f"digits), so {path} cannot be checked; {REREGISTER}")
    if not path.is_file():
        raise InputError(f"weights file {path} for {name!r} is missing; "
                         f"{train_hint(name)}{hint}")
    try:
        with open(path, "rb") as fh:
            if entry is not None:
                digest = hashlib.sha256()
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(chunk)
                if digest.hexdigest() != entry.sha256:
                    raise InputError(f"weights file {path} does not match the manifest's sha256 "
                                     f"for {name!r} (corrupt or replaced); "
                                     f"{train_hint(name)}{hint}")
                fh.seek(0)
            blob = torch.load(fh, map_location="cpu", weights_only=True)
        arch = entry.architecture if entry is not None else blob["architecture"]
        kwargs = dict(blob.get("kwargs", {}))
        if entry is not None and entry.kwargs:
            kwargs.update(entry.kwargs)
        if arch not in ARCHITECTURES:
            raise InputError(f"unknown architecture {arch!r} in {path}; known: "
                             f"{', '.join(ARCHITECTURES)}")
        check_architecture_kwargs(arch, kwargs, name=name)
        model = ARCHITECTURES[arch](**kwargs)
        model.load_state_dict(blob["state_dict"])
    except InputError:
        raise
    except Exception as err:  # noqa: BLE001 - any failure here means incompatible weights
        raise InputError(f"weights file {path} for {name!r} is incompatible with this version "
                         f"({type(err).__name__}: {error_line(err)}); "
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
        No such entry (the message gives the entry's own refusal, or notes the manifests'
        problems: :func:`find_entry`), or its file is missing / corrupt / incompatible; the
        message says how to train the weights (``napari-invrec train ...``).
    """
    entry = find_entry(name, manifest=manifest)
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
        Missing or refused weights (:func:`find_entry`), another task/architecture, or another
        operator family; every message names the ``napari-invrec train`` command that makes
        suitable weights.
    """
    how = (f"train one with `napari-invrec train --task {task} --arch {architecture} "
           f"--operator {operator} --op-params JSON --name NAME` (see `napari-invrec train "
           "--help`)")
    entry = find_entry(name, task=task, architectures=(architecture,), operator=operator,
                       how=how)
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
