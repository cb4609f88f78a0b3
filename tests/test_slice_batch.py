"""Stacks reconstructed in batches of planes equal plane-by-plane runs.

The batched path differs from the plane loop only by the rounding of batched transforms
(a batched float32 rFFT rounds differently from B single ones, about 1e-7 relative per
transform; the complex FFT of MRI and the CT projector happen to round identically), carried
through the iterations. The worst case measured here is 8e-7 of a plane's range (20
Richardson-Lucy steps on blur, 3e-7 for varnet), so plane results must agree to
``TOL = 1e-5`` of the plane's range: ten times that, far below any algorithmic difference (a
batch-wide stopping rule or random start moves results by 1e-3 to 1 of the range).
"""

import dataclasses
import threading

import dask.array as da
import numpy as np
import pytest

import napari_invrec as ir
from napari_invrec.core.data import shepp_logan
from napari_invrec.core.errors import CancelledError, InputError, ResourceError
from napari_invrec.core.methods.registry import METHODS, get_method
from napari_invrec.engine.execute import drain, run_to_result
from napari_invrec.engine.layers import image_display
from napari_invrec.engine.memory import estimate_run_bytes
from napari_invrec.engine.slice_batch import (
    BATCHABLE,
    auto_batch,
    batchable,
    reconstruct_batched,
)
from napari_invrec.engine.stack import reconstruct_eager

TOL = 1e-5
N, SLICES = 32, 6


def _slices(scales=(1.0, 0.7, 1.3, 0.5, 1.1, 0.9)):
    """Six different 32x32 slices (shifted, scaled phantoms)."""
    x = shepp_logan(N)
    return [np.roll(x, 2 * t, axis=0) * s for t, s in enumerate(scales)]


def _stack(op, scales=(1.0, 0.7, 1.3, 0.5, 1.1, 0.9), sigma=0.01):
    return np.stack([ir.simulate(x, op, sigma=sigma * float(np.max(x)), seed=t)
                     for t, x in enumerate(_slices(scales))])


def _mri():
    return ir.make_operator("mri", (N, N), acceleration=4)


def _blur():
    return ir.make_operator("blur", (N, N), sigma=1.5)


@pytest.fixture()
def calls(monkeypatch):
    """Batch sizes the method generators were called with, by method (spies on the
    registry's generator functions)."""
    seen: dict[str, list[int]] = {}

    def spy(name):
        spec = METHODS[name]

        def fn(y, op, p, **kw):
            seen.setdefault(name, []).append(int(y.shape[0]))
            return spec.fn(y, op, p, **kw)

        monkeypatch.setitem(METHODS, name, dataclasses.replace(spec, fn=fn))

    for name in list(METHODS):
        spy(name)
    return seen


def _plane_by_plane(y, op, method, **params):
    lead = y.shape[:y.ndim - len(op.measurement_shape)]
    return np.stack([image_display(run_to_result(y[idx], op, method, params).x)
                     for idx in np.ndindex(*lead)]).reshape(*lead, *op.shape)


def _assert_planes_close(batched, loop):
    for k in range(loop.shape[0]):
        err = float(np.abs(batched[k] - loop[k]).max())
        assert err <= TOL * float(np.ptp(loop[k])), (k, err, float(np.ptp(loop[k])))


@pytest.mark.parametrize("op_fn, method, params", [
    (_mri, "tv-fista", {"iters": 30}),
    (_mri, "tikhonov", {}),
    (_blur, "richardson-lucy", {"iters": 20}),
])
def test_batched_equals_plane_by_plane(calls, op_fn, method, params):
    op = op_fn()
    y = _stack(op)
    assert np.iscomplexobj(y) == (op.name == "mri") and y.shape[0] == SLICES
    out = drain(reconstruct_eager(y, op, method, batch=4, **params))
    assert calls[method] == [4, 2]  # two generator calls: 4 planes, then the last 2
    loop = drain(reconstruct_eager(y, op, method, batch=1, **params))
    assert calls[method][2:] == [1] * SLICES
    assert out.shape == loop.shape == (SLICES, N, N) and out.dtype == np.float32
    _assert_planes_close(out, loop)
    np.testing.assert_array_equal(loop, _plane_by_plane(y, op, method, **params))


_OPS = {"sense-cg": ("mri-multicoil", {"acceleration": 4}), "rss": ("mri-multicoil", {}),
        "fbp": ("ct", {}), "sirt": ("ct", {}), "bicubic": ("superres", {}),
        "richardson-lucy": ("blur", {"sigma": 1.5}), "wiener": ("blur", {"sigma": 1.5}),
        "unet": ("blur", {"sigma": 2.0}), "unrolled-pgd": ("inpaint", {"keep": 0.5}),
        "varnet": ("mri", {"acceleration": 4})}


