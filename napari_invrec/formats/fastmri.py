"""fastMRI HDF5 files (``.h5``): raw k-space read lazily, one slice at a time.

Layout (the fastMRI dataset's): ``kspace`` is complex ``(slices, H, W)`` (single-coil) or
``(slices, coils, H, W)`` (multi-coil), centred, readout along H, phase encoding along W (the
sampled columns); optional ``mask`` ``(W,)`` (1 = sampled column; test and challenge files),
``reconstruction_rss`` / ``reconstruction_esc`` (the dataset's reference images, e.g.
``(slices, 320, 320)``, a centre crop of the image grid) and ``ismrmrd_header`` (ISMRMRD XML:
encoded and recon matrix and field of view).

Reading is lazy: :func:`read` opens the file read-only and keeps the ``h5py.File`` open for
the lifetime of the layers (it is closed when the dask arrays reading from it are garbage
collected); ``kspace`` becomes a dask array with one chunk per slice, so napari and
Reconstruct read only the slices they show or reconstruct. At open, the reader reads the
header, the mask and one k-space plane (the first coil of the middle slice: display range and,
without a ``mask``, the sampled columns = those not exactly zero in that plane).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ..core.errors import InputError
from ._kspace import check_mask, detect_mask, kspace_layers, mri_units, parse_ismrmrd_header

SUFFIXES = (".h5", ".hdf5")
REFERENCES = ("reconstruction_rss", "reconstruction_esc")
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"

__all__ = ["accepts", "read"]


def accepts(path: Path) -> bool:
    """A ``.h5``/``.hdf5`` file with a top-level ``kspace`` dataset (keys only, no data), or
    one that starts like HDF5 but cannot be opened (damaged: :func:`read` then says why)."""
    p = Path(path)
    if p.suffix.lower() not in SUFFIXES or not p.is_file():
        return False
    import h5py

    try:
        with h5py.File(p, "r") as f:
            return isinstance(f.get("kspace"), h5py.Dataset)
    except (OSError, ValueError):
        try:
            with open(p, "rb") as fp:
                return fp.read(8) == HDF5_SIGNATURE
        except OSError:
            return False


def _lazy(dset: Any, token: str, chunks: tuple) -> Any:
    """A dask array over an h5py dataset (one block per ``chunks``), read only when computed."""
    import dask.array as da

    return da.from_array(dset, chunks=chunks, name=f"{token}-{dset.name.strip('/')}",
                         meta=np.empty((0,) * dset.ndim, dtype=dset.dtype), lock=False)


def _check_extent(dset: Any, size: int | None, source: str) -> None:
    """Refuse a contiguous dataset whose bytes run past the end of the file (truncated)."""
    offset = dset.id.get_offset()
    if size is not None and offset is not None and offset + dset.id.get_storage_size() > size:
        raise InputError(f"{source}: the file ends before its {dset.name!r} data "
                         f"({size} of {offset + dset.id.get_storage_size()} bytes); it is "
                         "truncated, copy it again")


def read(path: Path, *, fileobj: Any = None) -> list[tuple]:
    """Read a fastMRI file into a measurement layer (and a reference layer if present).

    Parameters
    ----------
    path
        The ``.h5`` file (opened read-only; names the layers).
    fileobj
        A binary file object to read the HDF5 bytes from instead of opening ``path`` (e.g. one
        that counts the bytes read); it must stay open as long as the layers.

    Returns
    -------
    list of tuple
        ``(log(1 + |k|), kwargs, "image")`` with the complex k-space (dask) in
        ``metadata["invrec"]["complex_data"]`` and the operator spec (``mri`` single-coil,
        ``mri-multicoil`` with coil maps estimated from each slice), then the reference image
        when the file has one.

    Raises
    ------
    InputError
        Not HDF5 or truncated, ``kspace`` not complex or not 3-/4-D, a mask of the wrong size.
    """
    import h5py
    from dask.base import tokenize

    p = Path(path)
    src = str(p)
    try:
        f = h5py.File(fileobj if fileobj is not None else p, "r")
    except OSError as e:
        raise InputError(f"{src}: not a readable HDF5 file ({e}); is it truncated or still "
                         "being copied?") from e
    try:
        return _read(f, p, fileobj, tokenize)
    except (OSError, KeyError) as e:
        f.close()
        raise InputError(f"{src}: unreadable fastMRI data ({e}); is the file truncated?") from e
    except BaseException:
        f.close()
        raise


def _read(f: Any, p: Path, fileobj: Any, tokenize: Any) -> list[tuple]:
    import h5py

    src = str(p)
    ks = f.get("kspace")
    if not isinstance(ks, h5py.Dataset):
        raise InputError(f"{src}: 'kspace' is not a dataset; not a fastMRI file")
    if ks.dtype.kind != "c":
        raise InputError(f"{src}: 'kspace' is {ks.dtype}, not complex; fastMRI k-space is "
                         "complex64 (real and imaginary parts)")
    if ks.ndim not in (3, 4) or 0 in ks.shape or min(ks.shape[-2:]) < 2:
        raise InputError(f"{src}: 'kspace' has shape {ks.shape}; expected (slices, H, W) or "
                         "(slices, coils, H, W)")
    if fileobj is None:
        st = os.stat(p)
        size, stamp = st.st_size, (src, st.st_size, st.st_mtime_ns)
    else:
        size, stamp = None, (src, id(fileobj))
    _check_extent(ks, size, src)
    token = f"fastmri-{tokenize(*stamp)}"
    coils = ks.ndim == 4
    s, h, w = ks.shape[0], ks.shape[-2], ks.shape[-1]
    kspace = _lazy(ks, token, (1, *ks.shape[1:]))
    if ks.dtype != np.complex64:
        kspace = kspace.astype(np.complex64)
    mid = s // 2
    sample = ks[mid, 0] if coils else ks[mid]  # one plane: display range, mask detection
    notes = None
    if "mask" in f:
        mask = check_mask(f["mask"][()], (h, w), src)
    else:
        mask = detect_mask(sample, src)
        notes = (f"no 'mask' in the file: sampled columns detected as those not exactly zero "
                 f"in slice {mid}{', coil 0' if coils else ''} ({int(mask.sum())} of {w})")
    header = None
    if "ismrmrd_header" in f:
        header = parse_ismrmrd_header(f["ismrmrd_header"][()], src)
    attrs = {k: f.attrs[k] for k in ("acquisition", "patient_id") if k in f.attrs}
    units = mri_units(header, source=p, fmt="fastmri", layout=(
        "(slices, coils, H, W)" if coils else "(slices, H, W)"),
        **{k: str(v.decode() if isinstance(v, bytes) else v) for k, v in attrs.items()})
    ref = ref_name = ref_limits = None
    key = next((k for k in REFERENCES if isinstance(f.get(k), h5py.Dataset)), None)
    if key is not None:
        rd = f[key]
        if rd.ndim == 3 and rd.shape[0] == s and rd.dtype.kind in "iuf":
            ref = _lazy(rd, token, (1, *rd.shape[1:]))
            ref_name = f"{p.stem} [{key}]"
            top = float(np.max(rd[mid]))
            ref_limits = (0.0, top if top > 0 else 1.0)
        else:
            notes = "; ".join(filter(None, [notes, f"{key!r} of shape {rd.shape} ignored"]))
    return kspace_layers(kspace, mask, coils=coils, name=p.stem, units=units, notes=notes,
                         sample=sample, reference=ref, reference_name=ref_name,
                         reference_limits=ref_limits)
