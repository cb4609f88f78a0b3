"""Batch reconstruction (engine.batch, reconstruct_many, `napari-invrec batch`) on dask.

Small images (48 px) and few iterations: the properties hold at any size. The cluster tests
start real worker processes (a LocalCluster, then `dask scheduler` + `dask worker`).
"""

from __future__ import annotations

import hashlib
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import tifffile

from napari_invrec import api
from napari_invrec.core.data import shepp_logan
from napari_invrec.core.errors import InputError
from napari_invrec.formats.saved import read_saved

N, SIZE, ITERS = 3, 48, 12
PARAMS = {"lam": 0.01, "iters": ITERS}
EPS32 = float(np.finfo(np.float32).eps)


@pytest.fixture(scope="module")
def op():
    return api.make_operator("blur", (SIZE, SIZE), sigma=1.5, device="cpu")


def _measurements(op, n=N):
    x = shepp_logan(SIZE)
    return [api.simulate(x * (1.0 - 0.1 * i), op, sigma=0.02, seed=i).astype(np.float32)
            for i in range(n)]


@pytest.fixture()
def folder(tmp_path, op):
    """``in/`` holding N measurements as TIFF files."""
    d = tmp_path / "in"
    d.mkdir()
    for i, y in enumerate(_measurements(op)):
        tifffile.imwrite(d / f"y{i}.tif", y)
    return d


