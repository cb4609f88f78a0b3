"""Files of a batch (:mod:`napari_invrec.engine.batch`): inputs found and read, one result
written per input with its run record.

:class:`BatchFiles` is the batch engine's ``io``:

* ``expand(path)``: a folder (its ``.npy``/``.tif``/``.png``/``.jpg`` files, sorted, hidden
  ones left out), a glob (``in/*.tif``; quoted on a command line), a single file, or a zarr
  array (items along its first axis; zarr v2 or v3). A zarr group is refused with the path
  of an array to give instead.
* ``read(item)``: the numeric array of a file (``.npy`` without pickles) or one plane of a
  zarr array.
* ``write(out, result, name)``: the result layer through :func:`~.save.save_layer` (TIFF,
  ``.npy`` or OME-Zarr holding the displayed result, the run record, the measurement as it
  ran and the operator's arrays), and for stochastic methods the posterior std beside it
  (``NAME.std.SUFFIX``, written first, so that a present result means a complete item). A
  file there that napari-invrec did not write is never replaced.
* ``provenance(out)``: the run record of an earlier output (metadata only), for resume.

It holds only its output format, so it pickles to any dask worker.
"""

from __future__ import annotations

import glob
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..core.errors import InputError
from ..engine.batch import Item
from .plain import PLAIN_SUFFIXES, read_plain

__all__ = ["BatchFiles", "OUTPUT_FORMATS", "READ_SUFFIXES"]

READ_SUFFIXES = PLAIN_SUFFIXES
OUTPUT_FORMATS = {"tif": ".tif", "npy": ".npy", "zarr": ".zarr"}
_GLOB_CHARS = "*?["


def _zarr_shape(p: Path) -> tuple[str, tuple[int, ...] | None]:
    """``("array", shape)``, ``("group", None)`` or ``("", None)`` for a folder ``p``."""
    try:
        if (p / ".zarray").is_file():
            return "array", tuple(json.loads((p / ".zarray").read_text())["shape"])
        if (p / ".zgroup").is_file():
            return "group", None
        if (p / "zarr.json").is_file():
            meta = json.loads((p / "zarr.json").read_text())
            if meta.get("node_type") == "array":
                return "array", tuple(meta["shape"])
            return "group", None
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise InputError(f"zarr metadata of {str(p)!r} is unreadable ({e}); give another "
                         "input") from e
    return "", None


def _file_item(p: Path) -> Item:
    return Item(p.stem, str(p), path=str(p))


