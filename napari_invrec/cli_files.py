"""Files of the command line: reading arrays and sidecars, checking and writing outputs.

Shared by :mod:`napari_invrec.cli` and :mod:`napari_invrec.cli_train` (neither imports the
other's internals through here). Everything a user can get wrong about a file raises
:class:`CLIError` with one line that names the file and says what to change:

- inputs are read with ``allow_pickle=False`` and must hold a numeric array;
- a sidecar ``INPUT.json`` must be a JSON object whose ``operator`` entry, when present, is an
  object with a string ``operator``, a ``shape`` of positive integers and a ``params`` object;
  its ``INPUT.arrays.npz`` must be a plain numpy archive of numeric arrays;
- every file a run will write is checked before any work (folder exists, is not a directory,
  suffix supported, complex data in ``.npy``) and must not be a file the run reads.

Sidecars are strict JSON (``allow_nan=False``): a non-finite float (a NaN metric, an infinite
PSNR) is written as ``null``, so any JSON parser reads the file.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["CLIError", "check_distinct", "check_output", "converting", "plan_outputs",
           "read_array", "read_sidecar", "sidecar_paths", "sidecar_text", "std_path", "storable",
           "write_array", "write_sidecar", "write_sidecar_text"]

READ_SUFFIXES = (".npy", ".tif", ".tiff", ".png", ".jpg", ".jpeg")
WRITE_SUFFIXES = (".npy", ".tif", ".tiff")
NUMERIC_KINDS = "biufc"


class CLIError(Exception):
    """A user error on the command line (exit status 2, one line on stderr)."""


@contextmanager
def converting(what: str) -> Iterator[None]:
    """Turn a ``ValueError``/``TypeError`` raised while converting user input into a
    :class:`CLIError` that starts with ``what``.

    Use it only around code whose every failure is the user's input (option values, a file's
    contents), never around a whole run: a bug elsewhere must keep its traceback.
    :class:`~napari_invrec.core.errors.InvRecError` passes through unchanged.

    Parameters
    ----------
    what
        What was being converted, e.g. ``"the blur options"``.
    """
    from .core.errors import InvRecError

    try:
        yield
    except InvRecError:
        raise
    except (ValueError, TypeError, OverflowError) as e:
        raise CLIError(f"{what}: {_one_line(e)}") from e


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return text or type(e).__name__


# ---------------------------------------------------------------- reading
def _check_readable(p: Path, what: str) -> None:
    if p.is_dir():
        raise CLIError(f"{what} {str(p)!r} is a directory; give a file")
    if not p.exists():
        raise CLIError(f"{what} file {str(p)!r} does not exist")
    if not p.is_file():
        raise CLIError(f"{what} {str(p)!r} is not a regular file; give a file")


def _numeric(a: Any, what: str, p: Path) -> np.ndarray:
    if not isinstance(a, np.ndarray):
        raise CLIError(f"{what} file {str(p)!r} holds a {type(a).__name__}, not an array; "
                       "save one array with np.save")
    if a.dtype.kind not in NUMERIC_KINDS:
        raise CLIError(f"{what} file {str(p)!r} holds {a.dtype} data, not numbers; save a "
                       "numeric (e.g. float32) array")
    return a


def read_array(path: str | Path, what: str = "input") -> np.ndarray:
    """Read a numeric array from ``.npy``, ``.tif``/``.tiff`` or ``.png``/``.jpg``.

    Parameters
    ----------
    path
        The file.
    what
        What the file is, for messages (``"input"``, ``"reference"``, ``"kernel-array"``).

    Returns
    -------
    numpy.ndarray
        The array as stored (shape and dtype are checked by whoever uses it).

    Raises
    ------
    CLIError
        If the path is missing or a directory, the format is unsupported, the reader fails
        (corrupt file, pickled object array) or the file holds no numeric array.
    """
    p = Path(path)
    _check_readable(p, what)
    suffix = p.suffix.lower()
    if suffix not in READ_SUFFIXES:
        raise CLIError(f"{what} file {str(p)!r}: unsupported format {suffix!r} "
                       "(use .npy, .tif or .png)")
    try:
        if suffix == ".npy":  # our own handle: numpy leaks it when a zip turns out corrupt
            with open(p, "rb") as f:
                a = np.load(f, allow_pickle=False)
        elif suffix in (".tif", ".tiff"):
            import tifffile

            a = tifffile.imread(p)
        else:
            from skimage.io import imread

            a = imread(p)
    except Exception as e:  # noqa: BLE001 - any reader failure is a bad file for the user
        raise CLIError(f"cannot read {what} file {str(p)!r}: {_one_line(e)}") from e
    return _numeric(a, what, p)


def sidecar_paths(path: str | Path) -> tuple[Path, Path]:
    """The sidecar ``PATH.json`` and the array archive ``PATH.arrays.npz`` of ``path``."""
    return Path(str(path) + ".json"), Path(str(path) + ".arrays.npz")


def _shape_entry(spec: dict, key: str, side: Path, required: bool) -> None:
    v = spec.get(key)
    if v is None and not required:
        return
    if not isinstance(v, list) or not v or not all(
            isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in v):
        raise CLIError(f"sidecar {str(side)!r}: operator {key!r} must be a list of positive "
                       f"integers such as [256, 256], got {v!r}; fix or delete the sidecar")


def _check_spec(spec: Any, side: Path) -> dict:
    """The sidecar's ``operator`` entry, checked for the keys the command line uses."""
    fix = "; fix or delete the sidecar"
    if not isinstance(spec, dict):
        raise CLIError(f"sidecar {str(side)!r}: 'operator' must be an object with 'operator', "
                       f"'shape' and 'params', got {type(spec).__name__}{fix}")
    if not isinstance(spec.get("operator"), str):
        raise CLIError(f"sidecar {str(side)!r}: operator entry needs the operator's name as a "
                       f"string under 'operator', got {spec.get('operator')!r}{fix}")
    _shape_entry(spec, "shape", side, required=True)
    _shape_entry(spec, "measurement_shape", side, required=False)
    if not isinstance(spec.get("params", {}), dict):
        raise CLIError(f"sidecar {str(side)!r}: operator 'params' must be an object, got "
                       f"{type(spec['params']).__name__}{fix}")
    return spec


