r"""Weights manifests: :class:`WeightsEntry`, reading, checking and merging them, their problems.

Weights live in ``napari_invrec/models/weights/`` next to a ``manifest.json``::

    {"weights": [
      {"name": "drunet-natural", "architecture": "drunet",
       "kwargs": {"in_channels": 1, "width": 16, "scales": 4, "blocks": 2},
       "file": "drunet-natural.pt",
       "train_command": "napari-invrec train drunet-natural ...",
       "seed": 0, "data": "what it was trained on", "figures": ["validation.png"],
       "sha256": "<hex digest of the file>", "description": "one line"}
    ]}

Weights a user trains go to a second, writable manifest in :func:`user_weights_dir`
(``$NAPARI_INVREC_WEIGHTS`` or ``~/.napari-invrec/weights``; written by
:func:`~.registration.register_weights`). :func:`read_manifest` without a path merges both,
shipped entries first; a user entry may not reuse a shipped name. ``task`` says what an entry
is for (``"denoiser"``, ``"end-to-end"``, ``"unrolled"``, ``"vae"``) and ``operator`` the
operator's ``spec()`` (``{"operator": family, "shape", "params", ...}``) a network trained for
one operator configuration expects (:func:`trained_operator` reads the family).

A manifest is not trusted (a user can edit it, or receive one), so an entry is left out, not
raised, when its ``file`` does not resolve (symlinks included) inside its own manifest's
folder, when it lacks a 64-hex ``sha256``, or when it is otherwise malformed; so is a
malformed manifest. The shipped networks stay usable, and :func:`manifest_problems` (also
quoted by :func:`find_entry`'s "no ... weights named" errors) says what to fix.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InputError
from .architectures import ARCHITECTURES

__all__ = ["WEIGHTS_DIR", "WeightsEntry", "entry_dict", "train_hint", "sha256_file",
           "user_weights_dir", "read_manifest", "manifest_problems", "trained_operator",
           "weights_names", "find_entry", "valid_sha256", "check_entry", "error_line",
           "REREGISTER"]

WEIGHTS_DIR = Path(__file__).resolve().parents[2] / "models" / "weights"

#: how to replace a refused entry (ends messages about entries)
REREGISTER = ("re-register it (`napari-invrec train ... --register`, or register_weights() "
              "on the output of save_model())")


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
    #: how it was trained when that differs from its task: ``"noise2self"`` for a denoiser
    #: trained self-supervised on noisy data (blind-spot), else empty
    training: str = ""


def entry_dict(entry: WeightsEntry) -> dict[str, Any]:
    """JSON-ready dict of a manifest entry."""
    return asdict(entry)


def train_hint(name: str) -> str:
    """The sentence every missing-weights error ends with."""
    return (f"train them with `napari-invrec train {name}` (see `napari-invrec train --help`) "
            "and add the result to the weights manifest, or pick a classical denoiser "
            "('tv', 'gaussian')")


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 digest of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def valid_sha256(digest: Any) -> bool:
    """Whether ``digest`` is a SHA-256 as a manifest stores it (64 lowercase hex digits)."""
    return isinstance(digest, str) and re.fullmatch(r"[0-9a-f]{64}", digest) is not None


def user_weights_dir() -> Path:
    """Folder of user-trained weights and their manifest (``$NAPARI_INVREC_WEIGHTS`` or
    ``~/.napari-invrec/weights``)."""
    env = os.environ.get("NAPARI_INVREC_WEIGHTS")
    return Path(env).expanduser() if env else Path.home() / ".napari-invrec" / "weights"


def error_line(err: BaseException) -> str:
    """``err``'s message on one line of at most 200 characters (its type when empty)."""
    return " ".join(str(err).split())[:200] or type(err).__name__


# ---------------------------------------------------------------- checking one manifest
_FIELDS: dict[str, tuple[type, ...]] = {
    "name": (str,), "architecture": (str,), "kwargs": (dict,), "file": (str,),
    "train_command": (str,), "seed": (int, type(None)), "data": (str,), "figures": (list,),
    "sha256": (str,), "description": (str,), "task": (str,), "operator": (dict, type(None)),
    "metrics": (dict,), "training": (str,)}


@dataclass
class _Scan:
    """What reading one manifest found: usable entries, problems, refused entries by name."""

    entries: dict[str, WeightsEntry] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)


