"""Input files written with each format's own library (pydicom, mrcfile, ome-zarr, tifffile),
shared by tests/test_formats_images.py and tests/test_widgets_formats.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np

# CT series: 4 slices written out of order (file names, instance numbers and positions all
# disagree), each with its own exactly representable rescale slope/intercept
CT_SHAPE = (32, 40)
CT_PIXEL = (0.75, 0.5)       # PixelSpacing: row spacing (y), column spacing (x), mm
CT_DZ = 2.5                  # slice spacing from the positions, mm (SliceThickness says 3)
CT_Z = [5.0, -2.5, 2.5, 0.0]  # ImagePositionPatient z of files IM0..IM3
CT_INSTANCE = [1, 4, 2, 3]
CT_SLOPE = [0.5, 1.0, 2.0, 0.25]
CT_INTERCEPT = [-1024.0, -1000.0, -512.0, 0.0]


def ct_raw(seed: int = 0) -> np.ndarray:
    """The stored (uint16) values of files IM0..IM3."""
    return np.random.default_rng(seed).integers(0, 4000, size=(4, *CT_SHAPE)).astype(np.uint16)


def ct_expected() -> tuple[np.ndarray, list[int]]:
    """The HU volume a correct reader returns (sorted by z) and the file index of each slice."""
    raw = ct_raw()
    order = list(np.argsort(CT_Z))
    hu = np.stack([raw[i].astype(np.float64) * CT_SLOPE[i] + CT_INTERCEPT[i] for i in order])
    return hu.astype(np.float32), order


def write_ct_series(folder: Path, *, suffix: str = "") -> Path:
    """A CT series (pydicom FileDatasets with preamble) in ``folder``; files ``IM0..IM3``."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    raw = ct_raw()
    series, study = generate_uid(), generate_uid()
    for k in range(4):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = FileDataset(f"IM{k}", {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
        ds.Modality, ds.SeriesDescription, ds.SeriesNumber = "CT", "test abdomen", 3
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.InstanceNumber = CT_INSTANCE[k]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [-10.0, -12.0, CT_Z[k]]
        ds.PixelSpacing = list(CT_PIXEL)
        ds.SliceThickness = 3.0
        ds.Rows, ds.Columns = CT_SHAPE
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.RescaleSlope, ds.RescaleIntercept = CT_SLOPE[k], CT_INTERCEPT[k]
        ds.PixelData = raw[k].tobytes()
        ds.save_as(folder / f"IM{k}{suffix}", enforce_file_format=True)
    return folder


def write_mrc(path: Path, data: np.ndarray, voxel: float | tuple = 1.5, *,
              stack: bool = False) -> Path:
    """An MRC file (mrcfile.new) with voxel size in Å."""
    import mrcfile

    with mrcfile.new(path, overwrite=True) as m:
        m.set_data(data)
        if stack:
            m.set_image_stack()
        m.voxel_size = voxel
    return path


def write_ome_zarr(path: Path, data: np.ndarray, *, version: str = "0.4",
                   scale: dict | None = None, unit: str = "micrometer",
                   levels: int = 3) -> Path:
    """A multiscale OME-Zarr image written by ome-zarr-py (NGFF 0.4 on zarr v2, or 0.5)."""
    import warnings

    import zarr

    with warnings.catch_warnings():  # ome-zarr deprecates its own Scaler at import
        warnings.simplefilter("ignore", DeprecationWarning)
        from ome_zarr.format import FormatV04, FormatV05
        from ome_zarr.writer import write_image

    axes = "zyx"[-data.ndim:]
    factors = [{"y": 2 ** i, "x": 2 ** i} for i in range(1, levels)]
    fmt = FormatV04() if version == "0.4" else FormatV05()
    group = zarr.open_group(str(path), mode="w", zarr_format=2 if version == "0.4" else 3)
    write_image(data, group, scale_factors=factors, fmt=fmt, axes=axes,
                scale=scale or dict.fromkeys(axes, 1.0), axes_units=dict.fromkeys(axes, unit))
    return path


def write_ome_tiff(path: Path, data: np.ndarray, *, xy: float = 0.25, z: float = 400.0,
                   z_unit: str = "nm") -> Path:
    """An OME-TIFF (tifffile) with PhysicalSizeX/Y in µm and PhysicalSizeZ in ``z_unit``."""
    import tifffile

    axes = "ZYX"[-data.ndim:]
    tifffile.imwrite(path, data, photometric="minisblack",
                     metadata={"axes": axes, "PhysicalSizeX": xy, "PhysicalSizeY": xy,
                               "PhysicalSizeZ": z, "PhysicalSizeZUnit": z_unit})
    return path
