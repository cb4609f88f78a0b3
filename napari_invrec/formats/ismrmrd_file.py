"""ISMRMRD raw data (``.h5``): Cartesian 2-D acquisitions, read with the ``ismrmrd`` package.

An ISMRMRD file holds a group ``dataset`` with the XML header ``xml`` and the acquisitions
``data``: one readout per acquisition, with its counters (slice, ``kspace_encode_step_1``,
average...) and flags. The reader places each imaging readout at
``kspace[slice, coil, readout sample, kspace_encode_step_1]``: the phase-encode direction is the
last axis (W, the sampled columns of the ``mri`` operators) and the readout H is fully
sampled. The k-space is centred: phase-encode line ``encodingLimits/kspace_encoding_step_1/
center`` goes to column ``W // 2`` and readout sample ``center_sample`` to row ``H // 2``
(an asymmetric echo is zero-padded and the mask then marks the unsampled rows too). The mask
is the set of acquired phase-encode lines.

Skipped: noise-adjust scans, calibration-only lines (``ACQ_IS_PARALLEL_CALIBRATION``; lines
flagged calibration *and* imaging are kept), navigators, phase-correction, dummy, feedback and
surface-coil-correction scans. Repeated averages of a line are averaged; only repetition,
contrast, phase and set 0 are read (the layer's notes say how many readouts were left out).
Non-Cartesian trajectories and 3-D encoding (``kspace_encode_step_2``) are refused.

Reading is eager (the whole k-space is assembled in memory): ISMRMRD stores acquisitions in
acquisition order, not slice by slice, so a slice cannot be read without scanning the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..core.errors import InputError
from ._kspace import kspace_layers, mri_units, parse_ismrmrd_header

__all__ = ["accepts", "read"]

_SKIP = ("ACQ_IS_NOISE_MEASUREMENT", "ACQ_IS_PARALLEL_CALIBRATION", "ACQ_IS_NAVIGATION_DATA",
         "ACQ_IS_PHASECORR_DATA", "ACQ_IS_DUMMYSCAN_DATA", "ACQ_IS_RTFEEDBACK_DATA",
         "ACQ_IS_HPFEEDBACK_DATA", "ACQ_IS_SURFACECOILCORRECTIONSCAN_DATA",
         "ACQ_IS_PHASE_STABILIZATION_REFERENCE", "ACQ_IS_PHASE_STABILIZATION")
_OTHER_IMAGES = ("repetition", "contrast", "phase", "set")


def accepts(path: Path) -> bool:
    """An ``.h5``/``.hdf5`` file with a group ``dataset`` holding ``xml`` and ``data`` (and no
    top-level ``kspace``, which makes it a fastMRI file)."""
    p = Path(path)
    if p.suffix.lower() not in (".h5", ".hdf5") or not p.is_file():
        return False
    import h5py

    try:
        with h5py.File(p, "r") as f:
            g = f.get("dataset")
            return (isinstance(g, h5py.Group) and "xml" in g and "data" in g
                    and "kspace" not in f)
    except (OSError, ValueError):
        return False


def _flag_mask(ismrmrd: Any) -> np.uint64:
    return np.uint64(sum(1 << (int(getattr(ismrmrd, name)) - 1) for name in _SKIP))


def _imaging(heads: np.ndarray, src: str) -> tuple[np.ndarray, int]:
    """Indices of the imaging acquisitions of image 0 (from the headers alone) and the number
    of readouts of other repetitions/contrasts/phases/sets left out."""
    import ismrmrd

    idx = heads["idx"]
    imaging = (heads["flags"] & _flag_mask(ismrmrd)) == 0
    first = np.all([idx[k] == 0 for k in _OTHER_IMAGES], axis=0)
    keep = np.flatnonzero(imaging & first)
    if keep.size == 0:
        raise InputError(f"{src}: no imaging acquisition in the file (only noise, calibration "
                         "or navigator scans)")
    if idx["kspace_encode_step_2"][keep].any():
        raise InputError(f"{src}: 3-D Cartesian data (kspace_encode_step_2 > 0) is not "
                         "supported; give 2-D (multi-slice) acquisitions")
    if heads["trajectory_dimensions"][keep].any():
        raise InputError(f"{src}: non-Cartesian acquisitions (with a trajectory) are not "
                         "supported; give Cartesian k-space")
    return keep, int((imaging & ~first).sum())


def read(path: Path) -> list[tuple]:
    """Assemble the Cartesian k-space of an ISMRMRD file into a measurement layer.

    Returns
    -------
    list of tuple
        One ``(log(1 + |k|), kwargs, "image")`` tuple: ``(slices, coils, H, W)`` k-space
        (complex64, numpy) in ``metadata["invrec"]["complex_data"]``, operator
        ``mri-multicoil`` with coil maps estimated from each slice and the acquired lines as
        ``mask_array``.

    Raises
    ------
    InputError
        Unreadable or truncated file, a non-Cartesian or 3-D acquisition, inconsistent readout
        lengths or coil counts, lines outside the encoded matrix.
    """
    import h5py
    import ismrmrd

    p = Path(path)
    src = str(p)
    try:
        dset = ismrmrd.Dataset(str(p), "dataset", create_if_needed=False, mode="r")
        try:
            header = parse_ismrmrd_header(dset.read_xml_header(), src)
        finally:
            dset.close()
        if (header["trajectory"] or "cartesian").lower() != "cartesian":
            raise InputError(f"{src}: trajectory {header['trajectory']!r} is not Cartesian; "
                             "only Cartesian ISMRMRD data is read")
        # the acquisitions in bulk (headers first, then the kept readouts by blocks): the
        # package's Dataset.read_acquisition reads one at a time, ~5 ms each
        with h5py.File(p, "r") as f:
            data = f["dataset"]["data"]
            heads = data.fields("head")[()]
            keep, left = _imaging(heads, src)
            kspace, mask = _assemble(heads[keep], _readouts(data, keep), header, src)
    except InputError:
        raise
    except (OSError, LookupError, ValueError) as e:
        raise InputError(f"{src}: unreadable ISMRMRD data ({e}); is the file truncated?") from e
    notes = "; ".join(filter(None, [
        f"{left} readout(s) of other repetitions/contrasts/phases/sets left out" if left else "",
        "asymmetric echo zero-padded along the readout" if mask.ndim == 2 else ""])) or None
    units = mri_units(header, source=p, fmt="ismrmrd", layout="(slices, coils, H, W)")
    return kspace_layers(kspace, mask, coils=True, name=p.stem, units=units, notes=notes,
                         sample=kspace[kspace.shape[0] // 2, 0])


def _readouts(data: Any, keep: np.ndarray, block: int = 1024) -> Any:
    """The readouts ``(channels * samples,)`` complex64 of acquisitions ``keep``, read by
    blocks of ``block`` acquisitions."""
    for start in range(0, keep.size, block):
        rows = keep[start:start + block]
        chunk = data.fields("data")[int(rows[0]):int(rows[-1]) + 1]
        for r in rows:
            yield np.asarray(chunk[r - rows[0]], dtype=np.float32).view(np.complex64)


def _assemble(heads: np.ndarray, readouts: Any, header: dict,
              src: str) -> tuple[np.ndarray, np.ndarray]:
    """``(kspace (slices, coils, H, W) complex64, mask)`` from the imaging acquisitions'
    headers and readouts (summed in complex64, then divided by the number of averages)."""
    n_samples, n_chan = set(heads["number_of_samples"].tolist()), set(
        heads["active_channels"].tolist())
    if len(n_samples) != 1 or len(n_chan) != 1:
        raise InputError(f"{src}: readouts of {sorted(n_samples)} samples and "
                         f"{sorted(n_chan)} channels; the reader needs one readout length and "
                         "one coil count")
    n, c = int(n_samples.pop()), int(n_chan.pop())
    centres = set(heads["center_sample"].tolist())
    centre = int(centres.pop()) if len(centres) == 1 else n // 2
    if centre in (0, n // 2):
        centre = n // 2
    h = 2 * max(centre, n - centre)
    row0 = h // 2 - centre
    e1 = heads["idx"]["kspace_encode_step_1"].astype(np.int64)
    em = header.get("encoded_matrix")
    w = int(em[1]) if em and em[1] > 0 else int(e1.max()) + 1
    e1c = header.get("e1_center")
    cols = e1 + (w // 2 - e1c if e1c is not None else 0)
    if cols.min() < 0 or cols.max() >= w:
        raise InputError(f"{src}: phase-encode lines {e1.min()}..{e1.max()} fall outside the "
                         f"encoded matrix of {w} lines (centre {e1c})")
    slices = heads["idx"]["slice"].astype(np.int64)
    n_sl = max(int(slices.max()) + 1, header.get("slices") or 1)
    reverse = (heads["flags"] & np.uint64(1 << (_flag("ACQ_IS_REVERSE") - 1))) != 0
    total = np.zeros((n_sl, c, h, w), dtype=np.complex64)
    count = np.zeros((n_sl, w), dtype=np.int64)
    for i, line in enumerate(readouts):
        if line.size != c * n:
            raise InputError(f"{src}: acquisition {i} holds {line.size} samples, not "
                             f"{c} x {n}; the file is damaged")
        line = line.reshape(c, n)
        total[slices[i], :, row0:row0 + n, cols[i]] += line[:, ::-1] if reverse[i] else line
        count[slices[i], cols[i]] += 1
    if (count > 1).any():  # repeated averages of a line: their mean
        total /= np.maximum(count, 1)[:, None, None, :]
    kspace = total
    mask = (count > 0).any(0).astype(np.float32)
    if h != n:
        rows = np.zeros(h, dtype=np.float32)
        rows[row0:row0 + n] = 1
        mask = rows[:, None] * mask[None, :]
    return kspace, mask


def _flag(name: str) -> int:
    import ismrmrd

    return int(getattr(ismrmrd, name))
