"""GUI tests with hostile input: malformed layer metadata, a broken weights manifest, failing
workers, a viewer closed mid-run, layers edited or removed mid-run, large stack planes.

Each test states the behaviour a user relies on: no exception escapes a dock's callbacks, each
problem is reported once as one line, and a run neither touches a closed viewer nor reads a
layer's live buffer.
"""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest
from helpers import drain

from napari_invrec import api
from napari_invrec.core.errors import InputError

pytestmark = pytest.mark.gui


# ------------------------------------------------------------------ fixtures and helpers
@pytest.fixture(scope="module")
def truth():
    from napari_invrec.core.data import shepp_logan

    return shepp_logan(64)


@pytest.fixture(scope="module")
def run_layers(truth):
    """Layer tuples of a well-formed measurement and a finished run (as the docks make them)."""
    from napari_invrec.core.operators import NoiseParams
    from napari_invrec.core.params import make_params
    from napari_invrec.engine.layers import measurement_layer, result_layers
    from napari_invrec.engine.runner import run as engine_run

    op = api.make_operator("blur", truth.shape, device="cpu", sigma=1.5)
    y = api.simulate(truth, op, sigma=0.02, seed=1)
    res = drain(engine_run(y, op, "adjoint", make_params(api.method_params("adjoint")),
                           reference=truth, ground_truth="truth"))[1]
    return ([measurement_layer(y, op, NoiseParams(sigma=0.02, seed=1), name="y",
                               ground_truth="truth")]
            + result_layers(res, name="adjoint · blur"))


def _viewer(make_napari_viewer, truth, run_layers):
    from napari.layers import Layer

    viewer = make_napari_viewer()
    viewer.add_image(truth.copy(), name="truth")
    for data, kw, ltype in run_layers:
        viewer.add_layer(Layer.create(data, kw, ltype))
    return viewer


def _errors_since(start: int) -> list[str]:
    """Messages of the error notifications (ours and napari's tracebacks) since ``start``."""
    from napari.utils.notifications import NotificationSeverity, notification_manager

    return [str(n.message) for n in notification_manager.records[start:]
            if n.severity == NotificationSeverity.ERROR]


@pytest.fixture
def napari_catches_errors(monkeypatch):
    """napari as a user runs it: errors it receives become notifications (tests turn that off
    and print them instead), so a traceback napari relays counts as a second report."""
    from napari.utils.notifications import notification_manager

    monkeypatch.setattr(notification_manager, "catch_error", True)
    monkeypatch.setattr(notification_manager, "exit_on_error", False)


def _n_records() -> int:
    from napari.utils.notifications import notification_manager

    return len(notification_manager.records)


def _measurement(viewer, truth, op_name="blur", name="y", **op_params):
    from napari_invrec.core.operators import NoiseParams
    from napari_invrec.engine.layers import measurement_layer

    op = api.make_operator(op_name, truth.shape, **op_params)
    y = api.simulate(truth, op, sigma=0.02, seed=1)
    data, kw, _ = measurement_layer(y, op, NoiseParams(sigma=0.02, seed=1), name=name,
                                    ground_truth="truth")
    return viewer.add_image(data, **kw)


# ------------------------------------------------------------------ 1. malformed metadata
_SPEC = {"operator": "blur", "shape": [64, 64], "measurement_shape": [64, 64],
         "params": {"kernel": "gaussian", "sigma": 1.5}}
MALFORMED = {
    "string": "tv-fista",
    "list": ["kind", "result"],
    "no-kind": {"provenance": {}},
    "kind-not-str": {"kind": 3},
    "spec-without-shape": {"kind": "measurement", "operator": {"operator": "blur"}},
    "provenance-string": {"kind": "result", "provenance": "tv-fista on blur"},
    "arrays-not-arrays": {"kind": "result", "provenance": {"method": "adjoint"},
                          "arrays": {"kernel_array": "not an array"}},
    "arrays-string": {"kind": "measurement", "operator": _SPEC, "arrays": "mask"},
    "operator-string": {"kind": "measurement", "operator": "blur"},
    "shape-string": {"kind": "measurement", "operator": {**_SPEC, "shape": "64x64"}},
    "operator-params-list": {"kind": "measurement", "operator": {**_SPEC, "params": [1.5]}},
    "complex-data-string": {"kind": "measurement", "operator": _SPEC, "complex_data": "re+im"},
    "metric-history-number": {"kind": "result", "provenance": {}, "metric_history": 3},
    "timings-text": {"kind": "result", "provenance": {"timings": {"total_s": "slow"}}},
    "fingerprint-string": {"kind": "result", "provenance": {"measurement": "y"}},
    "ground-truth-list": {"kind": "measurement", "operator": _SPEC, "ground_truth": ["truth"]},
}


