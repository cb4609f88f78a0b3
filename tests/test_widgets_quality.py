"""GUI tests of the ground-truth-free choices: Auto and Best for this data (Reconstruct), Rank
(Compare runs)."""

from __future__ import annotations

import pytest
from helpers import drain

from napari_invrec import api
from napari_invrec.engine.layers import measurement_layer, result_layers
from napari_invrec.engine.quality import FOLDS, PROBES

pytestmark = pytest.mark.gui


def _measurement_viewer(make_napari_viewer, size, operator="inpaint", **op_params):
    """Viewer with a phantom and its simulated measurement (as the Simulate dock makes)."""
    from napari_invrec.core.data import shepp_logan
    from napari_invrec.core.operators import NoiseParams

    x = shepp_logan(size)
    op = api.make_operator(operator, x.shape, device="cpu", **op_params)
    y = api.simulate(x, op, sigma=0.02, seed=1)
    viewer = make_napari_viewer()
    viewer.add_image(x, name="truth")
    data, kw, _ = measurement_layer(y, op, NoiseParams(sigma=0.02, seed=1), name="y",
                                    ground_truth="truth")
    viewer.add_image(data, **kw)
    return viewer, x, y, op


@pytest.fixture
def stop_jobs(qtbot):
    """``stop_jobs(controller)``: cancel it at teardown and wait, so that a failed test leaves
    no worker behind (it would outlive the viewer)."""
    controllers = []
    yield controllers.append
    for c in controllers:
        c.cancel()
        qtbot.waitUntil(lambda c=c: not c.running, timeout=60000)


def _reconstruct(viewer, stop_jobs):
    from napari_invrec._widgets.reconstruct import ReconstructWidget

    w = ReconstructWidget(viewer)
    stop_jobs(w.controller)
    return w


def test_auto_tunes_fills_the_form_and_records_the_search(make_napari_viewer, qtbot, stop_jobs):
    from napari_invrec._widgets.compare import CompareWidget

    viewer, *_ = _measurement_viewer(make_napari_viewer, 48, keep=0.6, seed=4)
    w = _reconstruct(viewer, stop_jobs)
    w.method.value = "tv-fista"
    assert w.quality.auto_button.enabled and "lam" in w.quality.auto_button.tooltip
    assert "no ground truth" in w.quality.auto_button.tooltip
    w.method_form.set_values({"iters": 40, "lam": 0.05})
    w.quality.trials.value = 5
    seen = []
    worker = w.quality.auto()
    assert worker is not None and not w.run_button.enabled and not w.quality.best_button.enabled
    worker.yielded.connect(lambda t: seen.append(w.status.value))
    qtbot.waitUntil(lambda: "tv-fista · inpaint" in viewer.layers and not w.controller.running,
                    timeout=60000)
    assert seen and seen[0].startswith("auto: trial 1/5 lam=") and " dB" in seen[0]
    prov = viewer.layers["tv-fista · inpaint"].metadata["invrec"]["provenance"]
    chosen = prov["autotune"]["chosen"]["lam"]
    assert len(prov["autotune"]["trials"]) == 5
    assert w.method_form.values()["lam"] == pytest.approx(chosen, rel=1e-5)
    assert prov["params"]["lam"] == pytest.approx(chosen, rel=1e-5)
    assert prov["quality"]["estimator"] == "splitting"
    assert prov["quality"]["settings"] == {"folds": FOLDS, "probes": PROBES, "estimate_seed": 0}
    assert "auto chose lam=" in w.status.value
    assert w.run_button.enabled and w.quality.auto_button.enabled
    # Compare shows the stored estimate without computing anything
    cmp = CompareWidget(viewer)
    viewer.window.add_dock_widget(cmp)  # owned by the window: no draw after it is deleted
    headers = [cmp.table.horizontalHeaderItem(j).text() for j in range(cmp.table.columnCount())]
    cell = cmp.table.item(0, headers.index("est. (no GT)"))
    assert cell.text().endswith(" dB") and "held-out" in cell.toolTip()
    assert not cmp.rank.controller.running
    # a method with nothing to tune: Auto is off and says why
    w.method.value = "adjoint"
    assert not w.quality.auto_button.enabled
    assert "nothing" in w.quality.auto_button.tooltip or "no hyper" in \
        w.quality.auto_button.tooltip


def test_cancel_during_auto_adds_nothing(make_napari_viewer, qtbot, stop_jobs):
    viewer, *_ = _measurement_viewer(make_napari_viewer, 48, keep=0.6, seed=4)
    w = _reconstruct(viewer, stop_jobs)
    w.method.value = "tv-fista"
    w.method_form.set_values({"iters": 40})
    before = [layer.name for layer in viewer.layers]
    w.quality.auto()
    qtbot.waitUntil(lambda: w.status.value.startswith("auto: trial"), timeout=30000)
    w.cancel()
    qtbot.waitUntil(lambda: not w.controller.running, timeout=30000)
    qtbot.wait(200)  # nothing may start after the cancel
    assert not w.controller.running
    assert "auto cancelled" in w.status.value and "nothing was added" in w.status.value
    assert [layer.name for layer in viewer.layers] == before
    assert w.run_button.enabled and w.quality.auto_button.enabled


@pytest.fixture(scope="module")
def three_runs():
    from napari_invrec.core.data import shepp_logan
    from napari_invrec.core.params import make_params
    from napari_invrec.engine.runner import run as engine_run

    x = shepp_logan(48)
    op = api.make_operator("inpaint", x.shape, device="cpu", keep=0.6, seed=4)
    y = api.simulate(x, op, sigma=0.02, seed=5)
    noise = {"model": "gaussian", "sigma": 0.02, "photons": 100.0, "seed": 5}
    out = {}
    for name, method, kw in (("tv 1e-4", "tv-fista", {"lam": 1e-4, "iters": 40}),
                             ("adjoint", "adjoint", {}),
                             ("tv 1e-2", "tv-fista", {"lam": 1e-2, "iters": 40})):
        p = make_params(api.method_params(method), **kw)
        out[name] = drain(engine_run(y, op, method, p, noise=noise, reference=x,
                                     ground_truth="truth"))[1]
    return x, y, op, out


