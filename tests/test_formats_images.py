"""Image readers (DICOM, MRC, OME-Zarr/zarr, OME-TIFF/TIFF) on files written by each format's
own library: values, physical scale, laziness, refusals."""

from __future__ import annotations

from pathlib import Path

import dask.array as da
import numpy as np
import pytest
from format_files import (
    CT_DZ,
    CT_PIXEL,
    ct_expected,
    write_ct_series,
    write_mrc,
    write_ome_tiff,
    write_ome_zarr,
)

from napari_invrec.core.errors import InputError
from napari_invrec.formats import read, reader_for

ROOT = Path(__file__).resolve().parents[1]


def _only(layers):
    assert len(layers) == 1
    data, kw, kind = layers[0]
    assert kind == "image"
    return data, kw, kw["metadata"]["invrec"]


def _module(path):
    return reader_for(path).__module__.rsplit(".", 1)[-1]


# ---------------------------------------------------------------------- DICOM
def test_dicom_folder_sorted_rescaled_scaled_and_lazy(tmp_path, monkeypatch):
    from napari_invrec.formats import dicom

    folder = write_ct_series(tmp_path / "ct")
    assert _module(folder) == "dicom"  # files without suffix: found by their DICM preamble
    reads = []
    real = dicom._pixels
    monkeypatch.setattr(dicom, "_pixels", lambda f: reads.append(Path(f).name) or real(f))
    data, kw, meta = _only(read(folder))
    assert isinstance(data, da.Array) and data.shape == (4, 32, 40) and not reads
    expected, order = ct_expected()
    # one slice computes one file: the one at that position along the normal
    np.testing.assert_array_equal(np.asarray(data[2]), expected[2])
    assert reads == [f"IM{order[2]}"]
    # slope/intercept of every slice applied exactly (values are exact in float32)
    got = np.asarray(data)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, expected)
    assert kw["scale"] == [CT_DZ, *CT_PIXEL]  # slice spacing from the positions, not thickness
    u = meta["units"]
    assert meta["kind"] == "image" and u["unit"] == "mm" and u["intensity"] == "HU"
    assert u["format"] == "dicom" and u["modality"] == "CT"
    assert kw["name"] == "test abdomen"


def test_dicom_without_positions_sorts_by_instance_number(tmp_path):
    import pydicom
    from format_files import CT_INSTANCE

    folder = write_ct_series(tmp_path / "ct")
    for f in folder.iterdir():
        ds = pydicom.dcmread(f)
        del ds.ImagePositionPatient
        ds.save_as(f)
    data, kw, _ = _only(read(folder))
    raw_order = list(np.argsort(CT_INSTANCE))
    expected, order = ct_expected()
    got = np.asarray(data)
    for k, i in enumerate(raw_order):  # slice k is file i; compare with that file's HU values
        np.testing.assert_array_equal(got[k], expected[order.index(i)])
    assert kw["scale"][0] == 3.0  # no positions: the slice thickness


def test_dicom_single_file_and_suffix(tmp_path):
    folder = write_ct_series(tmp_path / "ct", suffix=".dcm")
    data, kw, meta = _only(read(folder / "IM2.dcm"))
    expected, order = ct_expected()
    assert isinstance(data, np.ndarray) and data.shape == (32, 40)
    np.testing.assert_array_equal(data, expected[order.index(2)])
    assert kw["scale"] == list(CT_PIXEL) and meta["units"]["rescale_slope"] == 2.0


def test_dicom_refusals(tmp_path):
    from napari_invrec.formats import dicom

    folder = write_ct_series(tmp_path / "ct")
    raw = (folder / "IM1").read_bytes()
    (folder / "IM1").write_bytes(raw[:-100])  # an interrupted copy
    with pytest.raises(InputError, match="IM1: truncated DICOM file"):
        read(folder)
    (tmp_path / "x.dcm").write_bytes(b"no preamble, not DICOM")
    with pytest.raises(InputError, match="x.dcm: not a readable DICOM file"):
        read(tmp_path / "x.dcm")
    other = tmp_path / "notes"
    other.mkdir()
    (other / "a.txt").write_text("hello")
    assert not dicom.accepts(other) and reader_for(other) is None


# ---------------------------------------------------------------------- MRC
def test_mrc_volume_memory_mapped_with_voxel_size(tmp_path):
    vol = np.random.default_rng(1).random((5, 24, 32)).astype(np.float32)
    p = write_mrc(tmp_path / "vol.mrc", vol, voxel=(1.5, 2.0, 2.5))  # x, y, z in Å
    assert _module(p) == "mrc"
    data, kw, meta = _only(read(p))
    assert isinstance(data, da.Array) and data.chunks[0] == (1,) * 5
    np.testing.assert_array_equal(np.asarray(data), vol)
    assert kw["scale"] == [2.5, 2.0, 1.5] and meta["units"]["unit"] == "angstrom"
    assert p.read_bytes()[208:212] == b"MAP "  # unchanged, opened read-only