_CHOSEN = ("string", "provenance-string", "operator-string", "shape-string",
           "complex-data-string")


def test_malformed_metadata_is_ignored_by_every_dock(make_napari_viewer, truth, run_layers,
                                                     notes):
    from napari_invrec._widgets.compare import CompareWidget
    from napari_invrec._widgets.reconstruct import ReconstructWidget
    from napari_invrec._widgets.trust import TrustWidget

    viewer = _viewer(make_napari_viewer, truth, run_layers)
    rec, cmp_, trust = ReconstructWidget(viewer), CompareWidget(viewer), TrustWidget(viewer)
    assert rec.measurement.value.name == "y"
    # adding such layers, then any other layer change, raises nothing
    bad = [viewer.add_image(truth.copy(), name=k, metadata={"invrec": v})
           for k, v in MALFORMED.items()]
    other = viewer.add_image(truth.copy(), name="other")
    viewer.layers.remove(other)
    viewer.layers.move(viewer.layers.index(bad[0]), 0)
    # ignored where runs, measurements and references are listed; the real run still works
    assert [r.name for r in cmp_.runs] == ["adjoint · blur"]
    assert not set(MALFORMED) & set(cmp_._reference.choices)
    assert cmp_.rows and cmp_.rows[0]["psnr"] is not None
    assert list(trust.run.choices) == ["adjoint · blur"]
    assert not set(MALFORMED) & set(trust.reference.choices)
    assert rec.measurement.value.name == "y"  # a new "measurement" was not picked by itself
    # chosen explicitly: one line says why, and Run refuses it without starting anything
    # (every variant's message is checked without Qt in the next test)
    for layer in (lay for lay in bad if lay.name in _CHOSEN):
        start = _n_records()
        rec.measurement.value = layer
        errors = _errors_since(start)
        assert len(errors) == 1 and f"{layer.name!r}" in errors[0] and "metadata" in errors[0]
        assert "\n" not in errors[0]
        assert rec.run() is None and not rec.controller.running
        assert "malformed" in notes()[-1] and f"{layer.name!r}" in notes()[-1]
    # the docks keep working after they are removed
    for layer in bad:
        viewer.layers.remove(layer)
    rec.measurement.value = viewer.layers["y"]
    assert [r.name for r in cmp_.runs] == ["adjoint · blur"]


def test_layer_meta_answers_absent_wellformed_malformed(truth, run_layers):
    from types import SimpleNamespace

    from napari_invrec._widgets._meta import checked_meta, layer_meta, usable_layers

    plain = SimpleNamespace(name="plain", metadata={"source": "file"})
    good = [SimpleNamespace(name=kw["name"], metadata=kw["metadata"]) for _, kw, _ in run_layers]
    bad = [SimpleNamespace(name=k, metadata={"invrec": v}) for k, v in MALFORMED.items()]
    assert layer_meta(plain) == {}
    lost = SimpleNamespace(name="lost", metadata={"invrec": {"kind": "result"}})
    assert layer_meta(lost) == {"kind": "result"}  # incomplete, not malformed: docks explain
    assert all(layer_meta(g) == g.metadata["invrec"] for g in good)
    assert all(layer_meta(b) is None for b in bad)
    assert usable_layers([plain, *bad, *good]) == [plain, *good]
    for b in bad:
        with pytest.raises(InputError, match=f"layer '{b.name}' has malformed"):
            checked_meta(b)


