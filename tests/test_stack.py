"""Dask stacks: one plane reconstructs from one block; lazy results compute per plane."""

import threading

import dask.array as da
import numpy as np
import pytest

import napari_invrec as ir
from napari_invrec.core.data import shepp_logan
from napari_invrec.core.errors import CancelledError, InputError
from napari_invrec.core.methods import get_method
from napari_invrec.engine.stack import reconstruct_eager, reconstruct_lazy, reconstruct_plane


class Counter:
    def __init__(self):
        self.planes = []
        self.lock = threading.Lock()


@pytest.fixture()
def stack():
    """A (4, 64, 64) dask measurement whose blocks record when they are computed."""
    x = shepp_logan(64)
    op = ir.make_operator("blur", x.shape, sigma=1.5)
    planes = np.stack([ir.simulate(x * (0.5 + 0.1 * t), op, sigma=0.01, seed=t)
                       for t in range(4)])
    counter = Counter()

    def load(block, block_info=None):
        t = block_info[0]["chunk-location"][0]
        with counter.lock:
            counter.planes.append(t)
        return planes[t:t + 1]

    y = da.map_blocks(load, da.zeros((4, 64, 64), chunks=(1, 64, 64), dtype=np.float32),
                      dtype=np.float32)
    return y, op, planes, counter


def test_plane_in_view_computes_only_that_plane(stack):
    y, op, planes, counter = stack
    res = reconstruct_plane(y, (2,), op, "tv-fista", iters=5)
    assert counter.planes == [2]
    ref = ir.reconstruct(planes[2], op, "tv-fista", iters=5)
    np.testing.assert_allclose(res.x, ref.x, atol=1e-6)


def test_lazy_stack_computes_per_viewed_plane(stack):
    y, op, planes, counter = stack
    lazy = reconstruct_lazy(y, op, "tv-fista", iters=5)
    assert counter.planes == [] and lazy.shape == (4, 64, 64)
    assert lazy.chunks[0] == (1, 1, 1, 1)
    plane1 = lazy[1].compute()
    assert counter.planes == [1]
    ref = ir.reconstruct(planes[1], op, "tv-fista", iters=5)
    np.testing.assert_allclose(plane1, ref.x, atol=1e-6)


def test_eager_stack_yields_progress_per_plane(stack):
    y, op, planes, counter = stack
    gen = reconstruct_eager(y, op, "adjoint")
    done = []
    while True:
        try:
            done.append(next(gen))
        except StopIteration as stop:
            out = stop.value
            break
    assert done == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert out.shape == (4, 64, 64)
    assert sorted(counter.planes) == [0, 1, 2, 3]


@pytest.mark.parametrize("source", ["numpy", "dask"])
def test_eager_cancel_stops_within_one_step_of_the_first_plane(stack, source):
    """Cancel "all planes now" while plane 1 of 4 runs a 10 000-step tv-fista: the run stops
    before the step after the one during which the event was set, nothing later is loaded,
    and the input is not written to."""
    y, op, planes, counter = stack
    data = planes if source == "numpy" else y
    before = planes.copy()
    cancel = threading.Event()
    steps = []

    def progress(prog):
        steps.append((prog.step, prog.total))
        if prog.step == 3:
            cancel.set()

    gen = reconstruct_eager(data, op, "tv-fista", iters=10_000, cancel=cancel,
                            progress=progress, batch=1)  # the plane loop
    with pytest.raises(CancelledError, match=r"after step 3 \(plane 1 of 4\)"):
        next(gen)
    assert steps == [(1, 10_000), (2, 10_000), (3, 10_000)]
    np.testing.assert_array_equal(planes, before)
    if source == "dask":
        assert counter.planes == [0]
    with pytest.raises(StopIteration):  # the cancelled generator is finished, not resumable
        next(gen)


def test_eager_cancel_between_planes_loads_no_further_plane(stack):
    y, op, planes, counter = stack
    cancel = threading.Event()
    gen = reconstruct_eager(y, op, "adjoint", cancel=cancel, batch=1)
    assert next(gen) == (1, 4)
    cancel.set()
    with pytest.raises(CancelledError, match=r"before it started \(plane 2 of 4\)"):
        next(gen)
    assert counter.planes == [0]


def test_stack_takes_a_params_instance_or_fields(stack):
    y, op, planes, counter = stack
    p = get_method("tv-fista").params(iters=4, lam=0.02)
    by_instance = reconstruct_plane(y, (1,), op, "tv-fista", p)
    by_fields = reconstruct_plane(y, (1,), op, "tv-fista", iters=4, lam=0.02)
    np.testing.assert_array_equal(by_instance.x, by_fields.x)
    assert by_instance.provenance["params"]["iters"] == 4
    with pytest.raises(InputError, match="not both"):
        reconstruct_plane(y, (1,), op, "tv-fista", p, iters=5)
    with pytest.raises(InputError, match="must be a TVFistaParams"):
        reconstruct_plane(y, (1,), op, "tv-fista", get_method("adjoint").params())
    with pytest.raises(InputError, match="unknown parameter"):  # before any plane is computed
        reconstruct_lazy(y, op, "tv-fista", not_a_field=1)
    assert counter.planes == [1, 1]


def test_planes_larger_than_512_px_run_with_the_default_budget():
    """The whole-stack modes size their history to the plane (it once was a fixed 1 MB, so
    any plane over 512x512 failed with 'raise the budget')."""
    from napari_invrec.core.operators import make_operator
    from napari_invrec.engine.stack import reconstruct_eager, reconstruct_lazy

    op = make_operator("denoise", (600, 600))
    y = np.random.default_rng(0).random((2, 600, 600)).astype(np.float32)
    gen = reconstruct_eager(y, op, "adjoint")
    while True:
        try:
            next(gen)
        except StopIteration as stop:
            out = stop.value
            break
    assert out.shape == y.shape
    assert reconstruct_lazy(y, op, "adjoint")[1].compute().shape == (600, 600)
