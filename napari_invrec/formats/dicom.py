"""DICOM: one file, or a folder holding a series (pydicom).

A folder's files are grouped by ``SeriesInstanceUID`` (one layer per series) and sorted along
the slice normal (``ImagePositionPatient`` projected on the cross product of the
``ImageOrientationPatient`` row and column directions), else by ``InstanceNumber``, else by
file name. Only the headers are read when the layer is made; each slice's pixels are read when
napari (or a reconstruction) asks for that slice (one ``dask.delayed`` per file).

Values are the modality values: ``RescaleSlope``/``RescaleIntercept`` (or a Modality LUT)
applied, as float32; for ``Modality == "CT"`` the intensity unit is ``"HU"``. The napari
``scale`` is (slice spacing, row spacing, column spacing) in mm, from the slice positions (else
``SpacingBetweenSlices``, else ``SliceThickness``) and ``PixelSpacing``.

Not handled: colour (RGB) series, ``MONOCHROME1`` inversion (recorded in ``units``, not
applied), enhanced multi-frame geometry (frames get ``SpacingBetweenSlices`` or 1).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..core.errors import InputError
from ..engine.layers import file_image_layer, units_record

__all__ = ["accepts", "read"]

SUFFIXES = (".dcm", ".ima")
_SNIFF = 8  # files of a folder checked by accepts()


def _has_preamble(p: Path) -> bool:
    try:
        with open(p, "rb") as f:
            f.seek(128)
            return f.read(4) == b"DICM"
    except OSError:
        return False


def _is_dicom_file(p: Path) -> bool:
    return p.is_file() and (p.suffix.lower() in SUFFIXES or _has_preamble(p))


def _folder_files(p: Path) -> list[Path]:
    return sorted(f for f in p.iterdir() if f.is_file() and not f.name.startswith("."))


def accepts(path: Path) -> bool:
    """A ``.dcm``/``.ima`` file, a file with the ``DICM`` preamble, or a folder whose files
    (the first few, sorted by name) are DICOM files."""
    p = Path(path)
    if p.is_dir():
        files = _folder_files(p)
        return bool(files) and all(_is_dicom_file(f) for f in files[:_SNIFF])
    return _is_dicom_file(p)


# ---------------------------------------------------------------- headers
def _header(f: Path) -> Any:
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:  # values over 1 KB (the pixels) are not read, only located
        ds = pydicom.dcmread(f, defer_size=1024)
    except (InvalidDicomError, OSError, ValueError, EOFError) as e:
        raise InputError(f"{f}: not a readable DICOM file ({e}); remove it from the folder or "
                         "repair it") from e
    el = ds.get_item("PixelData", keep_deferred=True) if "PixelData" in ds else None
    end = getattr(el, "value_tell", None)
    if end is not None and el.length != 0xFFFFFFFF and end + el.length > f.stat().st_size:
        raise InputError(f"{f}: truncated DICOM file (the pixel data ends past the end of the "
                         "file); copy it again or remove it from the folder")
    return ds


def _check_decodable(ds: Any, f: Path) -> None:
    from pydicom.pixels import get_decoder

    uid = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if uid is None or not uid.is_compressed:
        return
    try:
        ok = get_decoder(uid).is_available
    except NotImplementedError:
        ok = False
    if not ok:
        raise InputError(f"{f}: pixel data compressed as {uid.name}, which this installation "
                         "cannot decode; install pylibjpeg (pip install pylibjpeg "
                         "pylibjpeg-libjpeg pylibjpeg-openjpeg) or decompress the files")


def _floats(ds: Any, key: str, n: int) -> list[float] | None:
    v = getattr(ds, key, None)
    try:
        out = [float(x) for x in (v if n > 1 else [v])]
    except (TypeError, ValueError):
        return None
    return out if len(out) == n and all(np.isfinite(out)) else None


def _normal(ds: Any) -> np.ndarray | None:
    iop = _floats(ds, "ImageOrientationPatient", 6)
    if iop is None:
        return None
    n = np.cross(iop[:3], iop[3:])
    norm = float(np.linalg.norm(n))
    return n / norm if norm > 0 else None


def _order(headers: list[tuple[Path, Any]]) -> tuple[list[tuple[Path, Any]], float | None]:
    """The slices sorted along the normal (else by InstanceNumber), and the spacing of their
    positions (``None`` without positions)."""
    normal = _normal(headers[0][1])
    pos = [_floats(ds, "ImagePositionPatient", 3) for _, ds in headers]
    if normal is not None and all(p is not None for p in pos):
        along = [float(np.dot(p, normal)) for p in pos]
        order = np.argsort(along, kind="stable")
        steps = np.abs(np.diff(np.sort(along)))
        steps = steps[steps > 1e-6]
        return [headers[i] for i in order], (float(np.median(steps)) if steps.size else None)
    numbers = [getattr(ds, "InstanceNumber", None) for _, ds in headers]
    if all(isinstance(n, (int, float)) or str(n).strip().lstrip("-").isdigit()
           for n in numbers):
        order = np.argsort([int(n) for n in numbers], kind="stable")
        return [headers[i] for i in order], None
    return headers, None


# ---------------------------------------------------------------- pixels
def _pixels(f: Path) -> np.ndarray:
    """One file's modality values as float32 (rescale or Modality LUT applied)."""
    import pydicom
    from pydicom.pixels import apply_modality_lut

    ds = pydicom.dcmread(f)
    return np.asarray(apply_modality_lut(ds.pixel_array, ds), dtype=np.float32)