# ------------------------------------------------------------------ 2. broken weights manifest
def test_form_survives_a_choices_callable_that_raises(qtbot, notes):
    import dataclasses

    from napari_invrec._widgets.forms import ParamsForm
    from napari_invrec.core.params import param

    def broken():
        raise InputError("weights manifest /x/manifest.json is malformed")

    @dataclasses.dataclass
    class _P:
        weights: str = param("drunet-general", "network", choices=broken)
        iters: int = param(5, "steps", min=1, max=10)

    form = ParamsForm(_P)
    qtbot.addWidget(form.native)
    assert form.widget("weights").value == "drunet-general"
    form.reset_choices()
    form.reset_choices()
    assert form.params() == _P()
    msgs = [m for m in notes() if "weights" in m]
    assert len(msgs) == 1 and "malformed" in msgs[0] and "default" in msgs[0]


def test_broken_user_manifest_still_rebuilds_the_method_form(make_napari_viewer, truth,
                                                             wait_idle, tmp_path, monkeypatch):
    from napari_invrec._widgets import reconstruct as rec
    from napari_invrec._widgets.reconstruct import ReconstructWidget
    from napari_invrec.core import denoisers

    viewer = make_napari_viewer()
    viewer.add_image(truth.copy(), name="truth")
    _measurement(viewer, truth, "denoise")
    w = ReconstructWidget(viewer)
    w.method.value = "tikhonov"
    (tmp_path / "manifest.json").write_text("{not json")
    monkeypatch.setenv("NAPARI_INVREC_WEIGHTS", str(tmp_path))

    def unreadable(**_kwargs):  # whatever the registry does with it, listing may still fail
        raise InputError(f"weights manifest {tmp_path / 'manifest.json'} is malformed")

    monkeypatch.setattr(denoisers, "weights_names", unreadable)
    start = _n_records()
    w.method.value = "pnp-pgd"  # its denoiser combo lists the (broken) manifests
    assert w.method_form.params_cls is api.method_params("pnp-pgd")
    assert w.method_form.widget("denoiser").value == "drunet-general"
    errors = _errors_since(start)
    assert len(errors) == 1 and "manifest" in errors[0]

    seen = []

    def fake_run(y, op, method, params, **kwargs):  # records what Run hands to the engine
        seen.append((method, type(params)))
        raise InputError("stopped by the test")
        yield  # a generator, as the engine's run

    monkeypatch.setattr(rec, "run_engine", fake_run)
    assert w.run() is not None
    wait_idle(w)
    assert seen == [("pnp-pgd", api.method_params("pnp-pgd"))]


# ------------------------------------------------------------------ 3. worker errors once
def test_failed_run_is_one_notification(make_napari_viewer, qtbot, truth, monkeypatch,
                                        napari_catches_errors):
    from napari_invrec._widgets import reconstruct as rec
    from napari_invrec._widgets.reconstruct import ReconstructWidget

    def failing(y, op, method, params, **kwargs):
        raise InputError("the measurement is too dim to reconstruct")
        yield

    monkeypatch.setattr(rec, "run_engine", failing)
    viewer = make_napari_viewer()
    _measurement(viewer, truth, sigma=1.5)
    w = ReconstructWidget(viewer)
    w.method.value = "tikhonov"
    start = _n_records()
    w.run()
    qtbot.waitUntil(lambda: not w.controller.running, timeout=10000)
    qtbot.wait(300)  # a second report (napari's traceback) would arrive by now
    errors = _errors_since(start)
    assert errors == ["tikhonov · blur failed: the measurement is too dim to reconstruct"]
    assert w.run_button.enabled


def test_a_diverging_run_ends_with_one_notification(make_napari_viewer, qtbot, truth,
                                                    monkeypatch, napari_catches_errors):
    """A RuntimeError subclass from the engine (superqt's generator worker would swallow it
    with a warning and never finish) still ends the run with one notification."""
    from napari_invrec._widgets import reconstruct as rec
    from napari_invrec._widgets.reconstruct import ReconstructWidget
    from napari_invrec.core.errors import DivergenceError

    def diverging(y, op, method, params, **kwargs):
        yield from ()
        raise DivergenceError("the objective grew for 10 steps; lower the step size")

    monkeypatch.setattr(rec, "run_engine", diverging)
    viewer = make_napari_viewer()
    _measurement(viewer, truth, sigma=1.5)
    w = ReconstructWidget(viewer)
    w.method.value = "tikhonov"
    start = _n_records()
    w.run()
    qtbot.waitUntil(lambda: not w.controller.running, timeout=10000)
    qtbot.wait(200)
    assert _errors_since(start) == ["tikhonov · blur failed: the objective grew for 10 steps; "
                                    "lower the step size"]
    assert w.run_button.enabled


