"""Adding user-trained weights to a manifest: :func:`register_weights`.

A manifest only lists files inside its own folder (see :mod:`.manifest`), so registering a
file from elsewhere copies it (and its ``.json`` training record) into the folder, checked
against its SHA-256; a manifest is rewritten atomically and never over a malformed one.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ..errors import InputError
from .manifest import (
    WEIGHTS_DIR,
    WeightsEntry,
    check_entry,
    error_line,
    read_manifest,
    sha256_file,
    user_weights_dir,
)

__all__ = ["register_weights"]


def _raw_rows(mpath: Path, name: str, src: Path) -> list:
    """Rows of an existing manifest about to be rewritten (refuses to overwrite a malformed
    one)."""
    if not mpath.exists():
        return []
    try:
        rows = json.loads(mpath.read_bytes().decode("utf-8")).get("weights")
    except (OSError, ValueError, AttributeError) as err:
        rows, why = None, error_line(err)
    else:
        why = 'it must be {"weights": [entries]}'
    if not isinstance(rows, list):
        raise InputError(f"weights manifest {mpath} is malformed ({why}); fix it or move it "
                         f"away, then register {name!r} again (the weights file {src} is kept)")
    return rows


def _inside(folder: Path, file: Any) -> Path | None:
    """``folder / file`` resolved when that lies inside ``folder`` (else ``None``)."""
    try:
        real = (folder / file).resolve() if isinstance(file, str) and file else None
    except (OSError, ValueError, RuntimeError):
        return None
    return real if real is not None and real.is_relative_to(folder) else None


def _copy_target(name: str, digest: str, folder: Path, rows: list) -> Path:
    """Where a copy of ``name``'s weights goes in ``folder``: ``<name>.pt`` (made safe), with
    the digest appended when another entry uses that file."""
    stem = (re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "weights")[:100]
    used = {_inside(folder, r.get("file")) for r in rows if isinstance(r, dict)}
    dst = folder / f"{stem}.pt"
    return folder / f"{stem}-{digest[:12]}.pt" if dst.resolve() in used else dst


def _copy_into(src: Path, dst: Path, digest: str, name: str) -> None:
    """Copy ``src`` (checked against ``digest``) and its ``.json`` training record to ``dst``."""
    tmp = dst.with_name(dst.name + ".tmp")
    shutil.copyfile(src, tmp)
    if sha256_file(tmp) != digest:
        tmp.unlink()
        raise InputError(f"weights file {src} for {name!r} changed while it was copied into "
                         f"{dst.parent}; register it again")
    tmp.replace(dst)
    side = Path(str(src) + ".json")
    if side.is_file():
        shutil.copyfile(side, str(dst) + ".json")


def register_weights(entry: WeightsEntry, *, manifest: str | Path | None = None) -> Path:
    """Add (or replace) ``entry`` in the user manifest (default in :func:`user_weights_dir`).

    A manifest only lists files inside its own folder: ``entry.file`` (a path as given, e.g.
    from :func:`save_model`) is stored relative to the manifest's folder when it lies there
    (symlinks resolved), and is otherwise copied into the folder, with its ``.json`` training
    record, as ``<name>.pt``. ``entry.sha256`` is set from the file (when given, it must match
    it). Other entries are kept as they are.

    Returns
    -------
    Path
        The manifest written.

    Raises
    ------
    InputError
        ``entry.name`` is a shipped network's name, the file is missing or changed since it
        was saved, the entry is malformed, or the existing manifest is malformed (it is left
        untouched).
    """
    mpath = Path(manifest) if manifest is not None else user_weights_dir() / "manifest.json"
    if manifest is None and entry.name in read_manifest(WEIGHTS_DIR / "manifest.json"):
        raise InputError(f"{entry.name!r} is a shipped network; pick another name")
    src = Path(entry.file).expanduser()
    if not entry.file or not src.is_file():
        raise InputError(f"weights file {entry.file!r} for {entry.name!r} does not exist; save "
                         "the network first (save_model or `napari-invrec train`)")
    digest = sha256_file(src)
    if entry.sha256 and entry.sha256.lower() != digest:
        raise InputError(f"weights file {src} changed since it was saved for {entry.name!r} "
                         "(its sha256 differs from the entry's); save the network again")
    mpath.parent.mkdir(parents=True, exist_ok=True)
    folder = mpath.parent.resolve()
    rows = _raw_rows(mpath, entry.name, src)
    same = [i for i, r in enumerate(rows) if isinstance(r, dict) and r.get("name") == entry.name]
    at = same[0] if same else len(rows)  # a replaced entry keeps its place
    rows = [r for i, r in enumerate(rows) if i not in same]
    real = src.resolve()
    inside = real.is_relative_to(folder)
    dst = real if inside else _copy_target(entry.name, digest, folder, rows)
    rec = asdict(entry) | {"file": dst.relative_to(folder).as_posix(), "sha256": digest}
    try:
        check_entry(rec, len(rows) + 1, mpath, folder)
    except ValueError as err:
        raise InputError(str(err)) from err
    if not inside:
        _copy_into(src, dst, digest, entry.name)
    for r in rows:  # older entries: an absolute path inside the folder becomes relative
        f = r.get("file") if isinstance(r, dict) else None
        if isinstance(f, str) and Path(f).is_absolute() and _inside(folder, f) is not None:
            r["file"] = _inside(folder, f).relative_to(folder).as_posix()
    tmp = mpath.with_suffix(".json.tmp")
    rows.insert(at, rec)
    tmp.write_text(json.dumps({"weights": rows}, indent=2) + "\n")
    tmp.replace(mpath)
    return mpath