def _units(ds: Any, path: Path, slice_spacing: float | None, ndim: int) -> dict:
    ps = _floats(ds, "PixelSpacing", 2) or _floats(ds, "ImagerPixelSpacing", 2)
    spacing = None
    if ps is not None:
        dz = slice_spacing
        for key in ("SpacingBetweenSlices", "SliceThickness"):
            v = _floats(ds, key, 1)
            if dz is None and v and v[0] > 0:
                dz = v[0]
        spacing = ([float(dz or 1.0)] if ndim == 3 else []) + ps
    modality = str(getattr(ds, "Modality", "") or "")
    slope = _floats(ds, "RescaleSlope", 1)
    intercept = _floats(ds, "RescaleIntercept", 1)
    return units_record(spacing=spacing, unit="mm" if spacing else "pixel",
                        intensity="HU" if modality == "CT" else "a.u.", source=path,
                        fmt="dicom", modality=modality or None,
                        rescale_slope=slope[0] if slope else None,
                        rescale_intercept=intercept[0] if intercept else None,
                        photometric=str(getattr(ds, "PhotometricInterpretation", "")) or None)


def _name(ds: Any, path: Path, several: bool) -> str:
    desc = str(getattr(ds, "SeriesDescription", "") or "").strip()
    if several:
        return f"{path.stem} · {desc or 'series'} #{getattr(ds, 'SeriesNumber', '?')}"
    return desc or path.stem


def _series_layer(path: Path, headers: list[tuple[Path, Any]], several: bool) -> tuple:
    import dask
    import dask.array as da

    shapes = {(int(ds.Rows), int(ds.Columns), int(getattr(ds, "NumberOfFrames", 1) or 1),
               int(getattr(ds, "SamplesPerPixel", 1) or 1)) for _, ds in headers}
    first = headers[0][1]
    if len(shapes) > 1 or next(iter(shapes))[2:] != (1, 1):
        raise InputError(f"{path}: series {getattr(first, 'SeriesInstanceUID', '?')} mixes "
                         f"slice shapes {sorted(shapes)} or holds multi-frame/colour files; "
                         "open single-frame grey-level slices of one size")
    _check_decodable(first, headers[0][0])
    ordered, spacing = _order(headers)
    rows, cols = int(first.Rows), int(first.Columns)
    planes = [da.from_delayed(dask.delayed(_pixels)(f), (rows, cols), np.float32)
              for f, _ in ordered]
    data = planes[0] if len(planes) == 1 else da.stack(planes)
    units = _units(ordered[0][1], path, spacing, data.ndim)
    return file_image_layer(data, name=_name(first, path, several), units=units)


def _single_file(path: Path) -> tuple:
    import dask
    import dask.array as da

    ds = _header(path)
    if "Rows" not in ds:
        raise InputError(f"{path}: DICOM file without an image (e.g. a DICOMDIR); open the "
                         "image files or their folder")
    _check_decodable(ds, path)
    frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    samples = int(getattr(ds, "SamplesPerPixel", 1) or 1)
    shape = ((frames,) if frames > 1 else ()) + (int(ds.Rows), int(ds.Columns)) + \
        ((samples,) if samples > 1 else ())
    if frames > 1:
        data: Any = da.from_delayed(dask.delayed(_pixels)(path), shape, np.float32)
    else:
        data = _pixels(path)
    units = _units(ds, path, None, 3 if frames > 1 else 2)
    return file_image_layer(data, name=_name(ds, path, False), units=units,
                            rgb=samples > 1)


def read(path: Path) -> list[tuple]:
    """Read a DICOM file (a plane, or a lazy multi-frame stack) or a folder (one lazy
    ``(Z, Y, X)`` layer per series).

    Raises
    ------
    InputError
        No image in the file/folder, unreadable or undecodable files, or a series whose
        slices differ in shape.
    """
    p = Path(path)
    if not p.is_dir():
        return [_single_file(p)]
    headers = [(f, _header(f)) for f in _folder_files(p) if _is_dicom_file(f)]
    headers = [(f, ds) for f, ds in headers if "Rows" in ds]
    if not headers:
        raise InputError(f"{p}: no DICOM image files in this folder; open a folder that "
                         "holds a series' slices")
    series: dict[str, list[tuple[Path, Any]]] = {}
    for f, ds in headers:
        series.setdefault(str(getattr(ds, "SeriesInstanceUID", "") or ""), []).append((f, ds))
    return [_series_layer(p, hs, len(series) > 1) for hs in series.values()]
