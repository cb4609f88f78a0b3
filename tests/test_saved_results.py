"""Saved results: OME-Zarr / TIFF / .npy with provenance, read back exactly, re-run from the file
alone (``api.rerun_file`` and ``napari-invrec rerun``), refusals, never overwriting inputs."""

from __future__ import annotations

import json
import shutil

import dask.array as da
import numpy as np
import pytest

from napari_invrec import api
from napari_invrec.cli import main
from napari_invrec.core.data import shepp_logan
from napari_invrec.core.errors import InputError
from napari_invrec.engine.layers import result_layers
from napari_invrec.engine.reproduce import RERUN_RTOL
from napari_invrec.formats import reader_for
from napari_invrec.formats.save import save_layer
from napari_invrec.formats.saved import KEY, read_saved

SUFFIXES = (".zarr", ".tif", ".npy")


@pytest.fixture(scope="module")
def truth():
    return shepp_logan(64)


@pytest.fixture(scope="module")
def mri_run(truth):
    """tv-fista on 4x-ish MRI with a custom (H, W) mask drawn for this phantom."""
    rng = np.random.default_rng(5)
    mask = (rng.random((64, 64)) < 0.25).astype(np.float32)
    mask[:, 28:36] = 1.0  # fully sampled centre
    op = api.make_operator("mri", truth.shape, mask_array=mask)
    y = api.simulate(truth, op, sigma=0.01, seed=1)
    return api.reconstruct(y, op, "tv-fista", iters=25, lam=0.002, reference=truth)


@pytest.fixture(scope="module")
def blur_run(truth):
    """tikhonov on a blur with a custom kernel array."""
    k = np.outer(np.hanning(7), np.hanning(9)).astype(np.float32)
    op = api.make_operator("blur", truth.shape, kernel="custom", kernel_array=k / k.sum())
    y = api.simulate(truth, op, sigma=0.01, seed=2)
    return api.reconstruct(y, op, "tikhonov", iters=15)


def _layers(res, name):
    return result_layers(res, name=name, scale=(0.5, 0.25))


def _assert_same_invrec(a: dict, b: dict) -> None:
    assert set(a) == set(b)
    for key, va in a.items():
        vb = b[key]
        if key == "arrays":
            assert set(va) == set(vb)
            for n in va:
                assert va[n].dtype == vb[n].dtype
                np.testing.assert_array_equal(va[n], vb[n])
        elif isinstance(va, np.ndarray) or va is None:
            assert (va is None) == (vb is None), key
            if va is not None:
                assert va.dtype == vb.dtype, key
                np.testing.assert_array_equal(va, vb)
        else:
            assert va == vb, key


# ---------------------------------------------------------------------- round trips
@pytest.mark.parametrize("suffix", SUFFIXES)
@pytest.mark.parametrize("run", ["mri_run", "blur_run"])
def test_every_layer_reads_back_exactly(tmp_path, request, run, suffix):
    res = request.getfixturevalue(run)
    for data, kw, _ in _layers(res, f"{run} · x"):
        kind = kw["metadata"]["invrec"]["kind"]
        p = tmp_path / f"{kind}{suffix}"
        save_layer(p, data, kw)
        assert reader_for(p).__module__.endswith(".saved")
        s = read_saved(p)
        assert s.kwargs["name"] == kw["name"] and s.kwargs["scale"] == [0.5, 0.25]
        assert s.kwargs["colormap"] == kw["colormap"]
        np.testing.assert_array_equal(np.asarray(s.data), data)
        assert np.asarray(s.data).dtype == np.asarray(data).dtype
        assert isinstance(s.data, da.Array) == (np.ndim(data) > 2)  # stacks come back lazy
        _assert_same_invrec(kw["metadata"]["invrec"], s.invrec)
    if run == "mri_run":  # the exact arrays: complex k-space and the custom mask
        assert np.iscomplexobj(s.invrec["measurement"]) and "mask_array" in s.invrec["arrays"]


def test_zarr_opens_as_plain_ome_zarr(tmp_path, mri_run):
    import warnings

    import tifffile

    data, kw, _ = _layers(mri_run, "tv")[0]
    save_layer(tmp_path / "r.ome.zarr", data, kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from ome_zarr.io import parse_url
        from ome_zarr.reader import Reader

    node = next(iter(Reader(parse_url(str(tmp_path / "r.ome.zarr")))()))
    np.testing.assert_array_equal(np.asarray(node.data[0]), data)
    ms = node.metadata
    assert [a["name"] for a in ms["axes"]] == ["y", "x"]
    assert ms["coordinateTransformations"][0][0]["scale"] == [0.5, 0.25]
    # the TIFF: any TIFF reader gets the displayed image; the record is JSON in the description
    save_layer(tmp_path / "r.tif", data, kw)
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "r.tif"), data)
    with tifffile.TiffFile(tmp_path / "r.tif") as tif:
        rec = json.loads(tif.pages.first.description)[KEY]
    assert rec["provenance"]["method"] == "tv-fista" and rec["kind"] == "result"
    assert rec["measurement"] == {"$array": "measurement"}


