"""Public API: the contract names, Result contents, provenance and re-runs, bad inputs."""

import json
import threading

import numpy as np
import pytest

import napari_invrec as ir
from napari_invrec.core.data import shepp_logan
from napari_invrec.core.errors import CancelledError, InputError


@pytest.fixture(scope="module")
def phantom():
    return shepp_logan(48)


def test_lists_are_consistent():
    ops = ir.list_operators()
    assert {"denoise", "blur", "inpaint", "mri"} <= set(ops)
    every = set(ir.list_methods())
    assert {"adjoint", "min-norm", "tikhonov", "tv-fista", "tv-admm", "langevin-tv"} <= every
    for op in ops:
        assert set(ir.list_methods(op)) <= every
    with pytest.raises(InputError, match="unknown operator"):
        ir.list_methods("nope")


def test_reconstruct_result_and_provenance_rerun(phantom):
    op = ir.make_operator("blur", phantom.shape, sigma=1.5)
    y = ir.simulate(phantom, op, sigma=0.02, seed=3)
    res = ir.reconstruct(y, op, "tv-fista", lam=0.005, iters=40, reference=phantom)
    assert res.x.shape == phantom.shape and res.x.dtype == np.float32
    assert res.iterates.shape == (len(res.steps), *phantom.shape)
    assert res.steps[-1] == 40 and res.steps == sorted(res.steps)
    assert len(res.metric_history["residual"]) == 40
    base = ir.reconstruct(y, op, "adjoint", reference=phantom)
    assert res.metrics["psnr"] > base.metrics["psnr"] + 0.5
    np.testing.assert_allclose(res.iterates[-1], res.x, atol=1e-6)
    prov = json.loads(json.dumps(res.provenance))
    assert prov["method"] == "tv-fista" and prov["params"]["lam"] == 0.005
    assert prov["operator"]["operator"] == "blur"
    again = ir.rerun(prov, y, res.arrays)
    np.testing.assert_allclose(again.x, res.x, atol=1e-6)


def test_per_operator_defaults_apply_under_the_given_values(phantom):
    """A method's defaults for one operator family (dpir: 40 iterations on MRI) are what a run
    gets for each parameter it is not given, and what its provenance records."""
    assert ir.method_defaults("dpir", "mri")["iters"] == 40
    assert ir.method_defaults("dpir", "blur")["iters"] == ir.method_params("dpir")().iters
    op = ir.make_operator("mri", phantom.shape, acceleration=4)
    y = ir.simulate(phantom, op, sigma=0.01, seed=1)
    assert ir.reconstruct(y, op, "dpir", denoiser="tv").provenance["params"]["iters"] == 40
    given = ir.reconstruct(y, op, "dpir", denoiser="tv", iters=3)
    assert given.provenance["params"]["iters"] == 3 and given.steps[-1] == 3
    assert len(list(ir.solve(y, op, "dpir", denoiser="tv"))) == 40
    with pytest.raises(InputError, match="does not support|cannot run|not supported"):
        ir.method_defaults("dpir", "phase")


def test_an_invalid_operator_default_fails_at_registration():
    from napari_invrec.core.methods.pnp import DPIRParams
    from napari_invrec.core.methods.registry import METHODS, register_method

    with pytest.raises(InputError, match="iters"):
        register_method("test-bad-defaults", DPIRParams,
                        operator_defaults={"mri": {"iters": 0}})(lambda *a, **k: iter(()))
    assert "test-bad-defaults" not in METHODS


def test_stochastic_result_has_mean_std_samples(phantom):
    op = ir.make_operator("denoise", phantom.shape)
    y = ir.simulate(phantom, op, sigma=0.05, seed=0)
    res = ir.reconstruct(y, op, "langevin-tv", n_samples=4, iters=30, burn_in=10, seed=1)
    assert res.mean is not None and res.std is not None
    assert res.samples.shape == (4, *phantom.shape)
    assert np.all(res.std >= 0) and res.std.mean() > 0
    res2 = ir.reconstruct(y, op, "langevin-tv", n_samples=4, iters=30, burn_in=10, seed=1)
    np.testing.assert_array_equal(res.x, res2.x)


def test_simulate_mri_is_complex_and_reconstructs(phantom):
    op = ir.make_operator("mri", phantom.shape, acceleration=4)
    y = ir.simulate(phantom, op, sigma=0.01)
    assert np.iscomplexobj(y)
    res = ir.reconstruct(y, op, "adjoint")
    assert np.iscomplexobj(res.x)


@pytest.mark.parametrize("bad, match", [
    (np.full((48, 48), np.nan, np.float32), "NaN"),
    (np.zeros((48, 48, 3), np.float32), "RGB"),
    (np.zeros((48, 48), np.uint16), "integer"),
    (np.zeros((40, 48), np.float32), "shape"),
    (np.zeros((0, 48), np.float32), "empty"),
])
def test_bad_measurements_give_clear_errors(bad, match):
    op = ir.make_operator("blur", (48, 48))
    with pytest.raises(InputError, match=match):
        ir.reconstruct(bad, op, "tv-fista", iters=2)


def test_bad_params_and_incompatible_methods(phantom):
    op = ir.make_operator("blur", phantom.shape)
    y = ir.simulate(phantom, op)
    with pytest.raises(InputError, match="unknown parameter"):
        ir.reconstruct(y, op, "tv-fista", lamda=0.1)
    with pytest.raises(InputError, match="below its minimum"):
        ir.reconstruct(y, op, "tv-fista", iters=-1)
    with pytest.raises(InputError, match="unknown method"):
        ir.reconstruct(y, op, "magic")


def test_cancel_event_stops_the_run(phantom):
    op = ir.make_operator("blur", phantom.shape)
    y = ir.simulate(phantom, op)
    cancel = threading.Event()
    seen = []

    def progress(p):
        seen.append(p.step)
        if p.step == 5:
            cancel.set()

    with pytest.raises(CancelledError):
        ir.reconstruct(y, op, "tv-fista", iters=10_000, cancel=cancel, progress=progress)
    assert seen[-1] == 5


def test_inputs_are_not_modified(phantom):
    x = phantom.copy()
    op = ir.make_operator("inpaint", x.shape, keep=0.5)
    y = ir.simulate(x, op, sigma=0.01)
    y_copy = y.copy()
    ir.reconstruct(y, op, "tv-fista", iters=5, reference=x)
    np.testing.assert_array_equal(x, phantom)
    np.testing.assert_array_equal(y, y_copy)
