"""Files the command line reads: arrays and sidecars (outputs: :mod:`napari_invrec.cli_outputs`).

Shared by :mod:`napari_invrec.cli` and :mod:`napari_invrec.cli_train` (neither imports the
other's internals through here). Everything a user can get wrong about a file raises
:class:`CLIError` with one line that names the file and says what to change:

- inputs are read with ``allow_pickle=False`` and must hold a numeric array;
- a sidecar ``INPUT.json`` must be a JSON object whose ``operator`` entry, when present, is an
  object with a string ``operator``, a ``shape`` of positive integers and a ``params`` object;
  its ``INPUT.arrays.npz`` must be a plain numpy archive of numeric arrays;
- every file a run will write is checked before any work (:mod:`napari_invrec.cli_outputs`).

"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from .formats.plain import PLAIN_SUFFIXES, read_plain

__all__ = ["CLIError", "converting", "number_option", "read_array", "read_sidecar",
           "sidecar_paths"]

READ_SUFFIXES = PLAIN_SUFFIXES
WRITE_SUFFIXES = (".npy", ".tif", ".tiff")
NUMERIC_KINDS = "biufc"


class CLIError(Exception):
    """A user error on the command line (exit status 2, one line on stderr)."""


def number_option(cast: Callable[[str], float], lo: float, hi: float,
                  what: str) -> Callable[[str], Any]:
    """An argparse ``type`` accepting ``cast(text)`` in ``[lo, hi]``; otherwise the message
    ``'TEXT' is not WHAT``. ``auto`` passes through when ``what`` mentions it."""
    def parse(text: str) -> Any:
        if text == "auto" and "'auto'" in what:
            return text
        try:
            v = cast(text)
        except ValueError:
            v = None
        if v is None or not lo <= v <= hi:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
        return v

    return parse


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
        a = read_plain(p)
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