def _digest(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def _result(path):
    return np.asarray(read_saved(path).data)


def _tol(x, iters=ITERS):
    """A float32 bound for two runs of the same arithmetic: one rounding per iteration."""
    return 4 * iters * EPS32 * float(np.abs(x).max())


# ---------------------------------------------------------------- results and provenance
def test_batch_equals_one_by_one_runs(folder, tmp_path, op):
    from napari_invrec.engine.execute import run_to_result

    before = _digest(folder)
    seen = []
    summary = api.reconstruct_many(folder, op, "tv-fista", out=tmp_path / "out", threads=2,
                                   seed=3, progress=seen.append, **PARAMS)
    assert summary.counts == {"done": N} and not summary.cancelled
    assert [ev.done for ev in seen] == list(range(1, N + 1))
    assert sorted(ev.name for ev in seen) == [f"y{i}" for i in range(N)]
    for i in range(N):
        y = tifffile.imread(folder / f"y{i}.tif")
        ref = run_to_result(y, op, "tv-fista", PARAMS, seed=3, threads=1).x
        out = tmp_path / "out" / f"y{i}.tif"
        got = _result(out)
        assert got.shape == ref.shape
        assert np.abs(got - ref).max() <= _tol(ref)
        prov = read_saved(out).invrec["provenance"]
        assert prov["method"] == "tv-fista" and prov["seed"] == 3
        assert prov["params"]["lam"] == 0.01 and prov["operator"] == op.spec()
        assert prov["input"] == str(folder / f"y{i}.tif")
    assert _digest(folder) == before  # inputs are only read
    report = api.rerun_file(tmp_path / "out" / "y1.tif")  # an output repeats from itself
    assert report.reproduced


def test_stack_zarr_and_dask_inputs_give_the_same_outputs(tmp_path, op):
    import dask.array as da
    import zarr

    stack = np.stack(_measurements(op))
    z = zarr.open_array(str(tmp_path / "stack.zarr"), mode="w", shape=stack.shape,
                        chunks=(1, SIZE, SIZE), dtype=stack.dtype, zarr_format=2)
    z[...] = stack
    runs = {"numpy": stack, "dask": da.from_array(stack, chunks=(1, SIZE, SIZE)),
            "zarr": tmp_path / "stack.zarr"}
    outs = {}
    for kind, inputs in runs.items():
        s = api.reconstruct_many(inputs, op, "tv-fista", out=tmp_path / kind, fmt="npy",
                                 threads=1, **PARAMS)
        assert s.counts == {"done": N}
        outs[kind] = [np.load(o.outputs[0]) for o in s.outcomes]
    assert [o.name for o in s.outcomes] == [f"stack_{i:04d}" for i in range(N)]
    for kind in ("dask", "zarr"):
        for a, b in zip(outs["numpy"], outs[kind]):
            np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------- resume
def test_resume_skips_matching_outputs_and_recomputes_changed_ones(folder, tmp_path, op):
    out = tmp_path / "out"
    api.reconstruct_many(folder, op, "tv-fista", out=out, threads=2, **PARAMS)
    stamps = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    time.sleep(0.02)
    again = api.reconstruct_many(folder, op, "tv-fista", out=out, threads=2, **PARAMS)
    assert again.counts == {"skipped": N}
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == stamps
    # one input changes: only its output is recomputed, and the outcome says why
    y = tifffile.imread(folder / "y1.tif")
    tifffile.imwrite(folder / "y1.tif", y + 0.01)
    third = api.reconstruct_many(folder, op, "tv-fista", out=out, threads=2, **PARAMS)
    status = {o.name: o for o in third.outcomes}
    assert status["y1"].status == "recomputed" and "input data" in status["y1"].message
    assert status["y0"].status == status["y2"].status == "skipped"
    assert (out / "y1.tif").stat().st_mtime_ns != stamps["y1.tif"]
    assert (out / "y0.tif").stat().st_mtime_ns == stamps["y0.tif"]
    # other parameters: every output is recomputed, naming the parameter
    fourth = api.reconstruct_many(folder, op, "tv-fista", out=out, threads=2,
                                  lam=0.02, iters=ITERS)
    assert fourth.counts == {"recomputed": N}
    assert all("lam 0.01 -> 0.02" in o.message for o in fourth.outcomes)
    assert read_saved(out / "y0.tif").invrec["provenance"]["params"]["lam"] == 0.02
    # no resume: recomputed although up to date
    fifth = api.reconstruct_many(folder, op, "tv-fista", out=out, threads=2, resume=False,
                                 lam=0.02, iters=ITERS)
    assert fifth.counts == {"done": N}


# ---------------------------------------------------------------- failures and cancel
def test_bad_items_are_reported_and_the_others_succeed(folder, tmp_path, op):
    np.save(folder / "nan.npy", np.full((SIZE, SIZE), np.nan, np.float32))
    np.save(folder / "small.npy", np.zeros((SIZE // 2, SIZE // 2), np.float32))
    (folder / "broken.tif").write_bytes(b"II*\x00 not really a tiff")
    out = tmp_path / "out"
    out.mkdir()
    (out / "y2.tif").write_bytes(b"someone else's file")  # never overwritten
    before = _digest(folder)
    summary = api.reconstruct_many(folder, op, "tv-fista", out=out, threads=2, **PARAMS)
    status = {o.name: o for o in summary.outcomes}
    assert {k for k, o in status.items() if o.status == "done"} == {"y0", "y1"}
    failed = {o.name: o.message for o in summary.failed}
    assert set(failed) == {"nan", "small", "broken", "y2"}
    assert "NaN" in failed["nan"] and "shape" in failed["small"]
    assert "cannot read" in failed["broken"] and "not a result saved" in failed["y2"]
    assert all("\n" not in m for m in failed.values())
    assert any("broken: failed" in line for line in summary.lines())
    assert (out / "y2.tif").read_bytes() == b"someone else's file"
    assert _digest(folder) == before


def test_cancel_stops_the_batch(tmp_path, op):
    stack = np.stack(_measurements(op, 6))
    cancel = threading.Event()

    def first_one_cancels(ev):
        cancel.set()

    summary = api.reconstruct_many(stack, op, "tv-fista", out=tmp_path / "out", threads=1,
                                   cancel=cancel, progress=first_one_cancels, lam=0.01,
                                   iters=400)
    assert summary.cancelled
    done = [o for o in summary.outcomes if o.status == "done"]
    assert len(done) == 1 and summary.counts["cancelled"] == 5
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [f"{done[0].name}.tif"]
    # a cancel set before the start runs nothing
    cancel2 = threading.Event()
    cancel2.set()
    s2 = api.reconstruct_many(stack, op, "tv-fista", out=tmp_path / "out2", cancel=cancel2,
                              **PARAMS)
    assert s2.counts == {"cancelled": 6} and not list((tmp_path / "out2").iterdir())


# ---------------------------------------------------------------- refusals before work
@pytest.mark.parametrize("case, message", [
    ("glob", "no file matches"),
    ("out-is-file", "is a file"),
    ("out-is-input-folder", "holds the input"),
    ("both-schedulers", "not both"),
    ("bad-address", "unknown scheduler address"),
    ("no-port", "needs a host and a port"),
    ("bad-param", "lam"),
    ("stack-ndim", "in-memory stack"),
    ("zarr-group", "zarr group"),
    ("same-name", "same output"),
])
def test_refusals_before_any_work(case, message, folder, tmp_path, op):
    kw = dict(out=tmp_path / "out", **PARAMS)
    inputs = folder
    if case == "glob":
        inputs = str(tmp_path / "nothing" / "*.tif")
    elif case == "out-is-file":
        (tmp_path / "f").write_text("x")
        kw["out"] = tmp_path / "f"
    elif case == "out-is-input-folder":
        kw["out"] = folder
    elif case == "both-schedulers":
        kw.update(workers=2, scheduler="tcp://127.0.0.1:8786")
    elif case == "bad-address":
        kw["scheduler"] = "http://127.0.0.1:8786"
    elif case == "no-port":
        kw["scheduler"] = "tcp://127.0.0.1"
    elif case == "bad-param":
        kw["lam"] = -1.0
    elif case == "stack-ndim":
        inputs = np.zeros((SIZE, SIZE), np.float32)
    elif case == "zarr-group":
        import zarr

        zarr.open_group(str(tmp_path / "g.zarr"), mode="w", zarr_format=2)
        inputs = tmp_path / "g.zarr"
    elif case == "same-name":
        other = tmp_path / "other"
        other.mkdir()
        np.save(other / "y0.npy", np.zeros((SIZE, SIZE), np.float32))
        inputs = [folder, other]
    with pytest.raises(InputError, match=message) as info:
        api.reconstruct_many(inputs, op, "tv-fista", **kw)
    assert "\n" not in str(info.value)
    if case != "out-is-file":
        assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_unreachable_scheduler_is_refused_within_the_timeout(folder, tmp_path, op):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t0 = time.perf_counter()
    with pytest.raises(InputError, match="cannot connect to the dask scheduler"):
        api.reconstruct_many(folder, op, "tv-fista", out=tmp_path / "out",
                             scheduler=f"tcp://127.0.0.1:{port}", timeout=1.0, **PARAMS)
    assert time.perf_counter() - t0 < 15
    assert not list((tmp_path / "out").iterdir())


# ---------------------------------------------------------------- command line
def test_cli_batch_over_a_glob_writes_one_output_per_input(folder, tmp_path, capsys):
    from napari_invrec.cli import main

    out = tmp_path / "res"
    argv = ["batch", str(folder / "*.tif"), "--operator", "blur", "--sigma", "1.5",
            "--method", "tv-fista", "--lam", "0.01", "--iters", str(ITERS), "--out", str(out)]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == [f"y{i}.tif" for i in range(N)]
    assert err.count(": done in") == N
    for i in range(N):
        assert read_saved(out / f"y{i}.tif").invrec["provenance"]["operator"]["params"][
            "sigma"] == 1.5
    # the same with --input, resumed: nothing to do
    assert main(argv[:1] + ["--input", str(folder / "y*.tif")] + argv[2:]) == 0
    assert capsys.readouterr().err.count("skipped (up to date)") == N
    # a failing input: status 1, the others done
    np.save(folder / "nan.npy", np.full((SIZE, SIZE), np.nan, np.float32))
    assert main(["batch", str(folder)] + argv[2:-1] + [str(tmp_path / "res2")]) == 1
    err = capsys.readouterr().err
    assert "nan: FAILED: measurement contains" in err and err.count(": done in") == N


@pytest.mark.parametrize("extra, message", [
    (["--input", "{tmp}/none/*.tif"], "no file matches"),
    (["{tmp}/in", "--out", "{tmp}/file"], "is a file"),
    (["{tmp}/in", "--scheduler", "udp://x:1"], "unknown scheduler address"),
])
def test_cli_batch_errors_are_one_line(extra, message, folder, tmp_path, capsys):
    from napari_invrec.cli import main

    (tmp_path / "file").write_text("x")
    extra = [a.format(tmp=tmp_path) for a in extra]
    argv = ["batch", *extra, "--operator", "blur", "--method", "tv-fista"]
    if "--out" not in extra:
        argv += ["--out", str(tmp_path / "res")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


# ---------------------------------------------------------------- dask.distributed
@pytest.mark.timeout(240)
def test_local_cluster_gives_the_outputs_of_the_threaded_scheduler(folder, tmp_path, op):
    threaded = api.reconstruct_many(folder, op, "tv-fista", out=tmp_path / "t", threads=2,
                                    **PARAMS)
    cluster = api.reconstruct_many(folder, op, "tv-fista", out=tmp_path / "c", workers=2,
                                   **PARAMS)
    assert "LocalCluster" in cluster.scheduler and cluster.counts == {"done": N}
    for a, b in zip(threaded.outcomes, cluster.outcomes):
        np.testing.assert_array_equal(_result(a.outputs[0]), _result(b.outputs[0]))
    # resume works across schedulers: the cluster's outputs are up to date for the threads
    assert api.reconstruct_many(folder, op, "tv-fista", out=tmp_path / "c", threads=2,
                                **PARAMS).counts == {"skipped": N}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.timeout(300)
def test_batch_on_a_scheduler_and_worker_started_as_processes(folder, tmp_path, op):
    try:
        port = _free_port()
    except OSError as e:
        pytest.skip(f"cannot bind a port on 127.0.0.1 ({e}); no local cluster possible")
    address = f"tcp://127.0.0.1:{port}"
    procs = []
    logs = [open(tmp_path / f"{n}.log", "w") for n in ("scheduler", "worker")]
    try:
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
             "--port", str(port), "--no-dashboard"], stdout=logs[0], stderr=logs[0]))
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "distributed.cli.dask_worker", address, "--nthreads", "1",
             "--nworkers", "1", "--no-dashboard", "--host", "127.0.0.1"],
            stdout=logs[1], stderr=logs[1]))
        summary = api.reconstruct_many(folder, op, "tv-fista", out=tmp_path / "out",
                                       scheduler=address, timeout=60, **PARAMS)
        assert summary.scheduler == f"dask scheduler {address}"
        assert summary.counts == {"done": N}
        ref = api.reconstruct_many(folder, op, "tv-fista", out=tmp_path / "ref", threads=1,
                                   **PARAMS)
        for a, b in zip(ref.outcomes, summary.outcomes):
            np.testing.assert_array_equal(_result(a.outputs[0]), _result(b.outputs[0]))
        # cancel reaches the running item on the worker: it is free again at once
        cancel = threading.Event()
        timer = threading.Timer(1.0, cancel.set)
        timer.start()
        t0 = time.perf_counter()
        stopped = api.reconstruct_many(folder, op, "tv-fista", out=tmp_path / "long",
                                       scheduler=address, cancel=cancel, lam=0.01,
                                       iters=100000)
        assert stopped.cancelled and stopped.counts == {"cancelled": N}
        assert time.perf_counter() - t0 < 10
        again = api.reconstruct_many(folder, op, "tv-fista", out=tmp_path / "again",
                                     scheduler=address, timeout=60, **PARAMS)
        assert again.counts == {"done": N}
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in reversed(procs):
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for f in logs:
            f.close()
