"""Hostile input, class by class (each test failed on the code before the hardening issue):
parameter validation, references checked before a run, records checked before a re-run,
memory estimated before allocating, cancel inside a step, inputs copied at validation."""

from __future__ import annotations

import copy
import threading
import time

import numpy as np
import pytest

from napari_invrec import api
from napari_invrec.core.data import shepp_logan
from napari_invrec.core.errors import CancelledError, InputError, ResourceError
from napari_invrec.core.operators.registry import operator_from_spec
from napari_invrec.core.validation import check_image_array
from napari_invrec.engine.memory import check_run_memory, estimate_run_bytes, method_factors

N = 32


@pytest.fixture(scope="module")
def blur():
    x = shepp_logan(N)
    op = api.make_operator("blur", x.shape, sigma=1.5, device="cpu")
    return op, x, api.simulate(x, op, sigma=0.02, seed=1)


def _never_started(calls: list) -> dict:
    return {"progress": calls.append}


# ---------------------------------------------------------------- parameters
@pytest.mark.parametrize("kw, match", [
    ({"iters": np.int64(10 ** 9)}, "above its maximum"),
    ({"iters": np.int64(-5)}, "below its minimum"),
    ({"lam": np.float32(-1)}, "below its minimum"),
    ({"lam": float("nan")}, "not a finite number"),
    ({"lam": np.float64("inf")}, "not a finite number"),
    ({"iters": "10"}, "must be an integer"),
    ({"iters": 10.5}, "whole number"),
    ({"iters": True}, "must be an integer"),
    ({"nonneg": "yes"}, "True or False"),
    ({"iters": 10 ** 400}, "above its maximum"),
])
def test_parameters_are_refused_before_the_run(blur, kw, match):
    op, _, y = blur
    calls = []
    with pytest.raises(InputError, match=match):
        api.reconstruct(y, op, "tv-fista", **kw, **_never_started(calls))
    assert calls == []


def test_numpy_scalars_become_plain_values(blur):
    op, _, y = blur
    res = api.reconstruct(y, op, "tv-fista", iters=np.int64(3), lam=np.float32(0.01))
    p = res.provenance["params"]
    assert type(p["iters"]) is int and p["iters"] == 3
    assert type(p["lam"]) is float and p["lam"] == 0.01  # the float32's shortest decimal


def test_nan_noise_is_refused(blur):
    op, x, _ = blur
    with pytest.raises(InputError, match="sigma=nan is not a finite number"):
        api.simulate(x, op, sigma=float("nan"))


@pytest.mark.parametrize("kw, match", [({"seed": -1}, "seed"), ({"seed": np.nan}, "seed"),
                                       ({"history_budget": 0}, "budget"),
                                       ({"threads": "2"}, "threads")])
def test_run_settings_are_checked(blur, kw, match):
    op, _, y = blur
    with pytest.raises(InputError, match=match):
        api.reconstruct(y, op, "adjoint", **kw)


# ---------------------------------------------------------------- references
@pytest.mark.parametrize("make, match", [
    (lambda x: (x * 255).astype(np.uint8), "integer dtype"),
    (lambda x: np.full_like(x, 0.3), "constant"),
    (lambda x: np.where(x > 0.5, np.nan, x), "NaN"),
    (lambda x: x[:16], "shape"),
])
def test_reference_is_checked_before_the_run(blur, make, match):
    op, x, y = blur
    calls = []
    with pytest.raises(InputError, match=match):
        api.reconstruct(y, op, "tv-fista", iters=5, reference=make(x), **_never_started(calls))
    assert calls == []


def test_reference_smaller_than_the_ssim_window_is_refused_first():
    x = shepp_logan(8)
    op = api.make_operator("denoise", x.shape, device="cpu")
    calls = []
    with pytest.raises(InputError, match="at least 11 px"):
        api.reconstruct(x, op, "tv-fista", reference=x, **_never_started(calls))
    assert calls == []


# ---------------------------------------------------------------- records
@pytest.fixture(scope="module")
def inpaint_run():
    x = shepp_logan(N)
    mask = (np.random.default_rng(3).random(x.shape) < 0.6).astype(np.float32)
    op = api.make_operator("inpaint", x.shape, mask="custom", mask_array=mask, device="cpu")
    y = api.simulate(x, op, sigma=0.01, seed=2)
    return y, mask, api.reconstruct(y, op, "tv-fista", iters=5)


def test_rerun_repeats_the_run(inpaint_run):
    y, _, res = inpaint_run
    again = api.rerun(res.provenance, y, res.arrays)
    np.testing.assert_array_equal(again.x, res.x)


def test_rerun_refuses_another_mask(inpaint_run):
    y, mask, res = inpaint_run
    other = mask.copy()
    other[0, 0] = 1 - other[0, 0]
    with pytest.raises(InputError, match="mask_array differs"):
        api.rerun(res.provenance, y, {"mask_array": other})
    with pytest.raises(InputError, match="mask_array.*shape"):
        api.rerun(res.provenance, y, {"mask_array": mask[:8]})


def test_rerun_refuses_another_measurement_unless_asked(inpaint_run):
    y, _, res = inpaint_run
    with pytest.raises(InputError, match="measurement differs"):
        api.rerun(res.provenance, y + 0.01, res.arrays)
    other = api.rerun(res.provenance, y + 0.01, res.arrays, check_measurement=False)
    assert not np.array_equal(other.x, res.x)