def test_unexpected_worker_error_is_one_line_with_its_type(make_napari_viewer, qtbot, truth,
                                                           run_layers, monkeypatch,
                                                           napari_catches_errors):
    from napari_invrec._widgets import compare as cmp_mod
    from napari_invrec._widgets.compare import CompareWidget

    def broken(*_args, **_kwargs):
        raise ZeroDivisionError("bad\nthing")

    monkeypatch.setattr(cmp_mod, "hallucination_map", broken)
    viewer = _viewer(make_napari_viewer, truth, run_layers)
    w = CompareWidget(viewer)
    w._map_kind.value = "measurement-space"
    start = _n_records()
    assert w.compute_map() is not None
    qtbot.waitUntil(lambda: bool(_errors_since(start)), timeout=15000)
    qtbot.wait(300)  # a second report (napari's traceback) would arrive by now
    assert _errors_since(start) == ["hallucination map failed: ZeroDivisionError: bad thing"]


def test_trust_map_error_is_one_notification(make_napari_viewer, qtbot, truth, run_layers,
                                             monkeypatch, napari_catches_errors):
    from napari_invrec._widgets import trust as trust_mod
    from napari_invrec._widgets.trust import TrustWidget

    def broken(*_args, **_kwargs):
        raise InputError("maps need a ground truth of the same shape")

    monkeypatch.setattr(trust_mod, "trust_maps", broken)
    viewer = _viewer(make_napari_viewer, truth, run_layers)
    w = TrustWidget(viewer)
    w.run.value = "adjoint · blur"
    w.reference.value = "truth"
    start = _n_records()
    assert w.compute_maps() is not None
    qtbot.waitUntil(lambda: bool(_errors_since(start)), timeout=15000)
    qtbot.wait(300)
    assert _errors_since(start) == ["trust maps failed: maps need a ground truth of the same "
                                    "shape"]


# ------------------------------------------------------------------ 4. closing, removing
def _long_run(viewer, w, qtbot):
    w.method.value = "tv-fista"
    w.method_form.set_values({"iters": 100000})
    w.run()
    qtbot.waitUntil(lambda: any("[live]" in lay.name for lay in viewer.layers), timeout=15000)


@pytest.mark.parametrize("docked", [True, False], ids=["docked", "undocked"])
def test_closing_the_viewer_mid_run_quits_and_touches_nothing(make_napari_viewer, qtbot, truth,
                                                              docked):
    from napari_invrec._widgets.reconstruct import ReconstructWidget

    viewer = make_napari_viewer()
    _measurement(viewer, truth, sigma=1.5)
    if docked:  # as napari docks it: the widget sees the viewer through napari's proxy
        _, w = viewer.window.add_plugin_dock_widget("napari-invrec", "Reconstruct")
    else:
        w = ReconstructWidget(viewer)
    assert isinstance(w, ReconstructWidget)
    _long_run(viewer, w, qtbot)
    worker = w.controller.worker
    added = []
    viewer.layers.events.inserted.connect(lambda e: added.append(e.value.name))
    viewer.close()
    qtbot.waitUntil(lambda: not worker.is_running, timeout=5000)
    qtbot.wait(300)  # queued signals are delivered
    assert added == [] and len(viewer.layers) == 0
    assert worker.abort_requested


def test_a_removed_live_layer_is_not_added_again(make_napari_viewer, qtbot, truth):
    from napari_invrec._widgets.reconstruct import ReconstructWidget

    viewer = make_napari_viewer()
    _measurement(viewer, truth, sigma=1.5)
    w = ReconstructWidget(viewer)
    _long_run(viewer, w, qtbot)
    live = next(lay for lay in viewer.layers if "[live]" in lay.name)
    steps = []
    w.controller.worker.yielded.connect(lambda p: steps.append(p.step))
    viewer.layers.remove(live)
    qtbot.waitUntil(lambda: len(steps) > 20, timeout=15000)
    qtbot.wait(1500)  # many previews' worth of time (at most 30 a second, fewer when slow)
    assert not any("[live]" in lay.name for lay in viewer.layers)
    w.cancel()
    qtbot.waitUntil(lambda: not w.controller.running, timeout=5000)