def test_mrcs_stack_and_plane(tmp_path):
    stack = np.arange(3 * 8 * 10, dtype=np.int16).reshape(3, 8, 10)
    data, kw, meta = _only(read(write_mrc(tmp_path / "parts.mrcs", stack, voxel=1.2,
                                          stack=True)))
    assert meta["units"]["stack"] and np.allclose(kw["scale"], [1.0, 1.2, 1.2])
    np.testing.assert_array_equal(np.asarray(data), stack)
    plane = np.ones((8, 10), np.float32)
    data, kw, meta = _only(read(write_mrc(tmp_path / "p.mrc", plane, voxel=0.0)))
    assert isinstance(data, np.ndarray) and "scale" not in kw
    assert meta["units"]["unit"] == "pixel"


def test_mrc_invalid_header_refused(tmp_path):
    p = tmp_path / "bad.mrc"
    p.write_bytes(b"\1" * 2048)
    with pytest.raises(InputError, match="not a valid MRC file"):
        read(p)


# ---------------------------------------------------------------------- zarr
@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_ome_zarr_multiscale_lazy_with_units(tmp_path, version):
    vol = np.random.default_rng(2).random((3, 64, 48)).astype(np.float32)
    p = write_ome_zarr(tmp_path / "img.ome.zarr", vol, version=version,
                       scale={"z": 2.0, "y": 0.5, "x": 0.5})
    assert _module(p) == "zarr_files"
    data, kw, meta = _only(read(p))
    assert kw["multiscale"] and isinstance(data, list) and len(data) == 3
    assert all(isinstance(level, da.Array) for level in data)
    assert [lv.shape for lv in data] == [(3, 64, 48), (3, 32, 24), (3, 16, 12)]
    np.testing.assert_array_equal(np.asarray(data[0]), vol)
    assert kw["scale"] == [2.0, 0.5, 0.5] and meta["units"]["unit"] == "um"
    assert meta["units"]["format"] == "ome-zarr"


def test_plain_zarr_array_and_groups(tmp_path):
    import zarr

    a = np.arange(2 * 6 * 7, dtype=np.float32).reshape(2, 6, 7)
    zarr.create_array(str(tmp_path / "a.zarr"), data=a)
    data, kw, meta = _only(read(tmp_path / "a.zarr"))
    assert isinstance(data, da.Array)
    np.testing.assert_array_equal(np.asarray(data), a)
    assert meta["units"]["unit"] == "pixel"
    g = zarr.open_group(str(tmp_path / "g.zarr"), mode="w")
    g.create_array("only", data=a[0])
    data, kw, _ = _only(read(tmp_path / "g.zarr"))
    np.testing.assert_array_equal(np.asarray(data), a[0])
    g.create_array("second", data=a[1])
    with pytest.raises(InputError, match="2 arrays"):
        read(tmp_path / "g.zarr")


# ---------------------------------------------------------------------- TIFF
def test_ome_tiff_physical_size_units_and_lazy(tmp_path):
    vol = np.random.default_rng(3).random((4, 30, 20)).astype(np.float32)
    p = write_ome_tiff(tmp_path / "cells.ome.tif", vol, xy=0.25, z=400.0, z_unit="nm")
    assert _module(p) == "tiff"
    data, kw, meta = _only(read(p))
    assert isinstance(data, da.Array) and data.chunks[0] == (1, 1, 1, 1)
    np.testing.assert_array_equal(np.asarray(data[1]), vol[1])
    np.testing.assert_allclose(kw["scale"], [0.4, 0.25, 0.25])  # z converted nm -> µm
    assert meta["units"]["unit"] == "um" and meta["units"]["format"] == "ome-tiff"
    assert kw["name"] == "cells"


def test_imagej_and_plain_tiff(tmp_path):
    import tifffile

    vol = np.random.default_rng(4).random((3, 16, 16)).astype(np.float32)
    tifffile.imwrite(tmp_path / "ij.tif", vol, imagej=True, resolution=(1 / 0.3, 1 / 0.3),
                     metadata={"spacing": 1.5, "unit": "um", "axes": "ZYX"})
    _, kw, meta = _only(read(tmp_path / "ij.tif"))
    np.testing.assert_allclose(kw["scale"], [1.5, 0.3, 0.3])
    assert meta["units"]["unit"] == "um"
    tifffile.imwrite(tmp_path / "plain.tiff", vol[0])
    data, kw, meta = _only(read(tmp_path / "plain.tiff"))
    assert isinstance(data, np.ndarray) and "scale" not in kw
    np.testing.assert_array_equal(data, vol[0])


def test_project_sample_tiff_opens():
    p = ROOT / "sample_data" / "atoms_blurred.tif"
    data, kw, meta = _only(read(p))
    import tifffile

    np.testing.assert_array_equal(data, tifffile.imread(p))
    assert data.shape == (128, 128) and meta["units"]["source"] == str(p)


def test_misnamed_and_unknown_files(tmp_path):
    (tmp_path / "fake.tif").write_bytes(b"not a tiff at all")
    assert reader_for(tmp_path / "fake.tif") is None
    with pytest.raises(InputError, match="not a format napari-invrec reads"):
        read(tmp_path / "fake.tif")