def test_writer_function_and_plain_layers(tmp_path, truth):
    from napari_invrec._writer import write_image

    stack = da.from_array(np.stack([truth, 2 * truth, 3 * truth]), chunks=(1, 64, 64))
    meta = {"name": "plain", "scale": [3.0, 1.0, 1.0], "metadata": {"note": "x"},
            "colormap": "viridis"}
    for suffix in SUFFIXES:
        written = write_image(str(tmp_path / f"plain{suffix}"), stack, meta)
        assert written[0] == str(tmp_path / f"plain{suffix}")
        s = read_saved(written[0])
        np.testing.assert_array_equal(np.asarray(s.data), np.asarray(stack))
        assert s.invrec == {} and s.metadata == {"note": "x"}
        assert s.kwargs["scale"] == [3.0, 1.0, 1.0] and s.kwargs["colormap"] == "viridis"
        with pytest.raises(InputError, match="holds no run record"):
            api.rerun_file(written[0])
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "plain.npy", "plain.npy.json", "plain.tif", "plain.zarr"]  # no arrays: no .npz
    with pytest.raises(InputError, match=r"saves \.zarr .*\.npy; change the file name"):
        write_image(str(tmp_path / "x.png"), stack, meta)


def test_never_overwrites_other_files_but_replaces_own_saves(tmp_path, truth, blur_run):
    import tifffile

    data, kw, _ = _layers(blur_run, "tk")[0]
    tifffile.imwrite(tmp_path / "input.tif", truth)
    before = (tmp_path / "input.tif").read_bytes()
    with pytest.raises(InputError, match="not a result saved by napari-invrec"):
        save_layer(tmp_path / "input.tif", data, kw)
    assert (tmp_path / "input.tif").read_bytes() == before
    np.save(tmp_path / "y.npy", truth)
    with pytest.raises(InputError, match="never overwritten"):
        save_layer(tmp_path / "y.npy", data, kw)
    # a previous save is replaced, even by a layer read lazily from that very file
    p = tmp_path / "hist.zarr"
    hist_data, hist_kw, _ = _layers(blur_run, "tk")[1]
    save_layer(p, hist_data * 0, hist_kw)
    save_layer(p, hist_data, hist_kw)
    lazy = read_saved(p)
    assert isinstance(lazy.data, da.Array)
    save_layer(p, lazy.data, lazy.layer_data()[1])
    np.testing.assert_array_equal(np.asarray(read_saved(p).data), hist_data)
    assert sorted(q.name for q in tmp_path.iterdir()) == ["hist.zarr", "input.tif", "y.npy"]


# ---------------------------------------------------------------------- re-running
@pytest.mark.parametrize("suffix", SUFFIXES)
@pytest.mark.parametrize("run", ["mri_run", "blur_run"])
def test_rerun_file_reproduces_the_saved_result(tmp_path, request, run, suffix):
    res = request.getfixturevalue(run)
    data, kw, _ = _layers(res, "r")[0]
    p = tmp_path / f"r{suffix}"
    save_layer(p, data, kw)
    report = api.rerun_file(p)
    print(f"\n{run}{suffix}: max |diff| {report.max_abs_diff:.3g}, relative "
          f"{report.relative_diff:.3g} (tolerance {RERUN_RTOL:g})")
    assert report.reproduced and report.relative_diff <= RERUN_RTOL
    np.testing.assert_allclose(report.saved, res.x, rtol=0, atol=0)
    assert report.result.provenance["params"] == res.provenance["params"]
    # a changed parameter changes the result far beyond the tolerance
    changed = api.rerun_file(p, iters=3)
    assert not changed.reproduced and changed.relative_diff > 100 * RERUN_RTOL


def test_rerun_of_history_layer(tmp_path, mri_run):
    data, kw, _ = _layers(mri_run, "r")[1]
    save_layer(tmp_path / "h.zarr", data, kw)
    report = api.rerun_file(tmp_path / "h.zarr")
    assert report.reproduced and report.saved.shape == data.shape


def _edit_zarr_array(path, name, fn):
    import zarr

    arr = zarr.open_array(str(path / "napari_invrec" / name), mode="r+")
    arr[...] = fn(arr[...])