# ------------------------------------------------------------------ 5. stack budget
def test_stack_modes_use_the_budget_field(make_napari_viewer, qtbot, wait_idle, notes):
    """600 x 600 planes need 1.4 MB per stored iterate: more than a hard-coded 1 MB."""
    from napari_invrec._widgets.reconstruct import ReconstructWidget

    rng = np.random.default_rng(0)
    stack = rng.random((2, 600, 600), dtype=np.float32)
    viewer = make_napari_viewer()
    viewer.add_image(stack, name="stack", contrast_limits=(0, 1))
    w = ReconstructWidget(viewer)
    w.measurement.value = viewer.layers["stack"]
    w.op_panel.operator.value = "blur"
    w.method.value = "adjoint"
    w.budget.value = 16
    w.stack_mode.value = "all planes now"
    start = _n_records()
    w.run()
    wait_idle(w)
    assert _errors_since(start) == []
    eager = viewer.layers["adjoint · blur [all planes]"].data
    assert eager.shape == (2, 600, 600)
    w.stack_mode.value = "all planes (lazy)"
    lazy = w.run()
    np.testing.assert_allclose(np.asarray(lazy.data[1]), eager[1], atol=1e-5)
    w.budget.value = 1  # and the field is what counts: 1 MB is too small for these planes
    w.stack_mode.value = "all planes now"
    w.run()
    wait_idle(w)
    assert "budget" in notes()[-1] and "failed" in notes()[-1]


# ------------------------------------------------------------------ 6. snapshots at Run
def test_run_reads_a_snapshot_of_the_measurement(make_napari_viewer, qtbot, truth, wait_idle,
                                                 monkeypatch):
    from napari_invrec._widgets import reconstruct as rec
    from napari_invrec._widgets.reconstruct import ReconstructWidget
    from napari_invrec.core.params import array_fingerprint

    original = rec.run_engine
    handed = []
    gate = threading.Event()

    def recording(y, *args, **kwargs):
        handed.append(y)
        gate.wait(10)  # the layer is edited while the run is on
        return (yield from original(y, *args, **kwargs))

    monkeypatch.setattr(rec, "run_engine", recording)
    viewer = make_napari_viewer()
    layer = _measurement(viewer, truth, sigma=1.5)
    before = np.array(layer.data, copy=True)
    w = ReconstructWidget(viewer)
    w.method.value = "tikhonov"
    w.method_form.set_values({"iters": 5})
    w.run()
    layer.data[:] = 0  # a user paints over the measurement mid-run (in place)
    gate.set()
    wait_idle(w)
    assert not np.shares_memory(handed[0], layer.data)
    np.testing.assert_array_equal(handed[0], before)
    prov = viewer.layers["tikhonov · blur"].metadata["invrec"]["provenance"]
    assert prov["measurement"] == json.loads(json.dumps(array_fingerprint(before)))


def test_mask_kernel_reference_and_stack_are_snapshots(make_napari_viewer, truth, monkeypatch):
    from napari_invrec._widgets.reconstruct import ReconstructWidget
    from napari_invrec.engine import stack as stack_mod

    viewer = make_napari_viewer()
    kernel = np.ones((5, 5), np.float32) / 25
    kl = viewer.add_image(kernel, name="psf")
    ref = viewer.add_image(truth.copy(), name="truth")
    planes = np.stack([truth, truth]).astype(np.float32)
    sl = viewer.add_image(planes, name="stack")
    w = ReconstructWidget(viewer)
    w.op_panel.operator.value = "blur"
    w.op_panel.form.set_values({"kernel": "custom"})
    w.op_panel.kernel_layer.value = kl
    arrays = w.op_panel.arrays((64, 64))
    assert not np.shares_memory(arrays["kernel_array"], kl.data)
    w.reference.value = ref
    assert not np.shares_memory(w._reference((64, 64), None), ref.data)
    handed = []
    monkeypatch.setattr(stack_mod, "reconstruct_lazy",
                        lambda y, *a, **k: handed.append(y) or np.zeros((2, 64, 64), np.float32))
    w.measurement.value = sl
    w.method.value = "adjoint"
    w.stack_mode.value = "all planes (lazy)"
    w.reference.value = None
    w.run()
    assert len(handed) == 1 and not np.shares_memory(handed[0], sl.data)
