"""GUI tests of the Reconstruct dock widget: runs, results, cancel, errors, dask stacks."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest
from helpers import reconstruct_dock

from napari_invrec import api

pytestmark = pytest.mark.gui


@pytest.fixture(scope="module")
def truth():
    from napari_invrec.core.data import shepp_logan

    return shepp_logan(64)


def _setup(make_napari_viewer, truth, operator="blur", **op_params):
    """Viewer with the ground truth and a simulated measurement (as the Simulate widget makes)."""
    return reconstruct_dock(make_napari_viewer(), truth.copy(), operator, **op_params)


def _copies(viewer):
    return {layer.name: np.array(layer.data, copy=True) for layer in viewer.layers}


def _unchanged(viewer, copies):
    for name, data in copies.items():
        np.testing.assert_array_equal(viewer.layers[name].data, data)


def test_tv_fista_run_adds_result_and_history(make_napari_viewer, qtbot, truth, wait_idle,
                                              notes):
    viewer, w = _setup(make_napari_viewer, truth, "blur", sigma=1.5)
    assert w.measurement.value.name == "y"
    assert w.reference.value.name == "truth"  # defaults to the measurement's ground truth
    assert w.op_label.value.startswith("operator: blur") and "sigma=1.5" in w.op_label.value
    copies = _copies(viewer)
    w.method.value = "tv-fista"
    w.method_form.set_values({"iters": 30, "lam": 0.002})
    steps_seen = []
    worker = w.run()
    worker.yielded.connect(lambda p: steps_seen.append(p.step))
    wait_idle(w)
    names = [layer.name for layer in viewer.layers]
    assert "tv-fista · blur" in names and "tv-fista · blur [iterates]" in names
    assert not any("[live]" in n for n in names)
    result, hist = viewer.layers["tv-fista · blur"], viewer.layers["tv-fista · blur [iterates]"]
    steps = hist.metadata["invrec"]["steps"]
    assert hist.data.ndim == 3 and hist.data.shape[0] == len(steps) > 1
    assert all(b > a for a, b in zip(steps, steps[1:])) and steps[-1] == 30
    np.testing.assert_allclose(hist.data[-1], result.data, atol=1e-6)
    prov = result.metadata["invrec"]["provenance"]
    assert prov["method"] == "tv-fista" and prov["params"]["iters"] == 30
    assert prov["seed"] == 0 and prov["operator"]["operator"] == "blur"
    assert prov["ground_truth"] == "truth"
    meta = {k: v for k, v in result.metadata["invrec"].items()
            if k not in ("arrays", "complex_data", "measurement")}
    json.dumps(meta)
    # the reconstruction beats the measurement itself as an estimate of the truth
    y = viewer.layers["y"].data
    mse_y = float(np.mean((y - truth) ** 2))
    assert prov["metrics"]["psnr"] > 10 * np.log10(float(truth.max()) ** 2 / mse_y) + 1.0
    assert max(steps_seen) == 30
    assert len(w.runs) == 1 and w.runs[0]["layers"][0] == "tv-fista · blur"
    assert any("tv-fista · blur" in m and "psnr" in m for m in notes())
    _unchanged(viewer, copies)


def test_method_list_follows_operator_support(make_napari_viewer, truth):
    from napari_invrec.core.methods.registry import METHODS, register_method

    base = api.method_params("adjoint")
    register_method("blur-only-test", base, operators=("blur",))(METHODS["adjoint"].fn)
    try:
        viewer, w = _setup(make_napari_viewer, truth, "mri", acceleration=4.0)
        choices = list(w.method.choices)
        assert choices and "blur-only-test" not in choices
        assert all(METHODS[m].supports("mri") for m in choices)
        # real data: the user's operator choice drives the list
        viewer.add_image(truth, name="raw")
        w.measurement.value = viewer.layers["raw"]
        assert not w.op_panel.native.isHidden() or not w.op_label.visible
        w.op_panel.operator.value = "blur"
        assert "blur-only-test" in w.method.choices
        w.op_panel.operator.value = "mri"
        assert "blur-only-test" not in w.method.choices
    finally:
        METHODS.pop("blur-only-test", None)


@pytest.mark.parametrize("method,field,operator,value", [
    ("dpir", "iters", "mri", 40), ("dpir", "iters", "blur", 8),
    ("ddnm", "estimate_iters", "mri", 120), ("ddnm", "estimate_iters", "blur", 8)])
def test_the_form_starts_from_the_methods_defaults_for_the_operator(make_napari_viewer, truth,
                                                                    method, field, operator,
                                                                    value):
    """dpir runs 40 iterations on MRI and 8 elsewhere, ddnm's estimate 120 and 8: the form
    shows the measurement's (ddnm's field is shown: its default start is the estimate)."""
    _, w = _setup(make_napari_viewer, truth, operator)
    w.method.value = method
    values = w.method_form.values()
    assert values[field] == value == api.method_defaults(method, operator)[field]


def test_mri_run_shows_magnitude_and_keeps_complex_result(make_napari_viewer, truth, wait_idle):
    viewer, w = _setup(make_napari_viewer, truth, "mri", acceleration=2.0)
    w.method.value = "adjoint"
    w.run()
    wait_idle(w)
    res = viewer.layers["adjoint · mri"]
    x = res.metadata["invrec"]["complex_data"]
    assert np.iscomplexobj(x) and not np.iscomplexobj(res.data)
    np.testing.assert_allclose(res.data, np.abs(x), rtol=1e-5)
    # zero-filled reconstruction at R=2 (half the k-space columns): well correlated with truth
    assert np.corrcoef(res.data.ravel(), truth.ravel())[0, 1] > 0.75


def test_pnp_admm_gets_the_estimated_noise_level(make_napari_viewer, truth, wait_idle):
    """pnp-admm's noise field is filled with the measurement's estimate (the helper simulates
    noise 0.02), and the run records it: its strength and rho are balanced against it."""
    viewer, w = _setup(make_napari_viewer, truth, "denoise")
    w.method.value = "pnp-admm"
    est = w.units.estimate["sigma_normalised"]
    assert 0.01 < est < 0.04
    assert w.method_form.values()["noise"] == pytest.approx(est, rel=1e-4)  # spin box digits
    w.method_form.set_values({"iters": 3, "denoiser": "tv"})
    w.run()
    wait_idle(w)
    prov = viewer.layers["pnp-admm · denoise"].metadata["invrec"]["provenance"]
    assert prov["params"]["noise"] == pytest.approx(est, rel=1e-4)


def test_langevin_adds_std_layer(make_napari_viewer, truth, wait_idle):
    viewer, w = _setup(make_napari_viewer, truth, "inpaint", keep=0.7)
    w.method.value = "langevin-tv"
    w.method_form.set_values({"n_samples": 4, "iters": 12, "burn_in": 4})
    w.run()
    wait_idle(w)
    std = viewer.layers["langevin-tv · inpaint [std]"].data
    assert std.shape == (64, 64) and np.all(np.isfinite(std)) and np.all(std >= 0)
    assert float(std.max()) > 0
    assert viewer.layers["langevin-tv · inpaint [std]"].metadata["invrec"]["kind"] == "std"


def test_cancel_stops_within_one_step_and_adds_nothing(make_napari_viewer, qtbot, truth,
                                                      monkeypatch, notes):
    from napari_invrec._widgets import reconstruct as rec

    produced = []  # (step, time) of every step the engine computed, from the worker thread
    lock = threading.Lock()
    original = rec.run_engine

    def recording(*args, **kwargs):
        gen = original(*args, **kwargs)
        while True:
            try:
                prog = next(gen)
            except StopIteration as stop:
                return stop.value
            with lock:
                produced.append((prog.step, time.perf_counter()))
            yield prog

    monkeypatch.setattr(rec, "run_engine", recording)
    viewer, w = _setup(make_napari_viewer, truth, "blur", sigma=1.5)
    copies = _copies(viewer)
    n_layers = len(viewer.layers)
    w.method.value = "tv-fista"
    w.method_form.set_values({"iters": 100000})
    received = []
    worker = w.run()
    worker.yielded.connect(lambda p: received.append(p.step))
    qtbot.waitUntil(lambda: len(received) >= 3, timeout=10000)
    qtbot.waitUntil(lambda: any(lay.name.endswith("[live]") for lay in viewer.layers), timeout=5000)
    assert w.run() is None and "already in progress" in notes()[-1]  # a second Run is refused
    t_cancel = time.perf_counter()
    w.cancel()
    qtbot.waitUntil(lambda: not w.controller.running, timeout=2000)
    assert time.perf_counter() - t_cancel <= 2.0
    with lock:
        after = [s for s, t in produced if t > t_cancel]
    assert len(after) <= 1, after
    assert len(viewer.layers) == n_layers  # no result, and the live layer is gone
    assert not any("[live]" in layer.name for layer in viewer.layers)
    assert any("cancelled at step" in m for m in notes())
    assert w.runs == [] and w.run_button.enabled and not w.cancel_button.enabled
    _unchanged(viewer, copies)


def test_pause_holds_the_run_until_resumed(make_napari_viewer, qtbot, truth):
    viewer, w = _setup(make_napari_viewer, truth, "denoise")
    w.method.value = "tv-fista"
    w.method_form.set_values({"iters": 100000})
    received = []
    worker = w.run()
    worker.yielded.connect(lambda p: received.append(p.step))
    qtbot.waitUntil(lambda: len(received) >= 2, timeout=10000)
    w.toggle_pause()
    qtbot.waitUntil(lambda: w.pause_button.text == "Resume", timeout=3000)
    qtbot.wait(100)  # deliver yields queued before the pause
    held = len(received)
    qtbot.wait(300)
    assert len(received) == held
    w.toggle_pause()
    qtbot.waitUntil(lambda: len(received) > held + 2, timeout=5000)
    w.cancel()
    qtbot.waitUntil(lambda: not w.controller.running, timeout=3000)


def test_a_diverging_run_keeps_its_result_and_warns(make_napari_viewer, truth, wait_idle,
                                                    notes):
    viewer, w = _setup(make_napari_viewer, truth, "mri", acceleration=4.0)
    w.method.value = "pnp-admm"
    # the blind-spot network diverges at the fixed pair (noise 0: the estimate the dock filled
    # in raises rho, which holds it)
    w.method_form.set_values({"denoiser": "n2s-atoms", "noise": 0.0})
    w.run()
    wait_idle(w, 60000)
    res = viewer.layers["pnp-admm · mri"]
    assert "diverged" in res.metadata["invrec"]["provenance"]["warnings"][0]
    assert "diverged" in w.status.value and "diverged" in notes()[-1]


def test_nan_measurement_reports_error_and_starts_nothing(make_napari_viewer, truth, notes):
    from napari_invrec._widgets.reconstruct import ReconstructWidget

    viewer = make_napari_viewer()
    y = truth.copy()
    y[5, 7] = np.nan
    viewer.add_image(y, name="raw", contrast_limits=(0, 1))
    w = ReconstructWidget(viewer)
    w.op_panel.operator.value = "denoise"
    w.method.value = "tikhonov"
    assert w.run() is None
    assert not w.controller.running and len(viewer.layers) == 1
    assert "NaN" in notes()[-1]


def test_real_data_with_user_operator(make_napari_viewer, truth, wait_idle):
    from napari_invrec._widgets.reconstruct import ReconstructWidget

    viewer = make_napari_viewer()
    op = api.make_operator("blur", truth.shape, sigma=2.0)
    viewer.add_image(api.simulate(truth, op, sigma=0.01, seed=0), name="raw")
    w = ReconstructWidget(viewer)
    assert w.op_label.native.isHidden() or not w.op_label.value
    w.op_panel.operator.value = "blur"
    w.op_panel.form.set_values({"sigma": 2.0})
    w.method.value = "tikhonov"
    w.method_form.set_values({"iters": 20, "lam": 1e-3})
    w.run()
    wait_idle(w)
    res = viewer.layers["tikhonov · blur"]
    assert res.metadata["invrec"]["provenance"]["operator"]["params"]["sigma"] == 2.0
    # the blur was (partly) undone: closer to the truth than the blurred data
    assert np.mean((res.data - truth) ** 2) < np.mean((viewer.layers["raw"].data - truth) ** 2)


# ------------------------------------------------------------------ dask stacks
def _counting_stack(planes):
    """A (T, H, W) dask array whose blocks record their index when computed."""
    import dask
    import dask.array as da

    computed = []

    def block(i):
        computed.append(i)
        return planes[i]

    arr = da.stack([da.from_delayed(dask.delayed(block)(i), planes[0].shape, np.float32)
                    for i in range(len(planes))])
    return arr, computed


@pytest.fixture(scope="module")
def blurred_planes(truth):
    op = api.make_operator("blur", truth.shape, sigma=1.0)
    return [api.simulate(truth * (0.5 + 0.25 * t), op, sigma=0.01, seed=t) for t in range(4)]


def _stack_widget(make_napari_viewer, planes):
    from napari_invrec._widgets.reconstruct import ReconstructWidget

    viewer = make_napari_viewer()
    arr, computed = _counting_stack(planes)
    viewer.add_image(arr, name="stack", contrast_limits=(0, 1))
    w = ReconstructWidget(viewer)
    w.measurement.value = viewer.layers["stack"]
    w.op_panel.operator.value = "blur"
    w.op_panel.form.set_values({"sigma": 1.0})
    return viewer, w, computed


def test_stack_plane_in_view_computes_only_that_plane(make_napari_viewer, blurred_planes,
                                                     wait_idle):
    viewer, w, computed = _stack_widget(make_napari_viewer, blurred_planes)
    w.show()
    assert not w.stack_mode.native.isHidden()
    viewer.dims.set_current_step(0, 2)
    computed.clear()
    w.stack_mode.value = "plane in view"
    w.method.value = "tikhonov"
    w.method_form.set_values({"iters": 10})
    w.run()
    wait_idle(w)
    assert set(computed) == {2}
    res = viewer.layers["tikhonov · blur [plane 2]"].data
    op = api.make_operator("blur", (64, 64), sigma=1.0)
    expected = api.reconstruct(blurred_planes[2], op, "tikhonov", iters=10).x
    np.testing.assert_allclose(res, expected, atol=1e-4)


def test_stack_lazy_and_eager_modes(make_napari_viewer, blurred_planes, wait_idle):
    import dask.array as da

    viewer, w, computed = _stack_widget(make_napari_viewer, blurred_planes)
    viewer.dims.set_current_step(0, 1)
    computed.clear()
    w.method.value = "adjoint"
    w.stack_mode.value = "all planes (lazy)"
    lazy = w.run()
    assert isinstance(lazy.data, da.Array) and lazy.data.shape == (4, 64, 64)
    assert set(computed) <= {1}  # napari computed at most the plane in view
    op = api.make_operator("blur", (64, 64), sigma=1.0)
    np.testing.assert_allclose(np.asarray(lazy.data[3]),
                               api.reconstruct(blurred_planes[3], op, "adjoint").x, atol=1e-5)
    w.stack_mode.value = "all planes now"
    computed.clear()
    w.run()
    wait_idle(w)
    eager = viewer.layers["adjoint · blur [all planes]"].data
    assert eager.shape == (4, 64, 64) and sorted(set(computed)) == [0, 1, 2, 3]
    np.testing.assert_allclose(eager, np.asarray(lazy.data), atol=1e-5)


def test_cancel_acts_inside_a_long_step(make_napari_viewer, qtbot, truth, monkeypatch, notes):
    """Cancel reaches the engine's cancel points: a blind-deconv run of one outer step with
    thousands of inner iterations stops inside that step and reports a cancel, not an error."""
    from napari_invrec.core.methods import blind

    viewer, w = _setup(make_napari_viewer, truth, "blind-blur")
    inner = {"n": 0, "at_cancel": None}
    real = blind.tv_fista

    def counting(*a, **k):
        for s in real(*a, **k):
            inner["n"] += 1
            yield s

    monkeypatch.setattr(blind, "tv_fista", counting)
    n_layers = len(viewer.layers)
    w.method.value = "blind-deconv"
    w.method_form.set_values({"iters": 1, "x_iters": 5000, "k_iters": 5000})
    w.run()
    qtbot.waitUntil(lambda: inner["n"] >= 5, timeout=20000)
    w.cancel()
    inner["at_cancel"] = inner["n"]
    qtbot.waitUntil(lambda: not w.controller.running, timeout=5000)
    assert inner["n"] <= inner["at_cancel"] + 1  # stopped at the next inner iteration
    assert any("cancelled" in m for m in notes()) and not any("failed" in m for m in notes())
    assert len(viewer.layers) == n_layers
