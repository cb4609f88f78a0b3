"""Files the command line writes: output paths checked before any work, arrays and sidecars.

Every file a run will write (the output, its sidecar ``OUTPUT.json`` and ``OUTPUT.arrays.npz``,
the ``.std`` file, ``--iterates``) must go to an existing, writable folder, not be a
directory, have a supported suffix (complex data needs ``.npy``), and not be a file the run
reads (the input, its sidecar, the reference, array parameters): compared after resolving
symlinks, ``./`` and ``..``, and by inode when both exist. Errors are :class:`CLIError`, one
line that names the file and says what to change.

Sidecars are strict JSON (``allow_nan=False``): a non-finite float (a NaN metric, an infinite
PSNR) is written as ``null``, so any JSON parser reads the file.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .cli_files import WRITE_SUFFIXES, CLIError, sidecar_paths

__all__ = ["check_distinct", "check_output", "plan_outputs", "sidecar_text", "std_path",
           "storable", "write_array", "write_sidecar", "write_sidecar_text"]


def check_output(path: str | Path, what: str = "output", *, complex_data: bool = False,
                 suffixes: tuple[str, ...] = WRITE_SUFFIXES) -> Path:
    """Check that ``path`` can be written, before any work is done.

    Parameters
    ----------
    path
        The file the run will write.
    what
        What the file is, for messages (``"output"``, ``"--iterates"``).
    complex_data
        The data will be complex: only ``.npy`` keeps it.
    suffixes
        The suffixes this file may have.

    Returns
    -------
    pathlib.Path
        ``path`` as a :class:`~pathlib.Path`.

    Raises
    ------
    CLIError
        If the folder is missing, not a folder or not writable, the path is a directory, the
        suffix is not supported, or complex data would go to a non-``.npy`` file.
    """
    p = Path(path)
    folder = p.parent
    if not folder.exists():
        raise CLIError(f"{what} folder {str(folder)!r} does not exist; create it first")
    if not folder.is_dir():
        raise CLIError(f"{what} folder {str(folder)!r} is not a folder")
    if not os.access(folder, os.W_OK):
        raise CLIError(f"{what} folder {str(folder)!r} is not writable")
    if p.is_dir():
        raise CLIError(f"{what} {str(p)!r} is a directory; give a file name inside it")
    suffix = p.suffix.lower()
    if suffix not in suffixes:
        raise CLIError(f"{what} {str(p)!r}: use a {' or '.join(suffixes)} file name")
    if complex_data and suffix != ".npy":
        raise CLIError(f"{what} {str(p)!r}: the data is complex; give a .npy file name to keep "
                       "it (a .tif holds real numbers only)")
    return p


def std_path(output: str | Path) -> Path:
    """The posterior-std image written beside ``output``: ``NAME.std.SUFFIX``."""
    p = Path(output)
    return p.with_suffix(".std" + p.suffix)


def plan_outputs(output: str | Path, *, iterates: str | Path | None = None,
                 std: bool = False, complex_data: bool = False) -> dict[str, Path]:
    """Check every file a run may write, before any work, and return them by role.

    Parameters
    ----------
    output
        The ``--output`` file; its sidecar ``OUTPUT.json`` and ``OUTPUT.arrays.npz`` come
        with it.
    iterates
        The ``--iterates`` file, if any.
    std
        The run may write a posterior std beside the output (:func:`std_path`).
    complex_data
        The output will be complex (a simulated k-space): it needs ``.npy``.

    Returns
    -------
    dict
        Role (``"output"``, ``"output sidecar"``, ``"output sidecar arrays"``, ``"std file"``,
        ``"--iterates"``) -> path, for :func:`check_distinct`.

    Raises
    ------
    CLIError
        As :func:`check_output`.
    """
    out = check_output(output, "output", complex_data=complex_data)
    side, npz = sidecar_paths(out)
    writes = {"output": out, "output sidecar": side, "output sidecar arrays": npz}
    for role, p in (("output sidecar", side), ("output sidecar arrays", npz)):
        if p.is_dir():
            raise CLIError(f"{role} {str(p)!r} is a directory; remove it or choose another "
                           "output name")
    if std:
        writes["std file"] = check_output(std_path(out), "std file (beside the output)")
    if iterates:
        writes["--iterates"] = check_output(iterates, "--iterates")
    return writes


def storable(path: str | Path, a: np.ndarray) -> np.ndarray:
    """``a`` as ``path`` can hold it: a complex image keeps its phase in ``.npy``, a ``.tif``
    gets its magnitude."""
    return np.abs(a) if np.iscomplexobj(a) and Path(path).suffix.lower() != ".npy" else a


def _resolved(p: Path) -> Path:
    try:
        return p.resolve()
    except (OSError, RuntimeError):  # a symlink loop: compare the spelling made absolute
        return Path(os.path.abspath(p))


def _same_file(a: Path, b: Path) -> bool:
    if _resolved(a) == _resolved(b):
        return True
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def check_distinct(writes: Mapping[str, str | Path], reads: Mapping[str, str | Path]) -> None:
    """Refuse a run that would write over a file it reads, or write one file twice.

    Files are compared after resolving symbolic links and ``.``/``..`` (and by inode when
    both exist, which catches hard links).

    Parameters
    ----------
    writes
        What the run writes: description -> path.
    reads
        What the run reads (input, its sidecar, reference, array files): description -> path.

    Raises
    ------
    CLIError
        Naming the two clashing roles.
    """
    wlist = [(k, Path(v)) for k, v in writes.items()]
    rlist = [(k, Path(v)) for k, v in reads.items()]
    for wname, w in wlist:
        for rname, r in rlist:
            if _same_file(w, r):
                raise CLIError(f"{wname} {str(w)!r} would overwrite the {rname} "
                               f"{str(r)!r}; choose another output name")
    for i, (aname, a) in enumerate(wlist):
        for bname, b in wlist[i + 1:]:
            if _same_file(a, b):
                raise CLIError(f"{aname} {str(a)!r} and {bname} {str(b)!r} are the same "
                               "file; choose different names")


# ---------------------------------------------------------------- writing
def write_array(path: str | Path, a: np.ndarray, what: str = "output") -> None:
    """Write ``a`` as ``.npy`` (any numeric dtype) or ``.tif`` (real, as float32).

    Raises
    ------
    CLIError
        If :func:`check_output` refuses the path (complex data needs ``.npy``) or the
        system cannot write the file (disk full, permissions).
    """
    p = check_output(path, what, complex_data=bool(np.iscomplexobj(a)))
    try:
        if p.suffix.lower() == ".npy":
            np.save(p, a, allow_pickle=False)
        else:
            import tifffile

            tifffile.imwrite(p, np.asarray(a, dtype=np.float32))
    except OSError as e:
        raise CLIError(f"cannot write {what} {str(p)!r}: {e.strerror or e}") from e


def _finite(o: Any) -> Any:
    """``o`` with numpy values made plain and non-finite floats made ``None``."""
    if isinstance(o, Mapping):
        return {str(k): _finite(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_finite(v) for v in o]
    if isinstance(o, np.ndarray):
        return _finite(o.tolist())
    if isinstance(o, np.generic):
        return _finite(o.item())
    if isinstance(o, float) and not math.isfinite(o):
        return None
    return o


def sidecar_text(record: dict) -> str:
    """``record`` as strict JSON text: non-finite floats become ``null``.

    Raises
    ------
    TypeError
        If the record holds a value JSON cannot represent (a bug in whoever built it).
    """
    return json.dumps(_finite(record), indent=2, allow_nan=False)


def write_sidecar_text(output: str | Path, text: str, arrays: dict | None = None) -> Path:
    """Write the JSON ``text`` to ``OUTPUT.json`` and ``arrays`` to ``OUTPUT.arrays.npz``.

    Without ``arrays`` an ``OUTPUT.arrays.npz`` left by an earlier run is removed: the pair
    is read together, so a stale archive would supply arrays the new record does not name.

    Returns
    -------
    pathlib.Path
        The ``.json`` path.
    """
    side, npz = sidecar_paths(output)
    try:
        side.write_text(text, encoding="utf-8")
        if arrays:
            np.savez(npz, **{k: np.asarray(v) for k, v in arrays.items()})
        elif npz.is_file():
            npz.unlink()
    except OSError as e:
        raise CLIError(f"cannot write sidecar {str(side)!r}: {e.strerror or e}") from e
    return side


def write_sidecar(output: str | Path, record: dict, arrays: dict | None = None) -> Path:
    """Write ``OUTPUT.json`` (strict JSON, see :func:`sidecar_text`) and, for array
    parameters, ``OUTPUT.arrays.npz``.

    Returns
    -------
    pathlib.Path
        The ``.json`` path.
    """
    return write_sidecar_text(output, sidecar_text(record), arrays)