class BatchFiles:
    """Reads a batch's inputs and writes its outputs (see the module docstring).

    Parameters
    ----------
    fmt
        Output format: ``tif`` (default), ``npy`` or ``zarr``.
    """

    def __init__(self, fmt: str = "tif") -> None:
        if fmt not in OUTPUT_FORMATS:
            raise InputError(f"unknown output format {fmt!r}; choose one of "
                             f"{', '.join(OUTPUT_FORMATS)}")
        self.fmt = fmt
        self.suffix = OUTPUT_FORMATS[fmt]

    # ------------------------------------------------------------ inputs
    def expand(self, spec: str | os.PathLike) -> list[Item]:
        """The items of one input path (folder, glob, file or zarr array).

        Raises
        ------
        InputError
            Nothing there, an empty folder or glob, or a zarr group.
        """
        text = os.path.expanduser(str(spec))
        p = Path(text)
        if p.is_dir():
            kind, shape = _zarr_shape(p)
            if kind == "array":
                if not shape or shape[0] == 0:
                    raise InputError(f"zarr array {text!r} has shape {shape}; it needs a "
                                     "first axis of items")
                width = max(4, len(str(shape[0] - 1)))
                stem = p.name.removesuffix(".zarr") or "item"
                return [Item(f"{stem}_{i:0{width}d}", f"{text}[{i}]", path=text, index=i)
                        for i in range(shape[0])]
            if kind == "group":
                raise InputError(f"{text!r} is a zarr group, not an array; give the path of "
                                 f"one of its arrays (e.g. {os.path.join(text, '0')})")
            files = sorted(q for q in p.iterdir() if q.is_file() and not q.name.startswith(".")
                           and q.suffix.lower() in READ_SUFFIXES)
            if not files:
                raise InputError(f"folder {text!r} holds no {'/'.join(READ_SUFFIXES)} files")
            return [_file_item(q) for q in files]
        if any(c in text for c in _GLOB_CHARS) and not p.exists():
            found = sorted(Path(m) for m in glob.glob(text, recursive=True))
            files = [q for q in found if q.is_file()]
            if not files:
                raise InputError(f"no file matches {str(spec)!r}")
            return [_file_item(q) for q in files]
        if p.is_file():
            return [_file_item(p)]
        raise InputError(f"input {str(spec)!r} does not exist")

    def read(self, item: Item) -> np.ndarray:
        """The measurement of a file item (or one plane of a zarr array).

        Raises
        ------
        InputError
            Unreadable or unsupported file, or data that is not numeric.
        """
        p = Path(item.path)
        try:
            if item.index is not None:
                import zarr

                a = np.asarray(zarr.open_array(str(p), mode="r")[item.index])
            elif p.suffix.lower() in READ_SUFFIXES:
                a = read_plain(p)
            else:
                raise InputError(f"{p.name}: unsupported format {p.suffix!r}; give "
                                 f"{'/'.join(READ_SUFFIXES)} files")
        except InputError:
            raise
        except Exception as e:  # noqa: BLE001 - any reader failure is a bad file for the user
            text = " ".join(str(e).split()) or type(e).__name__
            raise InputError(f"cannot read {item.label}: {text}") from e
        if not isinstance(a, np.ndarray) or a.dtype.kind not in "biufc":
            raise InputError(f"{item.label} holds {getattr(a, 'dtype', type(a).__name__)} "
                             "data, not numbers; give a numeric image")
        if a.size == 0:
            raise InputError(f"cannot read {item.label}: it holds no pixels (shape {a.shape})")
        return a

    # ------------------------------------------------------------ outputs
    def out_path(self, folder: str | os.PathLike, name: str) -> str:
        """The output of the input called ``name`` in ``folder``."""
        return str(Path(folder) / f"{name}{self.suffix}")

    def std_path(self, out: str | os.PathLike) -> Path:
        """The posterior std written beside ``out``: ``NAME.std.SUFFIX``."""
        p = Path(out)
        return p.with_name(f"{p.name.removesuffix(self.suffix)}.std{self.suffix}")

    def check(self, out: str | os.PathLike) -> None:
        """Raise :class:`InputError` if ``out`` (or its std file) may not be written (a file
        that is not a napari-invrec save is never replaced)."""
        from .save import check_save_path

        check_save_path(out)
        check_save_path(self.std_path(out))

    def exists(self, out: str | os.PathLike) -> bool:
        """Whether an output is there."""
        return Path(out).exists()

    def provenance(self, out: str | os.PathLike) -> dict | None:
        """The run record stored in an earlier output (``None``: none, or not ours)."""
        from .saved import record_of

        rec = record_of(out)
        prov = rec.get("provenance") if rec else None
        return prov if isinstance(prov, dict) else None

    def write(self, out: str | os.PathLike, result: Any, name: str) -> list[str]:
        """Save ``result`` (a :class:`~napari_invrec.engine.runner.Result`) to ``out`` with
        its run record, and its std beside it when the method gives one."""
        from ..engine.layers import result_layers
        from .save import save_layer

        layers = result_layers(result, name=name)
        written = []
        for data, kwargs, _ in layers[1:]:
            if kwargs["metadata"]["invrec"]["kind"] == "std":
                written += save_layer(self.std_path(out), data, kwargs)
        data, kwargs, _ = layers[0]
        return save_layer(out, data, kwargs) + written
