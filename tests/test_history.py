"""Bounded iterate history: stays under budget, spans the run uniformly, keeps the end."""

import numpy as np
import pytest

from napari_invrec.core.errors import ResourceError
from napari_invrec.engine.history import IterateHistory


def _frame(v: float, n: int = 16) -> dict:
    return {"x": np.full((n, n), v, dtype=np.float32)}


def test_keeps_everything_under_budget():
    h = IterateHistory(budget_bytes=10 * 16 * 16 * 4)
    for k in range(1, 11):
        h.add(k, _frame(k), final=k == 10)
    assert h.steps == list(range(1, 11))
    assert h.stack("x").shape == (10, 16, 16)
    np.testing.assert_array_equal(h.stack("x")[:, 0, 0], np.arange(1, 11))


@pytest.mark.parametrize("total", [100, 1000, 1537])
def test_thins_to_budget_and_keeps_last(total):
    frame_bytes = 16 * 16 * 4
    h = IterateHistory(budget_bytes=20 * frame_bytes)
    for k in range(1, total + 1):
        h.add(k, _frame(k), final=k == total)
        assert h.nbytes <= 20 * frame_bytes
    steps = h.steps
    assert steps[-1] == total
    assert len(steps) >= 10  # thinning halves at most: never fewer than budget/2 frames
    gaps = np.diff(steps[:-1])
    assert np.all(gaps == gaps[0]), "uniform stride over the stored history"
    assert steps[0] <= h.stride  # still covers the beginning of the run
    vals = h.stack("x")[:, 0, 0]
    np.testing.assert_array_equal(vals, np.array(steps, dtype=np.float32))


def test_wants_skips_unneeded_steps():
    h = IterateHistory(budget_bytes=4 * 16 * 16 * 4)
    for k in range(1, 40):
        h.add(k, _frame(k))
    assert h.stride > 1
    assert not h.wants(h.stride + 1)
    assert h.wants(h.stride * 3)
    assert h.wants(7, final=True)


def test_frame_larger_than_budget_is_a_clear_error():
    h = IterateHistory(budget_bytes=100)
    with pytest.raises(ResourceError, match="raise the budget"):
        h.add(1, _frame(1.0))


def test_extra_streams_over_the_budget_keep_the_iterate_alone():
    x = np.zeros((4, 4), np.float32)
    h = IterateHistory(budget_bytes=x.nbytes)
    h.add(1, {"x": x, "x0_hat": np.ones((4, 4), np.float32)})
    assert h.streams() == ["x"] and h.nbytes == x.nbytes


def test_multiple_streams_stack_separately():
    h = IterateHistory()
    for k in range(1, 4):
        h.add(k, {"x": np.zeros((4, 4), np.float32), "x0_hat": np.ones((4, 4), np.float32)})
    assert set(h.streams()) == {"x", "x0_hat"}
    assert h.stack("x0_hat").shape == (3, 4, 4)
    assert h.stack("missing") is None
