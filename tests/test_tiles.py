"""Tiled reconstruction (engine.tiles): agreement with the untiled run, chunked storage, memory
planning, out-of-memory halving and the errors, all before any work.

Agreement is measured as max |tiled - untiled| / (range of the untiled result) on the image
minus a border of the tiling's halo: near the border the untiled run sees the image's own edge
(TV's Neumann boundary, a network's zero padding) where a periodic tile sees the opposite side.
The halo is designed for a boundary error of 1e-5 of the range (engine.tile_halo.EPS); the
promised agreement is 1e-4.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import napari_invrec as ir
from napari_invrec.core.data.phantoms import camera
from napari_invrec.core.errors import CancelledError, InputError, ResourceError
from napari_invrec.engine import tile_io, tiles
from napari_invrec.engine.history import IterateHistory
from napari_invrec.engine.tile_grid import split_axis

TOL = 1e-4

pytestmark = pytest.mark.usefixtures("one_thread")


def _data(op_name: str, n: int, seed: int = 1, **op_params):
    """A camera image in [1, 4] (so normalisation applies) and its noisy measurement."""
    x = (camera(n) * 3.0 + 1.0).astype(np.float32)
    op = ir.make_operator(op_name, (n, n), device="cpu", **op_params)
    return op, ir.simulate(x, op, sigma=0.01, seed=seed)


def _rel(a, b, margin: int) -> float:
    a, b = np.asarray(a), np.asarray(b)
    d = np.abs(a - b)[margin:a.shape[0] - margin, margin:a.shape[1] - margin]
    return float(d.max() / (b.max() - b.min()))


def test_richardson_lucy_tiled_matches_untiled():
    op, y = _data("blur", 256)
    ref = ir.reconstruct(y, op, "richardson-lucy", iters=20)
    res = ir.reconstruct_tiled(y, op, "richardson-lucy", tile=64, iters=20)
    t = res.provenance["tiling"]
    assert t["tiles"] == 16 and t["grid"] == [4, 4] and t["halo"] > 0
    assert res.provenance["normalise"]["scale"] == pytest.approx(
        ref.provenance["normalise"]["scale"], rel=1e-6)
    assert _rel(res.x, ref.x, t["halo"]) < TOL
    # the periodic halo continues the blur's own boundary: even the border agrees
    assert _rel(res.x, ref.x, 0) < TOL
    assert res.steps == ref.steps
    assert res.metric_history["residual"] == pytest.approx(ref.metric_history["residual"],
                                                           rel=1e-3)
    assert res.provenance["measurement"] == ref.provenance["measurement"]


def test_tv_fista_tiled_matches_untiled_away_from_border():
    op, y = _data("blur", 384)
    ref = ir.reconstruct(y, op, "tv-fista", lam=0.01, iters=20)
    res = ir.reconstruct_tiled(y, op, "tv-fista", tile=128, lam=0.01, iters=20)
    t = res.provenance["tiling"]
    assert t["row_cuts"] == [0, 128, 256, 384]
    margin = t["halo"]
    assert margin < 128  # the compared region holds both seams
    assert _rel(res.x, ref.x, margin) < TOL


def test_dpir_network_tiled_matches_untiled():
    """A shipped DRUNet (receptive radius measured from its gradient) in DPIR on denoising;
    clipped windows meet the image border where the untiled run does."""
    op, y = _data("denoise", 256)
    kw = {"iters": 3, "init": "adjoint"}
    ref = ir.reconstruct(y, op, "dpir", **kw)
    res = ir.reconstruct_tiled(y, op, "dpir", tile=128, **kw)
    t = res.provenance["tiling"]
    assert t["tiles"] == 4 and t["align"] == 8 and t["boundary"] == "clip"
    assert "receptive radius" in t["halo_rule"]
    assert _rel(res.x, ref.x, t["halo"]) < TOL
    assert _rel(res.x, ref.x, 0) < TOL


def test_inpainting_mask_cut_to_tiles():
    op, y = _data("inpaint", 256, keep=0.5)
    ref = ir.reconstruct(y, op, "tv-fista", lam=0.01, iters=30)
    res = ir.reconstruct_tiled(y, op, "tv-fista", tile=96, lam=0.01, iters=30)
    assert res.provenance["tiling"]["tiles"] == 9
    assert _rel(res.x, ref.x, res.provenance["tiling"]["halo"]) < TOL
    assert res.provenance["operator"]["params"]["mask"] == "random"


def test_superres_tiles_on_the_measurement_grid():
    """Super-resolution tiles are cut on the low-resolution grid (cores and halo a multiple
    of the factor on the image grid); its norm comes from power iteration on each tile."""
    op, y = _data("superres", 256, factor=2)
    ref = ir.reconstruct(y, op, "tv-fista", lam=0.01, iters=20)
    res = ir.reconstruct_tiled(y, op, "tv-fista", tile=64, lam=0.01, iters=20)
    t = res.provenance["tiling"]
    assert t["factor"] == 2 and t["tiles"] == 4 and np.asarray(res.x).shape == (256, 256)
    assert _rel(res.x, ref.x, t["halo"]) < TOL


def test_custom_mask_from_a_spec():
    op, y = _data("inpaint", 128, keep=0.6)
    spec = {"operator": "inpaint", "params": {"mask": "custom", "mask_array": op.mask}}
    ref = ir.reconstruct(y, op, "adjoint")
    res = ir.reconstruct_tiled(y, spec, "adjoint", tile=64)
    np.testing.assert_allclose(np.asarray(res.x), ref.x, atol=1e-6)
    assert set(res.arrays) == {"mask_array"}


def test_one_tile_when_the_image_fits_is_the_untiled_run():
    op, y = _data("blur", 128)
    ref = ir.reconstruct(y, op, "richardson-lucy", iters=10)
    res = ir.reconstruct_tiled(y, op, "richardson-lucy", iters=10)
    assert res.provenance["tiling"]["tiles"] == 1
    np.testing.assert_allclose(np.asarray(res.x), ref.x, atol=1e-5 * float(np.ptp(ref.x)))


def test_auto_tile_shrinks_with_available_memory():
    from napari_invrec.engine.tiles import run_tiled

    op, y = _data("blur", 256)
    big = run_tiled(y, op, "richardson-lucy", {"iters": 5}, available={"cpu": 2 ** 40})
    assert big.provenance["tiling"]["tiles"] == 1
    small = run_tiled(y, op, "richardson-lucy", {"iters": 5}, available={"cpu": 6 * 2 ** 20})
    t = small.provenance["tiling"]
    assert t["tiles"] > 1 and t["tile"] < 256
    assert t["estimate_bytes"] <= t["budget_bytes"]
    assert _rel(small.x, big.x, 0) < TOL
    with pytest.raises(ResourceError, match="smallest tile"):
        run_tiled(y, op, "richardson-lucy", {"iters": 5}, available={"cpu": 2 ** 20})


def test_zarr_in_zarr_out_never_whole(tmp_path, monkeypatch):
    import dask.array as da
    import zarr

    op, y = _data("blur", 256)
    src = zarr.create_array(str(tmp_path / "y.zarr"), shape=y.shape, chunks=(64, 64),
                            dtype="float32")
    src[...] = y
    blocks, windows = [], []
    block = tile_io.Source.block

    def spy_block(self, r0, r1, c0, c1):
        blocks.append((r1 - r0, c1 - c0))
        return block(self, r0, r1, c0, c1)

    real = tiles.run_tile

    def spy_tile(tile, ctx, sink):
        windows.append(tile.shape)
        return real(tile, ctx, sink)

    monkeypatch.setattr(tile_io, "STRIP_BYTES", 64 * 256 * 4)  # the scan reads 64-row strips
    monkeypatch.setattr(tile_io.Source, "block", spy_block)
    monkeypatch.setattr(tiles, "run_tile", spy_tile)
    frame = 256 * 256 * 4
    res = ir.reconstruct_tiled(str(tmp_path / "y.zarr"), op, "richardson-lucy", tile=64,
                               out=tmp_path / "x.zarr", history_budget=3 * frame, iters=12)
    t = res.provenance["tiling"]
    side = 64 + 2 * t["pad"][0]
    assert len(windows) == 16 and max(max(w) for w in windows) <= side
    assert blocks and all(b[0] * b[1] < 256 * 256 for b in blocks)  # never the whole image
    out = zarr.open_array(str(tmp_path / "x.zarr"), mode="r")
    assert out.nchunks_initialized == out.nchunks
    assert out.attrs[tile_io.ATTR]["kind"] == "result"
    assert isinstance(res.x, da.Array) and isinstance(res.iterates, da.Array)
    ref = ir.reconstruct(y, op, "richardson-lucy", iters=12)
    assert _rel(res.x, ref.x, 0) < TOL
    h = IterateHistory(3 * frame)
    for k in range(1, 13):
        h.add(k, {"x": np.zeros((256, 256), np.float32)}, final=k == 12)
    assert res.steps == h.steps and res.iterates.shape == (len(h.steps), 256, 256)
    np.testing.assert_allclose(np.asarray(res.iterates[-1]), np.asarray(res.x), atol=1e-6)
    hist = zarr.open_array(str(tmp_path / "x.history.zarr"), mode="r")
    assert hist.attrs[tile_io.ATTR]["steps"] == h.steps
    assert np.array_equal(zarr.open_array(str(tmp_path / "y.zarr"), mode="r")[...], y)


def test_out_of_memory_halves_the_tile(monkeypatch):
    real = tiles.run_tile

    def fake_oom(tile, ctx, sink):
        if max(tile.shape) > 150:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (fake)")
        return real(tile, ctx, sink)

    monkeypatch.setattr(tiles, "run_tile", fake_oom)
    op, y = _data("blur", 256)
    seen = []
    res = ir.reconstruct_tiled(y, op, "richardson-lucy", tile=256, halo=8, iters=8,
                               progress=lambda p: seen.append(p.message) if p.message else None)
    t = res.provenance["tiling"]
    assert t["tile"] == 64 and len(t["warnings"]) == 2 and seen == t["warnings"]
    assert "retrying with 128 px" in seen[0] and "retrying with 64 px" in seen[1]
    ref = ir.reconstruct(y, op, "richardson-lucy", iters=8)
    assert _rel(res.x, ref.x, 0) < 1e-3  # halo 8 px forced: looser than the derived halo

    def always(tile, ctx, sink):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory (fake)")

    monkeypatch.setattr(tiles, "run_tile", always)
    with pytest.raises(ResourceError, match="below the smallest tile"):
        ir.reconstruct_tiled(y, op, "richardson-lucy", tile=128, iters=8)


def test_cancel_stops_within_a_step():
    import threading

    op, y = _data("blur", 128)
    ev = threading.Event()

    def stop(p):
        if p.step == 2:
            ev.set()

    with pytest.raises(CancelledError, match="tile 1/4"):
        ir.reconstruct_tiled(y, op, "richardson-lucy", tile=64, iters=10, progress=stop,
                             cancel=ev)


@pytest.mark.parametrize("op_name, method, kw, match", [
    ("mri", "adjoint", {}, "not local.*blur, denoise, inpaint, superres"),
    ("blur", "tikhonov", {}, "no locality rule.*richardson-lucy"),
    ("blur", "tv-fista", {"tol": 1e-3}, "tol"),
    ("blur", "langevin-tv", {}, "random samples"),
    ("blur", "wiener", {"nsr": 0.0}, "nsr > 0"),
])
def test_non_local_runs_are_refused(op_name, method, kw, match):
    op = ir.make_operator(op_name, (64, 64), device="cpu")
    y = np.zeros(op.measurement_shape, np.complex64 if op.complex_measurement else np.float32)
    with pytest.raises(InputError, match=match):
        ir.reconstruct_tiled(y, op, method, tile=64, **kw)


def test_bad_tiles_and_paths_are_refused_before_work(tmp_path, monkeypatch):
    import zarr

    monkeypatch.setattr(tiles, "run_tile", lambda *a: pytest.fail("work started"))
    op, y = _data("blur", 128)
    with pytest.raises(InputError, match="smaller than the halo"):
        ir.reconstruct_tiled(y, op, "richardson-lucy", tile=16, iters=30)
    with pytest.raises(InputError, match="'auto' or a whole number"):
        ir.reconstruct_tiled(y, op, "richardson-lucy", tile="big")
    with pytest.raises(InputError, match="does not exist"):
        ir.reconstruct_tiled(y, op, "richardson-lucy", out=tmp_path / "no" / "x.zarr")
    (tmp_path / "x.zarr").write_text("mine")
    with pytest.raises(InputError, match="not a tiled napari-invrec output"):
        ir.reconstruct_tiled(y, op, "richardson-lucy", out=tmp_path / "x.zarr")
    zarr.create_array(str(tmp_path / "y.zarr"), data=y)
    with pytest.raises(InputError, match="never overwrite the input"):
        ir.reconstruct_tiled(str(tmp_path / "y.zarr"), op, "richardson-lucy",
                             out=tmp_path / "y.zarr")
    with pytest.raises(InputError, match="integer"):
        ir.reconstruct_tiled(y.astype(np.int16), op, "richardson-lucy")
    bad = y.copy()
    bad[3, 4] = np.nan
    with pytest.raises(InputError, match="NaN"):
        ir.reconstruct_tiled(bad, op, "richardson-lucy")
    with pytest.raises(InputError, match="unknown operator"):
        ir.reconstruct_tiled(y, {"operator": "nope"}, "adjoint")


def test_split_axis_is_a_partition_of_unity():
    ax = split_axis(1000, 300, halo=20, align=8, blend=32)
    assert ax.cuts[0] == 0 and ax.cuts[-1] == 1000 and all(c % 8 == 0 for c in ax.cuts[1:-1])
    total = np.zeros(1000)
    for i in range(ax.n):
        lo, hi, w = ax.contribution(i)
        assert ax.cuts[i] - ax.pad + ax.pad // 2 <= lo or i == 0
        total[lo:hi] += w
    np.testing.assert_allclose(total, 1.0, atol=1e-6)
    assert ax.pad >= 20 + ax.blend // 2 and ax.pad % 8 == 0


def test_cli_tile_to_zarr(tmp_path):
    import zarr

    from napari_invrec.cli import main

    op, y = _data("blur", 128)
    np.save(tmp_path / "y.npy", y)
    rc = main(["reconstruct", "--operator", "blur", "--method", "richardson-lucy", "--iters",
               "5", "--input", str(tmp_path / "y.npy"), "--output", str(tmp_path / "x.zarr"),
               "--tile", "64", "--quiet"])
    assert rc == 0
    x = zarr.open_array(str(tmp_path / "x.zarr"), mode="r")[...]
    ref = ir.reconstruct(y, op, "richardson-lucy", iters=5)
    assert _rel(x, ref.x, 0) < TOL
    assert (tmp_path / "x.zarr.json").is_file()
    assert main(["reconstruct", "--operator", "mri", "--method", "adjoint", "--input",
                 str(tmp_path / "y.npy"), "--output", str(tmp_path / "z.zarr"), "--tile",
                 "auto", "--quiet"]) == 2
