"""Engine runner: numpy hand-off, preview throttling, history budget, divergence reports."""

import numpy as np
import pytest
from helpers import drain

from napari_invrec.core.data import shepp_logan
from napari_invrec.core.errors import DivergenceError
from napari_invrec.core.methods import get_method
from napari_invrec.core.operators import make_operator
from napari_invrec.engine.runner import run

_drain = drain


@pytest.fixture(scope="module")
def blur_problem():
    import napari_invrec as ir

    x = shepp_logan(48)
    op = make_operator("blur", x.shape, sigma=1.5)
    return x, op, ir.simulate(x, op, sigma=0.02)


def test_yields_every_step_with_numpy_only(blur_problem):
    x, op, y = blur_problem
    p = get_method("tv-fista").params(iters=25)
    progs, res = _drain(run(y, op, "tv-fista", p, reference=x, preview_hz=0))
    assert [q.step for q in progs] == list(range(1, 26))
    for q in progs:
        assert isinstance(q.preview, np.ndarray)
        assert all(isinstance(v, float) for v in q.metrics.values())
    assert res.metric_history["psnr"][-1] == pytest.approx(res.metrics["psnr"])


def test_preview_is_throttled_but_last_step_always_previews(blur_problem):
    _, op, y = blur_problem
    p = get_method("tv-fista").params(iters=50)
    progs, _ = _drain(run(y, op, "tv-fista", p, preview_hz=1e-3))
    with_preview = [q.step for q in progs if q.preview is not None]
    assert with_preview == [1, 50]


def test_history_respects_budget(blur_problem):
    _, op, y = blur_problem
    frame = 48 * 48 * 4
    p = get_method("tv-fista").params(iters=200)
    _, res = _drain(run(y, op, "tv-fista", p, budget_bytes=16 * frame))
    assert res.iterates.nbytes <= 16 * frame
    assert res.steps[-1] == 200 and len(res.steps) >= 8


def test_nonfinite_iterates_are_reported_as_divergence(blur_problem, monkeypatch):
    _, op, y = blur_problem
    monkeypatch.setattr(op, "norm", lambda: 1e-4)  # step 1/L far too large
    p = get_method("tv-fista").params(iters=500)
    with pytest.raises(DivergenceError, match="step"):
        _drain(run(y, op, "tv-fista", p))


def test_gpu_out_of_memory_becomes_a_clear_error(blur_problem, monkeypatch):
    import torch

    from napari_invrec.core.errors import ResourceError
    from napari_invrec.core.methods import METHODS

    _, op, y = blur_problem
    spec = METHODS["tv-fista"]

    def exhausted(y, op, p, *, x0=None, generator=None):
        yield from ()
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setitem(METHODS, "tv-fista", type(spec)(**{**spec.__dict__, "fn": exhausted}))
    with pytest.raises(ResourceError, match="use device 'cpu'"):
        _drain(run(y, op, "tv-fista", spec.params()))


@pytest.mark.parametrize("iters, frames", [(40, 64), (200, 16)])
def test_history_is_handed_over_from_one_store_without_copies(blur_problem, iters, frames):
    """``Result.iterates`` is a view of the history's store, sized once for the run (never more
    than the budget holds), and after thinning each kept slice is still the iterate of its step."""
    _, op, y = blur_problem
    frame = 48 * 48 * 4
    p = get_method("tv-fista").params(iters=iters)
    progs, res = _drain(run(y, op, "tv-fista", p, preview_hz=0, budget_bytes=frames * frame))
    store = res.iterates.base
    assert store is not None and np.shares_memory(res.iterates, store)  # no stacked copy
    assert store.shape[0] == min(iters + 1, frames + 1)  # reserved once, within the budget
    previews = {q.step: q.preview for q in progs}
    assert len(res.steps) == len(res.iterates) and res.steps[-1] == iters
    for k, it in zip(res.steps, res.iterates):
        np.testing.assert_array_equal(it, previews[k])


def test_growth_warning_tells_a_blow_up_from_strong_regularisation():
    from napari_invrec.engine.runner import growth_warning

    blow_up = [0.03, 0.024, 0.05, 0.2, 0.7]  # residual falls, then grows 29x
    assert "diverged" in growth_warning("pnp-admm", blow_up, 0.2, 0.3)
    # the same residual history with a shrinking image: a strong weight, not a divergence
    assert growth_warning("tv-fista", blow_up, 0.2, 0.18) is None
    # starting at the data (residual 0) and settling at the noise's residual
    assert growth_warning("tv-fista", [0.0, 0.2, 0.3, 0.31], 0.25, 0.2) is None
    # growth below the absolute floor (a tenth of |y|) is not reported
    assert growth_warning("pnp-admm", [0.001, 0.05], 1.0, 2.0) is None


def test_a_blow_up_without_nans_is_recorded_as_a_warning():
    """pnp-admm with the Noise2Self atoms denoiser (not a Gaussian denoiser) blows up on 4x
    MRI: its residual ends above 0.1 |y|, many times its minimum, with its image inflating
    (measured: 0.03 -> 1.5 and 3.2x energy at 64 px); the default denoiser and TV with a
    strong weight do not."""
    import napari_invrec as ir

    x = shepp_logan(64)
    op = make_operator("mri", x.shape, acceleration=4, center_fraction=0.08)
    y = ir.simulate(x, op, sigma=0.01, seed=1)
    bad = ir.reconstruct(y, op, "pnp-admm", denoiser="n2s-atoms")
    assert "pnp-admm diverged" in bad.provenance["warnings"][0]
    for method, kw in (("pnp-admm", {}), ("tv-fista", {"lam": 3.0, "iters": 60})):
        assert "warnings" not in ir.reconstruct(y, op, method, **kw).provenance