def test_rank_orders_runs_and_fills_the_estimate_column(make_napari_viewer, qtbot, three_runs,
                                                        stop_jobs):
    from napari_invrec._widgets.compare import CompareWidget

    x, y, op, results = three_runs
    viewer = make_napari_viewer()
    viewer.add_image(x, name="truth")
    data, kw, _ = measurement_layer(y, op, None, name="y", ground_truth="truth")
    viewer.add_image(data, **kw)
    for name, res in results.items():
        res.provenance.pop("quality", None)
        for d, k, _ in result_layers(res, name=name):
            viewer.add_image(d, **k)
    w = CompareWidget(viewer)
    stop_jobs(w.rank.controller)
    headers = [w.table.horizontalHeaderItem(j).text() for j in range(w.table.columnCount())]
    est_col = headers.index("est. (no GT)")
    assert headers[est_col - 1] == "SSIM"  # beside the reference metrics
    assert all(w.table.item(i, est_col).text() == "–" for i in range(3))
    worker = w.rank.rank()
    assert worker is not None and not w.rank.rank_button.enabled
    qtbot.waitUntil(lambda: not w.rank.controller.running, timeout=60000)
    names = [w.table.item(i, 0).text() for i in range(3)]
    assert names[-1] == "adjoint" and set(names) == set(results)
    assert names == w.rank.order
    texts = [w.table.item(i, est_col).text() for i in range(3)]
    assert all(t.endswith(" dB") or t.startswith("score") for t in texts)
    line = w.rank.line.value
    assert line.startswith("estimated order (splitting") and "sure" in line
    assert line.index(names[0]) < line.index("adjoint")
    for name in results:
        prov = viewer.layers[name].metadata["invrec"]["provenance"]
        assert prov["quality"]["estimator"] == "splitting"
    # the estimates are stored: a second Rank reuses them, and the order stays
    w.rank.rank()
    qtbot.waitUntil(lambda: not w.rank.controller.running, timeout=30000)
    assert sorted(w.rank.ranking.reused) == sorted(results)
    assert [w.table.item(i, 0).text() for i in range(3)] == names


def test_best_for_this_data_picks_and_runs_a_method(make_napari_viewer, qtbot, stop_jobs):
    viewer, *_ = _measurement_viewer(make_napari_viewer, 32, keep=0.5, seed=4)
    w = _reconstruct(viewer, stop_jobs)
    w.quality.trials.value = 3
    before = {layer.name for layer in viewer.layers}
    statuses = []
    worker = w.quality.best()
    assert worker is not None
    worker.yielded.connect(lambda t: statuses.append(w.status.value))
    qtbot.waitUntil(lambda: len({layer.name for layer in viewer.layers} - before) > 0
                    and not w.controller.running, timeout=90000)
    ranking = w.quality.outcome
    assert any(s.startswith("best: tuning ") for s in statuses)
    assert any(s.startswith("best: ") and "/" in s and not s.startswith("best: tuning")
               for s in statuses)
    assert w.method.value == ranking.best.method
    name = f"{ranking.best.method} · inpaint"
    prov = viewer.layers[name].metadata["invrec"]["provenance"]
    assert prov["method"] == ranking.best.method
    assert prov["ranking"]["order"][prov["ranking"]["chosen"]]["method"] == ranking.best.method
    assert prov["quality"]["estimator"] == ranking.best.estimate.estimator
    assert ranking.trials[-1].method != ranking.best.method
    assert "best for this data" in w.status.value and "sure" in w.status.value


def test_run_context_records_and_refusals(three_runs):
    """The engine glue without Qt: a run rebuilt from its layer metadata estimates like the
    API, records round-trip, and runs of two measurements are not ranked together."""
    from napari_invrec.engine.quality_runs import (
        estimate_from_dict,
        quality_record,
        rank_runs_steps,
        run_context,
        run_quality_steps,
        stored_estimate,
    )

    x, y, op, results = three_runs
    res = results["tv 1e-2"]
    data, kw, _ = result_layers(res, name="tv")[0]
    ctx = run_context(kw["metadata"], data)
    assert ctx.method == "tv-fista" and ctx.params.lam == pytest.approx(1e-2)
    assert ctx.noise["sigma"] == 0.02 and ctx.fingerprint == res.provenance["measurement"][
        "sha256"]
    est = drain(run_quality_steps(ctx))[1]
    ref = api.estimate_quality(res, folds=FOLDS, probes=PROBES)
    assert est.estimator == "splitting" and est.score == pytest.approx(ref.score, rel=1e-4)
    rec = quality_record(est)
    back = estimate_from_dict(rec)
    assert back.score == est.score and back.values == est.values
    assert stored_estimate({"quality": rec}, "splitting") is not None
    assert stored_estimate({"quality": rec}, "gsure") is None
    assert stored_estimate({"quality": {**rec, "settings": {"folds": FOLDS + 1}}},
                           "splitting") is None
    assert estimate_from_dict({"estimator": 3}) is None
    other = dict(kw["metadata"]["invrec"])
    other["provenance"] = {**other["provenance"], "measurement": {"sha256": "0" * 64}}
    with pytest.raises(Exception, match="different measurements"):
        drain(rank_runs_steps([ctx, run_context(other, data, name="other")]))
    res.provenance.pop("quality", None)