def check_entry(item: Any, index: int, path: Path, folder: Path) -> WeightsEntry:
    """The entry of row ``index`` of the manifest ``path``, its ``file`` resolved.

    Raises
    ------
    ValueError
        Why the row is refused (not an object, unknown or mistyped fields, unknown
        architecture, no valid sha256, a ``file`` outside ``folder``), saying what to change.
    """
    if not isinstance(item, dict):
        raise ValueError(f"entry {index} of weights manifest {path} is not an object; remove it "
                         "or re-register the weights it stood for")
    name = item.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"entry {index} of weights manifest {path} has no 'name'; add one or "
                         "remove the entry")
    where = f"weights entry {name!r} in {path}"
    unknown = sorted(set(item) - set(_FIELDS))
    if unknown:
        raise ValueError(f"{where} has unknown field(s) {', '.join(map(repr, unknown))}; remove "
                         f"them (known fields: {', '.join(_FIELDS)})")
    for key, types in _FIELDS.items():
        value = item.get(key)
        if key in item and (not isinstance(value, types) or isinstance(value, bool)
                            and key == "seed"):
            want = " or ".join("null" if t is type(None) else t.__name__ for t in types)
            raise ValueError(f"{where}: field {key!r} must be {want}, not "
                             f"{type(value).__name__}; fix it or {REREGISTER}")
    if item.get("architecture") not in ARCHITECTURES:
        raise ValueError(f"{where} has architecture {item.get('architecture')!r}; use one of "
                         f"{', '.join(ARCHITECTURES)}")
    if not valid_sha256(item.get("sha256", "")):
        raise ValueError(f"{where} has no valid sha256 (64 lowercase hex digits), so its weights "
                         f"cannot be checked; {REREGISTER}")
    file = item.get("file", "")
    if not file:
        raise ValueError(f"{where} has no 'file'; set it to the weights file's name in {folder}")
    try:
        real = (path.parent / file).resolve()
    except (OSError, ValueError, RuntimeError) as err:  # NUL byte, symlink loop
        raise ValueError(f"{where} has an unusable 'file' {file[:60]!r} ({error_line(err)}); "
                         f"set it to the weights file's name in {folder}") from err
    if not real.is_relative_to(folder):
        raise ValueError(f"{where} points outside its folder ({file[:60]!r} resolves to "
                         f"{str(real)[:120]!r}); move "
                         f"the weights file into {folder} and set 'file' to its name there, or "
                         f"{REREGISTER}")
    return WeightsEntry(**(item | {"file": str(real)}))


def _scan(path: Path) -> _Scan:
    """Read one manifest; a malformed file or entry becomes a problem, never an exception."""
    scan = _Scan()
    if not path.exists():
        return scan
    try:
        raw = json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, ValueError) as err:  # unreadable, not UTF-8, not JSON
        scan.problems.append(f"weights manifest {path} is malformed ({error_line(err)}); fix "
                             "it, or move it away and register the weights again")
        return scan
    rows = raw.get("weights") if isinstance(raw, dict) else None
    if not isinstance(rows, list):
        scan.problems.append(f"weights manifest {path} is malformed (it must be "
                             '{"weights": [entries]}); fix it, or move it away and register the '
                             "weights again")
        return scan
    folder = path.parent.resolve()
    for index, item in enumerate(rows, start=1):
        try:
            entry = check_entry(item, index, path, folder)
        except ValueError as err:
            scan.problems.append(str(err))
            name = item.get("name") if isinstance(item, dict) else None
            if isinstance(name, str) and name not in scan.entries:
                scan.refused[name] = str(err)
            continue
        if entry.name in scan.entries:
            scan.problems.append(f"weights entry {entry.name!r} appears twice in {path}; the "
                                 "later one is used; remove the other")
        scan.entries[entry.name] = entry
        scan.refused.pop(entry.name, None)
    return scan


# ---------------------------------------------------------------- the merged manifests
def _scans(manifest: str | Path | None) -> list[_Scan]:
    """``[that manifest]``, or ``[shipped, user]`` (user names shadowed by shipped ones
    dropped, with a problem)."""
    if manifest is not None:
        return [_scan(Path(manifest))]
    shipped = _scan(WEIGHTS_DIR / "manifest.json")
    user_path = user_weights_dir() / "manifest.json"
    user = _scan(user_path)
    for name in sorted(set(user.entries) & set(shipped.entries)):
        user.problems.append(f"weights entry {name!r} in {user_path} reuses a shipped network's "
                             "name and is ignored; rename it (register it under another name)")
        del user.entries[name]
    return [shipped, user]


