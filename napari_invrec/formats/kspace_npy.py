"""Complex k-space saved with numpy: ``.npy`` (memory-mapped) or ``.npz``.

Layout: ``(H, W)`` single-coil (operator ``mri``) or ``(coils, H, W)`` multi-coil (operator
``mri-multicoil``, coil maps estimated from the measurement's fully sampled centre), centred
k-space (DC at ``(H // 2, W // 2)``), readout along H, phase encoding along W (sampled
columns), as :mod:`napari_invrec.core.operators.mri` and ``api.simulate`` make it.

The sampling mask (``(W,)`` or ``(H, W)``, nonzero = sampled) is the ``mask`` entry of a
``.npz``, or the file ``<stem>_mask.npy`` beside a ``.npy`` (as in the package's
``sample_data/phantom_kspace.npy``). Without one, the sampled columns are those not exactly
zero in the k-space, and the layer's ``metadata["invrec"]["notes"]`` says so.

Only complex arrays are accepted (the ``.npy`` header is read, never the data), so real
``.npy`` files go to napari's own reader. A ``.npy`` is memory-mapped read-only: nothing is
loaded until a plane is shown or reconstructed; a ``.npz`` is loaded (it cannot be mapped).
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from ..core.errors import InputError
from ._kspace import check_mask, detect_mask, kspace_layers, mri_units

__all__ = ["accepts", "read"]


def _header(fp: Any) -> tuple[tuple[int, ...], np.dtype]:
    """``(shape, dtype)`` from an open ``.npy`` stream (the header only)."""
    version = np.lib.format.read_magic(fp)
    if version == (1, 0):
        shape, _, dtype = np.lib.format.read_array_header_1_0(fp)
    elif version == (2, 0):
        shape, _, dtype = np.lib.format.read_array_header_2_0(fp)
    else:
        raise ValueError(f"unsupported .npy version {version}")
    return tuple(shape), np.dtype(dtype)


def _npz_members(path: Path) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Entry name -> (shape, dtype) of a ``.npz`` (headers only)."""
    out = {}
    with zipfile.ZipFile(path) as z:
        for info in z.infolist():
            if info.filename.endswith(".npy"):
                with z.open(info) as fp:
                    out[info.filename[:-4]] = _header(fp)
    return out


def _kspace_key(members: dict) -> str | None:
    """``kspace`` if complex, else the only complex entry, else ``None``."""
    if "kspace" in members and members["kspace"][1].kind == "c":
        return "kspace"
    found = [k for k, (_, dt) in members.items() if dt.kind == "c"]
    return found[0] if len(found) == 1 else None


def accepts(path: Path) -> bool:
    """A ``.npy`` whose header says complex, or a ``.npz`` holding complex k-space."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix not in (".npy", ".npz") or not p.is_file():
        return False
    try:
        if suffix == ".npy":
            with open(p, "rb") as fp:
                return _header(fp)[1].kind == "c"
        return _kspace_key(_npz_members(p)) is not None
    except (OSError, ValueError, zipfile.BadZipFile):
        return False


def read(path: Path) -> list[tuple]:
    """Read complex k-space (and its mask) into a measurement layer.

    Returns
    -------
    list of tuple
        One ``(log(1 + |k|), kwargs, "image")`` tuple, the complex k-space (memory map for a
        ``.npy``) in ``metadata["invrec"]["complex_data"]``.

    Raises
    ------
    InputError
        Not complex, not 2-D/3-D, unreadable or truncated, or a mask of the wrong size.
    """
    p = Path(path)
    src = str(p)
    mask_src = None
    try:
        if p.suffix.lower() == ".npz":
            with np.load(p, allow_pickle=False) as z:
                key = _kspace_key(_npz_members(p))
                if key is None:
                    raise InputError(f"{src}: no complex k-space in the .npz; store it as "
                                     "'kspace' (complex64)")
                k = np.asarray(z[key])
                mask = z["mask"] if "mask" in z.files else None
                mask_src = f"{src}['mask']" if mask is not None else None
        else:
            k = np.load(p, mmap_mode="r", allow_pickle=False)
            side = p.with_name(f"{p.stem}_mask.npy")
            mask = np.load(side, allow_pickle=False) if side.is_file() else None
            mask_src = str(side) if mask is not None else None
    except InputError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise InputError(f"{src}: unreadable ({e}); is the file truncated?") from e
    if k.dtype.kind != "c":
        raise InputError(f"{src}: the k-space is {k.dtype}, not complex; save the complex "
                         "k-space (complex64)")
    if k.ndim not in (2, 3) or min(k.shape[-2:]) < 2 or 0 in k.shape:
        raise InputError(f"{src}: the k-space has shape {k.shape}; expected (H, W) or "
                         "(coils, H, W)")
    if k.dtype != np.complex64:
        k = k.astype(np.complex64)
    shape = k.shape[-2:]
    if mask is not None:
        mask = check_mask(mask, shape, mask_src)
        notes = f"sampling mask read from {mask_src}"
    else:
        mask = detect_mask(k, src)
        notes = (f"no mask file ({p.stem}_mask.npy or a 'mask' entry): sampled columns "
                 f"detected as those not exactly zero ({int(mask.sum())} of {shape[1]})")
    units = mri_units(None, source=p, fmt="kspace-npy",
                      layout="(coils, H, W)" if k.ndim == 3 else "(H, W)")
    return kspace_layers(k, mask, coils=k.ndim == 3, name=p.stem, units=units, notes=notes,
                         sample=k[0] if k.ndim == 3 else k)