def _read_npz(npz: Path) -> dict[str, np.ndarray]:
    if not npz.is_file():
        if npz.exists():
            raise CLIError(f"sidecar arrays {str(npz)!r} is not a file; remove it")
        return {}
    z = None
    try:
        with open(npz, "rb") as f:  # our own handle: numpy leaks it when the zip is corrupt
            z = np.load(f, allow_pickle=False)
            if isinstance(z, np.lib.npyio.NpzFile):
                with z:
                    arrays = {k: z[k] for k in z.files}
    except Exception as e:  # noqa: BLE001 - any reader failure is a bad file for the user
        raise CLIError(f"cannot read sidecar arrays {str(npz)!r}: {_one_line(e)}; write it "
                       "again with np.savez or delete it") from e
    if not isinstance(z, np.lib.npyio.NpzFile):
        raise CLIError(f"sidecar arrays {str(npz)!r} is not a .npz archive; write it with "
                       "np.savez or delete it")
    for k, a in arrays.items():
        _numeric(a, f"array {k!r} of sidecar arrays", npz)
    return arrays


def read_sidecar(path: str | Path | None) -> tuple[dict | None, dict[str, np.ndarray], Path]:
    """The operator spec and arrays recorded beside the input ``path`` by ``simulate``.

    Parameters
    ----------
    path
        The input file; its sidecar is ``PATH.json`` (optional) with ``PATH.arrays.npz``.

    Returns
    -------
    spec, arrays, side
        The ``operator`` entry (``None`` when there is no sidecar or it records no operator),
        the arrays of the archive (empty without one) and the sidecar's path.

    Raises
    ------
    CLIError
        If the sidecar is not a readable JSON object, its ``operator`` entry lacks or
        mistypes ``operator``, ``shape`` or ``params``, or the archive is unreadable, pickled
        or holds non-numeric arrays.
    """
    side, npz = sidecar_paths(path or "")
    if not path or not side.exists():
        return None, {}, side
    if side.is_dir():
        raise CLIError(f"sidecar {str(side)!r} is a directory; remove it")
    try:
        rec = json.loads(side.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as e:  # JSONDecodeError, UnicodeDecodeError
        raise CLIError(f"sidecar {str(side)!r} is not valid JSON ({_one_line(e)}); fix or "
                       "delete it") from e
    if not isinstance(rec, dict):
        raise CLIError(f"sidecar {str(side)!r} must hold a JSON object (as simulate writes), "
                       f"got a {type(rec).__name__}; fix or delete it")
    if "operator" not in rec:
        return None, {}, side
    return _check_spec(rec["operator"], side), _read_npz(npz), side


# ---------------------------------------------------------------- checking outputs
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