@pytest.mark.parametrize("method", sorted(BATCHABLE))
def test_every_batchable_method_is_independent_per_plane(calls, method):
    """The allow-list's claim, on three planes of different content and scale (5 steps of
    iterative methods: a batch-wide stopping rule, shared step or random start shows at once)."""
    name, kw = _OPS.get(method, ("mri", {"acceleration": 4}))
    op = ir.make_operator(name, (N, N), **kw)
    y = _stack(op, scales=(1.0, 40.0, 0.02))
    names = {f.name for f in dataclasses.fields(get_method(method).params)}
    params = {"iters": 5} if "iters" in names and method not in ("tikhonov", "sense-cg") else {}
    out = drain(reconstruct_batched(y, op, method, batch=3, **params))
    assert calls[method] == [3]
    _assert_planes_close(out, _plane_by_plane(y, op, method, **params))


def test_each_plane_keeps_its_own_normalisation():
    """Normalised runs do not depend on the units: a plane 1000 times another gives 1000
    times its result, one of 1e-3 the scale likewise (a shared scale would break both). In
    ``auto`` mode plane 0, already in [0, 1], runs unnormalised and the others normalised,
    as each would run alone."""
    op = _mri()
    y = _stack(op)
    y[1], y[2] = 1000.0 * y[0], 1e-3 * y[0]
    out = drain(reconstruct_eager(y, op, "tv-fista", iters=30, normalise="on"))
    rng = float(np.ptp(out[0]))
    assert np.abs(out[1] / 1000.0 - out[0]).max() <= TOL * rng
    assert np.abs(out[2] / 1e-3 - out[0]).max() <= TOL * rng
    out = drain(reconstruct_eager(y, op, "tv-fista", iters=30))
    _assert_planes_close(out, _plane_by_plane(y, op, "tv-fista", iters=30))
    assert np.abs(out[1] / 1000.0 - out[0]).max() > 100 * TOL * rng  # auto: plane 0 as it is


def test_a_real_stack_with_an_offset_normalises_per_plane():
    """Blur data far from [0, 1] get an offset and a scale of their own in each plane."""
    op = _blur()
    y = _stack(op)
    y[0] = y[0] * 300.0 + 900.0
    y[3] = y[3] * 0.01 - 5.0
    out = drain(reconstruct_eager(y, op, "tv-fista", iters=20))
    _assert_planes_close(out, _plane_by_plane(y, op, "tv-fista", iters=20))


def test_a_nan_plane_is_refused_before_any_work(calls):
    op = _mri()
    y = _stack(op)
    y[3, 5, 7] = np.nan
    gen = reconstruct_eager(y, op, "tv-fista", iters=5)
    with pytest.raises(InputError, match=r"plane 4 of 6: measurement contains 1 NaN/inf"):
        next(gen)
    assert "tv-fista" not in calls


def test_a_dask_stack_is_checked_batch_by_batch():
    """A dask stack is read once: a bad plane is refused before its own batch runs."""
    op = _mri()
    y = _stack(op)
    y[4, 0, 0] = np.inf
    gen = reconstruct_eager(da.from_array(y, chunks=(1, N, N)), op, "adjoint", batch=4)
    assert [next(gen) for _ in range(4)] == [(1, 6), (2, 6), (3, 6), (4, 6)]
    with pytest.raises(InputError, match="plane 5 of 6"):
        next(gen)


@pytest.mark.parametrize("source", ["numpy", "dask"])
def test_cancel_stops_the_batch_within_one_step(source):
    op = _mri()
    y = _stack(op)
    loaded = []

    def load(block, block_info=None):
        t = block_info[0]["chunk-location"][0]
        loaded.append(t)
        return y[t:t + 1]

    data = y if source == "numpy" else da.map_blocks(
        load, da.zeros(y.shape, chunks=(1, N, N), dtype=y.dtype), dtype=y.dtype)
    cancel = threading.Event()
    steps = []

    def progress(prog):
        steps.append((prog.step, prog.total))
        if prog.step == 3:
            cancel.set()

    gen = reconstruct_eager(data, op, "tv-fista", iters=10_000, cancel=cancel,
                            progress=progress, batch=4)
    with pytest.raises(CancelledError, match=r"after step 3 \(planes 1-4 of 6\)"):
        next(gen)
    assert steps == [(1, 10_000), (2, 10_000), (3, 10_000)]
    if source == "dask":
        assert sorted(loaded) == [0, 1, 2, 3]  # the second batch was never read
    with pytest.raises(StopIteration):
        next(gen)


def test_cancel_between_batches():
    op = _mri()
    cancel = threading.Event()
    gen = reconstruct_eager(_stack(op), op, "adjoint", cancel=cancel, batch=2)
    assert [next(gen), next(gen)] == [(1, 6), (2, 6)]
    cancel.set()
    with pytest.raises(CancelledError, match=r"before it started \(planes 3-4 of 6\)"):
        next(gen)


@pytest.mark.parametrize("method, params", [
    ("dip", {"iters": 3, "width": 8, "scales": 2}),  # random start, a network fitted per run
    ("tv-fista", {"iters": 10, "tol": 0.05}),  # stops on the batch's largest change
])
def test_methods_that_are_not_independent_fall_back_to_the_plane_loop(calls, method, params):
    op = _blur()
    y = _stack(op)
    p = get_method(method).params(**params)
    assert not batchable(method, p)
    out = drain(reconstruct_eager(y, op, method, p))
    assert calls[method] == [1] * SLICES
    np.testing.assert_array_equal(out, _plane_by_plane(y, op, method, **params))
    with pytest.raises(InputError, match="cannot run planes as one batch"):
        drain(reconstruct_batched(y, op, method, p))


