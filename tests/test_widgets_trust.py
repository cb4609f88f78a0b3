"""GUI tests of the Uncertainty & hallucinations dock widget (napari viewer under Xvfb)."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import drain

import napari_invrec.core.methods.tv  # noqa: F401 - registers langevin-tv, tv-fista
from napari_invrec import api
from napari_invrec.core.params import make_params, to_dict
from napari_invrec.engine.layers import measurement_layer, result_layers
from napari_invrec.engine.runner import run as engine_run

pytestmark = pytest.mark.gui

N = 32
LANGEVIN = "langevin-tv · inpaint"
TV = "tv-fista · inpaint"


@pytest.fixture(scope="module")
def runs():
    from napari_invrec.core.data.phantoms import shepp_logan
    from napari_invrec.core.operators.noise import NoiseParams

    x = shepp_logan(N)
    op = api.make_operator("inpaint", x.shape, device="cpu", keep=0.6, seed=1)
    noise = make_params(NoiseParams, sigma=0.05, seed=0)
    y = api.simulate(x, op, sigma=0.05, seed=0)
    out = {}
    for method, kw in (("langevin-tv", {"lam": 0.02, "sigma": 0.05, "iters": 40,
                                        "burn_in": 15, "n_samples": 6}),
                       ("tv-fista", {"lam": 0.01, "iters": 30})):
        p = make_params(api.method_params(method), **kw)
        out[method] = drain(engine_run(y, op, method, p, reference=x, noise=to_dict(noise),
                                       ground_truth="truth"))[1]
    return x, y, op, noise, out


def _viewer(make_napari_viewer, runs):
    x, y, op, noise, results = runs
    viewer = make_napari_viewer()
    viewer.add_image(x, name="truth")
    data, kw, _ = measurement_layer(y, op, noise, name="y", ground_truth="truth")
    viewer.add_image(data, **kw)
    for method, res in results.items():
        for data, kw, _ in result_layers(res, name=f"{method} · inpaint"):
            viewer.add_image(data, **kw)
    return viewer


def _maps(qtbot, w):
    assert w.compute_maps() is not None
    qtbot.waitUntil(lambda: bool(w.maps), timeout=30000)


def test_maps_hotspots_and_calibration(make_napari_viewer, qtbot, wait_idle, runs):
    from napari_invrec._widgets.trust import TrustWidget

    viewer = _viewer(make_napari_viewer, runs)
    _, w = viewer.window.add_plugin_dock_widget("napari-invrec", "Uncertainty & hallucinations")
    assert isinstance(w, TrustWidget)
    w.run.value = LANGEVIN
    assert w.reference.value == "truth"  # the ground truth recorded in the provenance
    w.dc_reference.value = TV
    _maps(qtbot, w)
    kinds = ("std", "null-space (vs reference)", "measurement-space", "null-space difference",
             "null-space spread")
    for kind in kinds:
        layer = viewer.layers[f"{LANGEVIN} [{kind}]"]
        # the std is the run's own layer; the others are new map layers
        assert layer.metadata["invrec"]["kind"] == ("std" if kind == "std" else "hallucination")
        assert layer.data.shape == (N, N)
    assert set(w.hot_map.choices) == {f"{LANGEVIN} [{k}]" for k in kinds}
    assert viewer.layers[f"{LANGEVIN} [null-space difference]"].colormap.name == "PiYG"
    assert viewer.layers[f"{LANGEVIN} [null-space spread]"].colormap.name == "magma"
    x, _, op, _, results = runs
    assert np.allclose(viewer.layers[f"{LANGEVIN} [std]"].data, results["langevin-tv"].std)
    # unobserved pixels carry all the null-space spread
    mask = np.asarray(op.mask).reshape(N, N) > 0
    spread = viewer.layers[f"{LANGEVIN} [null-space spread]"].data
    assert spread[mask].max() < 1e-5 < spread[~mask].mean()
    # recomputing replaces the layers instead of stacking copies
    n_layers = len(viewer.layers)
    _maps(qtbot, w)
    assert len(viewer.layers) == n_layers

    # hotspot overlay of the null-space spread: a Labels layer with per-region scores
    w.hot_map.value = f"{LANGEVIN} [null-space spread]"
    w.hot_form.set_values({"sigma": 1.0, "quantile": 0.9, "min_area": 3})
    labels = w.hotspots()
    from napari.layers import Labels

    assert isinstance(labels, Labels) and labels in viewer.layers
    feats = labels.features
    regions = labels.metadata["invrec"]["regions"]
    assert len(regions) == len(feats) == labels.data.max() >= 1
    assert list(feats["index"]) == list(range(1, len(regions) + 1))
    assert list(feats["sum"]) == sorted(feats["sum"], reverse=True)
    # hotspots of the null-space spread lie (mostly) on unobserved pixels
    assert (~mask[labels.data > 0]).mean() > 0.7

    # calibration in the background: bands with stated and measured coverage
    w.cal_form.set_values({"n_pairs": 12, "batch": 12, "alpha": 0.1})
    assert w.calibrate() is not None
    wait_idle(w, 60000)
    rep = w.report
    assert rep is not None and rep.stated == pytest.approx(0.9)
    assert 0.0 < rep.measured <= 1.0 and rep.q > 0
    assert "stated coverage 90.0%" in w.status.value
    lo = viewer.layers[f"{LANGEVIN} [lower 90%]"].data
    hi = viewer.layers[f"{LANGEVIN} [upper 90%]"].data
    res = results["langevin-tv"]
    assert np.allclose(hi - lo, 2 * rep.q * np.maximum(res.std, rep.eps), atol=1e-5)
    assert np.allclose((hi + lo) / 2, res.x, atol=1e-5)


def test_bad_input_is_a_notification(make_napari_viewer, qtbot, notes, runs):
    from napari_invrec._widgets.trust import TrustWidget

    viewer = _viewer(make_napari_viewer, runs)
    w = TrustWidget(viewer)
    # a deterministic run cannot be calibrated
    w.run.value = TV
    assert w.calibrate() is None
    assert any("not a stochastic" in m or "no std layer" in m for m in notes())
    assert not w.controller.running
    # hotspots need a map first
    assert w.hotspots() is None
    assert any("compute the run's maps first" in m for m in notes())
    # a result layer whose provenance was lost
    viewer.layers[LANGEVIN].metadata = {"invrec": {"kind": "result"}}
    w.refresh()
    w.run.value = LANGEVIN
    assert w.calibrate() is None and w.compute_maps() is None
    assert any("provenance" in m for m in notes())
    # no run at all
    viewer.layers.clear()
    assert w.compute_maps() is None
    assert any("choose a run" in m for m in notes())


def test_calibration_can_be_cancelled(make_napari_viewer, qtbot, wait_idle, notes, runs):
    from napari_invrec._widgets.trust import TrustWidget

    viewer = _viewer(make_napari_viewer, runs)
    w = TrustWidget(viewer)
    w.run.value = LANGEVIN
    w.cal_form.set_values({"n_pairs": 64, "batch": 2})
    assert w.calibrate() is not None
    assert not w.cal_button.enabled
    w.cancel()
    wait_idle(w, 30000)
    assert w.report is None and w.cal_button.enabled
    assert any("cancelled" in m for m in notes())
    assert not any(layer.name.endswith("90%]") for layer in viewer.layers)
