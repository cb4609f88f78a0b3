"""Dask stacks: one plane reconstructs from one block; lazy results compute per plane."""

import threading

import dask.array as da
import numpy as np
import pytest

import napari_invrec as ir
from napari_invrec.core.data import shepp_logan
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