@pytest.mark.parametrize("edit, match", [
    (lambda p: p["params"].update(bogus=1), "unknown parameter"),
    (lambda p: p["params"].update(iters=10 ** 9), "above its maximum"),
    (lambda p: p["operator"]["params"].update(keep=7.0), "above its maximum"),
    (lambda p: p["operator"].update(shape=[N, -1]), "positive integers"),
    (lambda p: p["operator"].update(shape="32"), "positive integers"),
    (lambda p: p["operator"].update(extra=1), "unknown key"),
    (lambda p: p.update(operator="blur"), "mapping"),
    (lambda p: p.pop("method"), "lacks method"),
])
def test_malformed_records_are_refused(inpaint_run, edit, match):
    y, _, res = inpaint_run
    prov = copy.deepcopy(res.provenance)
    edit(prov)
    with pytest.raises(InputError, match=match):
        api.rerun(prov, y, res.arrays)


def test_operator_specs_are_range_checked():
    op = api.make_operator("mri", (N, N), device="cpu")
    spec = op.spec()
    spec["params"]["acceleration"] = 1000.0
    with pytest.raises(InputError, match="acceleration=1000.0 is above its maximum"):
        operator_from_spec(spec)
    spec = op.spec()
    spec["measurement_shape"] = [N, N + 1]
    with pytest.raises(InputError, match="inconsistent"):
        operator_from_spec(spec)


# ---------------------------------------------------------------- memory
def test_every_method_has_a_measured_working_set():
    from napari_invrec.core.methods import METHODS

    measured = method_factors()
    # mcnn and neumann need operator-specific weights the measuring machine did not have
    assert set(METHODS) - set(measured) <= {"mcnn", "neumann"}
    assert all(1.0 <= f < 1000.0 for f in measured.values())


def test_a_run_that_cannot_fit_is_refused_within_a_second():
    op = api.make_operator("blur", (256, 256), device="cpu")
    y = np.zeros((256, 256), np.float32)
    t = time.perf_counter()
    with pytest.raises(ResourceError, match=r"needs about .* GB .*fewer samples"):
        api.reconstruct(y, op, "dps", n_samples=4096)
    assert time.perf_counter() - t < 1.0


def test_the_estimate_scales_with_image_and_batch():
    from napari_invrec.core.methods import METHODS
    from napari_invrec.core.params import make_params

    small = api.make_operator("blur", (64, 64), device="cpu")
    big = api.make_operator("blur", (128, 128), device="cpu")
    p1 = make_params(METHODS["dps"].params, n_samples=1, steps=1)
    p4 = make_params(METHODS["dps"].params, n_samples=4, steps=1)
    w = [estimate_run_bytes(o, "dps", p, stochastic=True, budget_bytes=2 ** 30)[0]
         for o, p in ((small, p1), (big, p1), (small, p4))]
    assert w[1] == pytest.approx(4 * w[0], rel=1e-6) and w[2] == pytest.approx(4 * w[0])
    need = check_run_memory(small, "dps", p1, stochastic=True, budget_bytes=2 ** 20,
                            available={"cpu": 2 ** 40})
    with pytest.raises(ResourceError, match="is free"):
        check_run_memory(small, "dps", p1, stochastic=True, budget_bytes=2 ** 20,
                         available={"cpu": need - 1})


def test_a_history_budget_without_room_for_one_iterate_is_refused_first(blur):
    op, _, y = blur
    calls = []
    with pytest.raises(ResourceError, match="raise it to at least 1 MB"):
        api.reconstruct(y, op, "tv-fista", history_budget=N * N, **_never_started(calls))
    assert calls == []


# ---------------------------------------------------------------- cancel inside a step
def test_cancel_stops_blind_deconvolution_inside_its_step(monkeypatch):
    """One outer step holds thousands of inner iterations; a cancel set during the image
    sub-problem stops it at the next inner iteration, not at the end of the step."""
    from napari_invrec.core.methods import blind

    x = shepp_logan(N)
    op = api.make_operator("blind-blur", x.shape, device="cpu")
    y = api.simulate(x, op, sigma=0.01, seed=0)
    stop, inner = threading.Event(), {"n": 0}
    real = blind.tv_fista

    def counting(*a, **k):
        for s in real(*a, **k):
            inner["n"] += 1
            if inner["n"] == 5:
                stop.set()
            yield s

    monkeypatch.setattr(blind, "tv_fista", counting)
    with pytest.raises(CancelledError):
        api.reconstruct(y, op, "blind-deconv", iters=1, x_iters=5000, k_iters=5000,
                        cancel=stop)
    assert inner["n"] == 5


# ---------------------------------------------------------------- inputs
def test_validation_returns_a_private_copy():
    a = np.random.default_rng(0).random((8, 8)).astype(np.float32)
    out = check_image_array(a)
    assert not np.shares_memory(out, a) and out.flags.c_contiguous
    big_endian = a.astype(">f4")
    assert check_image_array(big_endian).dtype == np.float32
    with pytest.raises(InputError, match="not numbers"):
        check_image_array(np.array([["a", "b"], ["c", "d"]]))
    with pytest.raises(InputError, match="too large"):
        check_image_array(np.full((4, 4), 1e30, np.float32))


def test_records_replay_on_their_recorded_device():
    """A stochastic run repeats exactly only on its own device (random streams differ), so a
    re-run or calibration from a record uses the recorded device when this machine has it."""
    import torch

    from napari_invrec.engine.device import choose_device, replay_device

    assert replay_device("cpu") == torch.device("cpu")
    for missing in (None, "bogus", "mps:7" if not torch.backends.mps.is_available() else None):
        assert replay_device(missing) == choose_device("auto")
    if not torch.cuda.is_available():
        assert replay_device("cuda:0") == torch.device("cpu")