def test_multicoil_stack_batches_its_slices(calls):
    """Multi-coil k-space ``(slices, coils, H, W)``: the slices are the batch."""
    op = ir.make_operator("mri-multicoil", (N, N), acceleration=4)
    y = _stack(op)
    assert y.shape == (SLICES, *op.measurement_shape)
    out = drain(reconstruct_batched(y, op, "sense-cg"))
    assert calls["sense-cg"] == [SLICES] and out.shape == (SLICES, N, N)
    _assert_planes_close(out, _plane_by_plane(y, op, "sense-cg"))


def test_batch_size_follows_free_memory():
    op = _mri()
    p = get_method("tv-fista").params()
    work, _ = estimate_run_bytes(op, "tv-fista", p, stochastic=False, budget_bytes=1)
    assert auto_batch(op, "tv-fista", p, 100, available={"cpu": 3 * work + 1}) == 3
    assert auto_batch(op, "tv-fista", p, 100, available={"cpu": 10 ** 15}) == 16
    assert auto_batch(op, "tv-fista", p, 5, available={"cpu": 10 ** 15}) == 5
    assert auto_batch(op, "tv-fista", p, 100, available={"cpu": 1}) == 1
    big = ir.make_operator("mri", (256, 256), acceleration=4)  # 512 KB a complex plane
    assert auto_batch(big, "tv-fista", p, 100, available={"cpu": 10 ** 15}) == 1  # CPU: loop
    assert auto_batch(ir.make_operator("blur", (128, 128)), "tv-fista", p, 100,
                      available={"cpu": 10 ** 15}) == 8  # 64 KB a real plane
    y = _stack(op)
    with pytest.raises(ResourceError, match="smaller batch \\(at most 3\\)"):
        drain(reconstruct_batched(y, op, "tv-fista", batch=4, available={"cpu": 3 * work + 1}))
    for bad in (0, -1, 2.5, True):
        with pytest.raises(InputError, match="batch must be a whole number"):
            drain(reconstruct_eager(y, op, "tv-fista", batch=bad))


def test_cg_batch_elements_stop_on_their_own_tolerance():
    """An element of a CG batch that has converged stays where it stopped, so it equals its
    own solve (before, it kept iterating until the slowest element converged)."""
    import torch

    from napari_invrec.core.linalg import conjugate_gradient

    d = torch.linspace(0.01, 1.0, N * N).reshape(1, 1, N, N)
    g = torch.Generator().manual_seed(0)
    fast = 1e-7 * torch.rand(1, 1, N, N, generator=g)
    fast[..., 0, :2] = 1.0  # about two eigenvalues: within tol after 2 iterations
    slow = torch.rand(1, 1, N, N, generator=g)
    solve = lambda b: conjugate_gradient(lambda v: d * v, b, tol=1e-6, maxiter=300)  # noqa: E731
    both = solve(torch.cat([fast, slow]))
    torch.testing.assert_close(both[:1], solve(fast), rtol=0, atol=0)
    torch.testing.assert_close(both[1:], solve(slow), rtol=0, atol=0)


def test_a_batch_out_of_gpu_memory_is_halved_and_retried(monkeypatch):
    """A batch whose method runs out of memory (CUDA's OutOfMemoryError, faked on the CPU for
    more than 2 planes at once) is halved until it fits, with a warning naming the sizes; the
    result equals the plane-by-plane runs; one plane that does not fit is a ResourceError."""
    import torch

    op, method = _blur(), "tv-fista"
    y = _stack(op)
    spec = METHODS[method]
    seen = []

    def fn(y_u, op_, p, **kw):  # a generator, as the methods are: it fails on its first step
        seen.append(int(y_u.shape[0]))
        if y_u.shape[0] > 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (fake)")
        return (yield from spec.fn(y_u, op_, p, **kw))

    monkeypatch.setitem(METHODS, method, dataclasses.replace(spec, fn=fn))
    with pytest.warns(RuntimeWarning) as record:
        got = drain(reconstruct_batched(y, op, method, batch=6, iters=20))
    messages = [str(w.message) for w in record]
    assert any("6 planes at once" in m and "3 at a time" in m for m in messages)
    assert any("3 planes at once" in m and "1 at a time" in m for m in messages)
    assert seen == [6, 3, 1, 1, 1, 1, 1, 1]
    monkeypatch.setitem(METHODS, method, spec)
    want = _plane_by_plane(y, op, method, iters=20)
    np.testing.assert_allclose(got, want, atol=TOL * float(np.ptp(want)))

    def never(y_u, op_, p, **kw):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory (fake)")
        yield  # a generator

    monkeypatch.setitem(METHODS, method, dataclasses.replace(spec, fn=never))
    with pytest.raises(ResourceError, match="one plane at a time"), \
            pytest.warns(RuntimeWarning):
        drain(reconstruct_batched(y, op, method, batch=2, iters=20))