def test_changed_mask_or_measurement_is_refused(tmp_path, mri_run):
    data, kw, _ = _layers(mri_run, "r")[0]
    p = tmp_path / "r.zarr"
    save_layer(p, data, kw)
    q = tmp_path / "m.zarr"
    shutil.copytree(p, q)
    _edit_zarr_array(p, "arrays/mask_array", lambda m: np.where(np.arange(64) == 3, 1 - m, m))
    with pytest.raises(InputError, match="mask_array differs") as e:
        api.rerun_file(p)
    assert "\n" not in str(e.value)
    _edit_zarr_array(q, "measurement", lambda y: y * np.complex64(1.001))
    with pytest.raises(InputError, match="measurement differs"):
        api.rerun_file(q)


def test_rerun_refuses_files_without_record_or_measurement(tmp_path, blur_run, truth):
    import tifffile

    tifffile.imwrite(tmp_path / "img.tif", truth)
    with pytest.raises(InputError, match="not a file saved by napari-invrec"):
        api.rerun_file(tmp_path / "img.tif")
    data, kw, _ = _layers(blur_run, "old")[0]
    old = {**kw, "metadata": {"invrec": {**kw["metadata"]["invrec"], "measurement": None}}}
    save_layer(tmp_path / "old.zarr", data, old)  # as layers made before measurements were kept
    with pytest.raises(InputError, match="holds no measurement"):
        api.rerun_file(tmp_path / "old.zarr")


# ---------------------------------------------------------------------- command line
def test_cli_rerun_exit_codes(tmp_path, blur_run, capsys):
    import zarr

    data, kw, _ = _layers(blur_run, "r")[0]
    p = tmp_path / "r.zarr"
    save_layer(p, data, kw)
    assert main(["rerun", str(p), "--output", str(tmp_path / "again.tif")]) == 0
    out = capsys.readouterr().out
    assert "reproduced" in out and "max |difference| 0" in out
    again = read_saved(tmp_path / "again.tif")
    np.testing.assert_array_equal(again.data, data)
    assert main(["rerun", str(tmp_path / "again.tif"), "--quiet"]) == 0
    assert capsys.readouterr().out == ""
    # a saved result that the run does not give: exit 1, the figure on stderr
    bad = tmp_path / "bad.zarr"
    shutil.copytree(p, bad)
    level = zarr.open_array(str(bad / "0"), mode="r+")
    level[10, 10] = level[10, 10] + 0.5
    assert main(["rerun", str(bad)]) == 1
    assert "NOT reproduced" in capsys.readouterr().err
    # refusals: exit 2 with one line
    shutil.copytree(p, tmp_path / "mask.zarr")
    _edit_zarr_array(tmp_path / "mask.zarr", "arrays/kernel_array", lambda k: np.roll(k, 1, axis=1))
    for argv, message in ((["rerun", str(tmp_path / "mask.zarr")], "kernel_array differs"),
                          (["rerun", str(tmp_path / "nothing.zarr")], "not a file saved"),
                          (["rerun", str(p), "--output", str(p)], "never overwritten|would "
                           "overwrite"),
                          (["rerun", str(p), "--output", str(tmp_path / "x.png")], "saves")):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("napari-invrec: error:")
        assert any(m in err for m in message.split("|")), err


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_record_keeps_edge_values_exactly(tmp_path, suffix):
    """Non-finite metrics, 0-d/empty/1-d/bool/string arrays and odd names survive a save."""
    inv = {"kind": "result", "metrics": {"psnr": float("inf"), "ssim": float("nan")},
           "arrays": {"a b/c": np.arange(5, dtype=np.int64), "flag": np.array([True, False])},
           "scalar": np.float32(2.5), "zero_d": np.array(3.25), "empty": np.zeros((0, 4)),
           "names": np.array(["x", "y"]), "nested": [{"w": np.ones((2, 3), np.float16)}]}
    save_layer(tmp_path / f"e{suffix}", np.zeros((4, 4), np.float32),
               {"name": "edge", "metadata": {"invrec": inv}})
    got = read_saved(tmp_path / f"e{suffix}").invrec
    assert got["metrics"]["psnr"] == float("inf") and np.isnan(got["metrics"]["ssim"])
    for key, want in (("zero_d", inv["zero_d"]), ("empty", inv["empty"])):
        assert got[key].dtype == want.dtype and got[key].shape == want.shape
        np.testing.assert_array_equal(got[key], want)
    assert got["scalar"] == 2.5 and list(got["names"]) == ["x", "y"]
    for name, want in inv["arrays"].items():
        assert got["arrays"][name].dtype == want.dtype
        np.testing.assert_array_equal(got["arrays"][name], want)
    w = got["nested"][0]["w"]
    assert w.dtype == np.float16 and w.shape == (2, 3)