def _merged(scans: list[_Scan]) -> dict[str, WeightsEntry]:
    out: dict[str, WeightsEntry] = {}
    for scan in reversed(scans):  # user entries first, as before; shipped names win
        out |= scan.entries
    return out


def read_manifest(path: str | Path | None = None) -> dict[str, WeightsEntry]:
    """Usable entries of a manifest by name (``{}`` when the file does not exist); ``file`` is
    resolved against the manifest's folder.

    Without ``path``: the shipped manifest merged with the user manifest
    (:func:`user_weights_dir`); shipped names win. A malformed manifest or entry never raises
    here: it is left out and reported by :func:`manifest_problems` (an entry whose file lies
    outside its manifest's folder, or that lacks a valid ``sha256``, counts as malformed).
    """
    return _merged(_scans(path))


def manifest_problems(path: str | Path | None = None) -> tuple[str, ...]:
    """One-line descriptions (each saying what to change) of what :func:`read_manifest` left
    out: malformed manifests, refused entries, user entries shadowed by shipped names.

    Parameters
    ----------
    path
        A manifest; default the shipped and the user manifest.
    """
    return tuple(p for scan in _scans(path) for p in scan.problems)


def trained_operator(entry: WeightsEntry) -> str | None:
    """Operator family a network was trained for (``entry.operator`` is the operator's
    :meth:`~..operators.base.ForwardOperator.spec`), ``None`` for denoisers."""
    spec = entry.operator or {}
    return spec.get("operator") or spec.get("name")


def _selected(entries: dict[str, WeightsEntry], task: str | None,
              architectures: tuple[str, ...] | None, operator: str | None) -> tuple[str, ...]:
    """Sorted names of ``entries`` that pass the filters of :func:`weights_names`."""
    return tuple(sorted(
        name for name, e in entries.items()
        if (task is None or e.task == task)
        and (architectures is None or e.architecture in architectures)
        and (operator is None or trained_operator(e) == operator)))


def weights_names(*, task: str | None = None, architectures: tuple[str, ...] | None = None,
                  operator: str | None = None, manifest: str | Path | None = None
                  ) -> tuple[str, ...]:
    """Sorted names of manifest entries with this ``task``, one of ``architectures`` and
    trained for the operator family ``operator`` (each filter optional)."""
    return _selected(read_manifest(manifest), task, architectures, operator)


def find_entry(name: str, *, manifest: str | Path | None = None, task: str | None = None,
               architectures: tuple[str, ...] | None = None, operator: str | None = None,
               how: str | None = None) -> WeightsEntry:
    """The usable manifest entry ``name``, or the error that explains why there is none.

    Parameters
    ----------
    name
        The weights' name.
    manifest
        A manifest; default the shipped and the user manifest (see :func:`read_manifest`).
    task, architectures, operator
        What the caller needs: the error lists the installed weights that
        :func:`weights_names` selects with these filters. The entry found is not filtered
        (the caller checks what it holds).
    how
        How to make suitable weights, ending the error; default :func:`train_hint`.

    Raises
    ------
    InputError
        No usable entry ``name``: the entry's own refusal (when the manifest holds a
        malformed entry of that name), else "no ... weights named", listing the installed
        ones and quoting :func:`manifest_problems`.
    """
    scans = _scans(manifest)
    entries = _merged(scans)
    if name in entries:
        return entries[name]
    for scan in scans:
        if name in scan.refused:
            raise InputError(f"{scan.refused[name]}; or {how}" if how else scan.refused[name])
    problems = [p for scan in scans for p in scan.problems]
    more = f" (and {len(problems) - 1} more: see manifest_problems())" \
        if len(problems) > 1 else ""
    note = f"; note: {problems[0]}{more}" if problems else ""
    kind = " ".join(dict.fromkeys(filter(None, (task, *(architectures or ()))))) or "network"
    for_op = f" for {operator!r}" if operator is not None else ""
    have = ", ".join(_selected(entries, task, architectures, operator)) or "none installed"
    where = manifest if manifest is not None else f"{WEIGHTS_DIR} and {user_weights_dir()}"
    raise InputError(f"no {kind} weights named {name!r}{for_op} (manifests in {where}: "
                     f"{have}); {how or train_hint(name)}{note}")
