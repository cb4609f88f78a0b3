"""GUI tests of the reader and writer contributions: files written by each format's own library
opened through napari (``viewer.open(path, plugin="napari-invrec")``) and reconstructed in the
Reconstruct dock; results saved with ``viewer.layers.save(..., plugin="napari-invrec")``,
reopened and re-run."""

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

from napari_invrec import api

pytestmark = pytest.mark.gui
ROOT = Path(__file__).resolve().parents[1]
PLUGIN = "napari-invrec"


def _reconstruct(viewer, layer, wait_idle, operator="denoise", method="tv-fista", **params):
    from napari_invrec._widgets.reconstruct import ReconstructWidget

    w = ReconstructWidget(viewer)
    w.measurement.value = layer
    w.op_panel.operator.value = operator
    if params.get("sigma") is not None:
        w.op_panel.form.set_values({"sigma": params.pop("sigma")})
    w.method.value = method
    w.method_form.set_values(params)
    before = set(viewer.layers)
    w.run()
    wait_idle(w)
    (res,) = [lay for lay in viewer.layers if lay not in before
              and lay.metadata.get("invrec", {}).get("kind") == "result"]
    return res


def test_dicom_series_opens_lazily_with_mm_scale_and_reconstructs(make_napari_viewer, tmp_path,
                                                                  monkeypatch, wait_idle):
    from napari_invrec.formats import dicom

    folder = write_ct_series(tmp_path / "ct")
    reads = []
    real = dicom._pixels
    monkeypatch.setattr(dicom, "_pixels", lambda f: reads.append(Path(f).name) or real(f))
    viewer = make_napari_viewer()
    (layer,) = viewer.open(str(folder), plugin=PLUGIN)  # a folder reaches the reader
    assert isinstance(layer.data, da.Array) and layer.data.shape == (4, 32, 40)
    np.testing.assert_allclose(layer.scale, [CT_DZ, *CT_PIXEL])
    assert len(set(reads)) <= 2  # the plane in view (+ one for contrast limits), not all 4
    expected, order = ct_expected()
    viewer.dims.set_current_step(0, 1)
    reads.clear()
    res = _reconstruct(viewer, layer, wait_idle, iters=5, lam=0.01)
    # the plane in view was reconstructed; the series was never read as a whole
    assert f"IM{order[1]}" in reads and len(set(reads)) <= 2
    assert res.data.shape == (32, 40) and np.isfinite(res.data).all()
    # a denoised CT slice: still the slice (in HU), not something else
    assert np.corrcoef(res.data.ravel(), expected[1].ravel())[0, 1] > 0.9
    assert abs(float(res.data.mean()) - float(expected[1].mean())) < 0.05 * np.ptp(expected[1])


@pytest.mark.parametrize("fmt", ["mrc", "ome-zarr", "ome-tiff", "sample-tiff"])
def test_formats_open_with_their_scale(make_napari_viewer, tmp_path, fmt, wait_idle):
    vol = np.random.default_rng(7).random((3, 32, 32)).astype(np.float32)
    if fmt == "mrc":
        path, scale = write_mrc(tmp_path / "v.mrc", vol, voxel=(1.5, 1.5, 3.0)), [3.0, 1.5, 1.5]
    elif fmt == "ome-zarr":
        path = write_ome_zarr(tmp_path / "v.ome.zarr", vol, scale={"z": 2.0, "y": 0.5, "x": 0.5})
        scale = [2.0, 0.5, 0.5]
    elif fmt == "ome-tiff":
        path, scale = write_ome_tiff(tmp_path / "v.ome.tif", vol, xy=0.25, z=1.0,
                                     z_unit="\u00b5m"), [1.0, 0.25, 0.25]
    else:
        path, scale = ROOT / "sample_data" / "atoms_blurred.tif", [1.0, 1.0]
    viewer = make_napari_viewer()
    (layer,) = viewer.open(str(path), plugin=PLUGIN)
    np.testing.assert_allclose(layer.scale, scale)
    level0 = layer.data[0] if layer.multiscale else layer.data
    if fmt != "sample-tiff":
        assert isinstance(level0, da.Array)
        np.testing.assert_array_equal(np.asarray(level0), vol)
    assert layer.metadata["invrec"]["kind"] == "image"
    if fmt in ("mrc", "ome-tiff"):  # a plane of the lazy stack, reconstructed in the dock
        viewer.dims.set_current_step(0, 2)
        res = _reconstruct(viewer, layer, wait_idle, method="tikhonov", iters=5)
        assert res.data.shape == (32, 32)
        assert np.corrcoef(res.data.ravel(), vol[2].ravel())[0, 1] > 0.9


def test_reconstruct_multiscale_ome_zarr(make_napari_viewer, tmp_path, wait_idle):
    from napari_invrec.core.data import shepp_logan

    x = shepp_logan(64)
    path = write_ome_zarr(tmp_path / "p.ome.zarr", x, scale={"y": 0.5, "x": 0.5}, levels=2)
    viewer = make_napari_viewer()
    (layer,) = viewer.open(str(path), plugin=PLUGIN)
    assert layer.multiscale
    res = _reconstruct(viewer, layer, wait_idle, method="tikhonov", iters=5)
    assert res.data.shape == (64, 64)  # the full-resolution level, not napari's thumbnail
    np.testing.assert_allclose(res.scale[-2:], [0.5, 0.5])  # the file's pixel size


def test_reconstruct_save_reopen_rerun(make_napari_viewer, tmp_path, wait_idle):
    """A result made in the dock is saved by napari's save with our writer (selected layer),
    reopened with the same data and record, and re-run from the file alone."""
    viewer = make_napari_viewer()
    (raw,) = viewer.open(str(ROOT / "sample_data" / "atoms_blurred.tif"), plugin=PLUGIN)
    res = _reconstruct(viewer, raw, wait_idle, operator="blur", method="tikhonov", sigma=2.0,
                       iters=10)
    inv = res.metadata["invrec"]
    assert inv["kind"] == "result" and inv["measurement"] is not None
    for suffix in (".zarr", ".tif", ".npy"):
        viewer.layers.selection.active = res
        p = tmp_path / f"result{suffix}"
        written = viewer.layers.save(str(p), selected=True, plugin=PLUGIN)
        assert written and Path(written[0]) == p
        (back,) = viewer.open(str(p), plugin=PLUGIN)
        assert back.name == f"{res.name} [1]"  # the same name (napari numbers the copy)
        np.testing.assert_array_equal(np.asarray(back.data), res.data)
        got = back.metadata["invrec"]
        assert got["provenance"] == inv["provenance"] and got["kind"] == "result"
        np.testing.assert_array_equal(got["measurement"], inv["measurement"])
        assert got["metric_history"] == inv["metric_history"]
        report = api.rerun_file(p)
        print(f"\nGUI result{suffix}: max |diff| {report.max_abs_diff:.3g}, relative "
              f"{report.relative_diff:.3g}")
        assert report.reproduced
        viewer.layers.remove(back)
