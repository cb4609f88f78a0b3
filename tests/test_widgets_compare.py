"""GUI tests of the Compare dock widget (napari viewer under Xvfb)."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import drain

from napari_invrec import api
from napari_invrec.engine.compare import ERROR, NULL_SPACE, find_runs, metric_rows
from napari_invrec.engine.layers import measurement_layer, result_layers
from napari_invrec.engine.runner import run as engine_run

pytestmark = pytest.mark.gui


def _drain(gen):
    return drain(gen)[1]


@pytest.fixture(scope="module")
def runs():
    from napari_invrec.core.data.phantoms import shepp_logan
    from napari_invrec.core.params import make_params

    x = shepp_logan(64)
    op = api.make_operator("inpaint", x.shape, device="cpu", keep=0.6, seed=4)
    y = api.simulate(x, op, sigma=0.02, seed=5)
    out = {}
    for method, kw in (("adjoint", {}), ("tv-fista", {"lam": 0.01, "iters": 25})):
        p = make_params(api.method_params(method), **kw)
        # as the Reconstruct widget does: the ground-truth layer's name goes in the provenance
        out[method] = _drain(engine_run(y, op, method, p, reference=x, ground_truth="truth"))
    return x, y, op, out


def _viewer_with_runs(make_napari_viewer, runs):
    x, y, op, results = runs
    viewer = make_napari_viewer()
    viewer.add_image(x, name="truth")
    for data, kw, _ in [measurement_layer(y, op, None, name="y", ground_truth="truth")]:
        viewer.add_image(data, **kw)
    for method, res in results.items():
        # every layer of the run (result, iterate history...) as the Reconstruct widget adds
        for data, kw, _ in result_layers(res, name=f"{method} · inpaint"):
            viewer.add_image(data, **kw)
    return viewer


def _column(widget, header):
    headers = [widget.table.horizontalHeaderItem(j).text()
               for j in range(widget.table.columnCount())]
    return headers.index(header)


def test_table_rows_match_metric_rows(make_napari_viewer, runs):
    from napari_invrec._widgets.compare import CompareWidget

    viewer = _viewer_with_runs(make_napari_viewer, runs)
    w = CompareWidget(viewer)
    w.refresh()
    # the reference defaults to the ground truth recorded in the provenance
    assert w._reference.value == "truth"
    assert w.table.rowCount() == 2
    expected = metric_rows(find_runs(viewer.layers), runs[0])
    col = _column(w, "PSNR")
    for i, row in enumerate(expected):
        assert w.table.item(i, 0).text() == row["name"]
        assert float(w.table.item(i, col).text()) == pytest.approx(row["psnr"], abs=0.006)
        assert row["residual"] is not None
    psnrs = [float(w.table.item(i, col).text()) for i in range(2)]
    assert psnrs[1] > psnrs[0]  # tv-fista beats the adjoint (zero-filled) image
    # without a reference the PSNR cells are empty, the residual stays
    w._reference.value = None
    assert w.table.item(0, col).text() == "–"
    assert w.table.item(0, _column(w, "residual")).text() != "–"
    # removing a run layer refreshes the table by itself
    viewer.layers.remove("adjoint · inpaint")
    assert w.table.rowCount() == 1


def test_grid_toggle_shows_reference_and_runs_and_restores(make_napari_viewer, runs):
    from napari_invrec._widgets.compare import CompareWidget

    viewer = _viewer_with_runs(make_napari_viewer, runs)
    w = CompareWidget(viewer)
    viewer.layers["y"].visible = False
    before = {layer.name: layer.visible for layer in viewer.layers}
    w.table.selectRow(1)  # tv-fista only
    w._grid_btn.value = True
    assert viewer.canvas.grid.enabled
    shown = {layer.name for layer in viewer.layers if layer.visible}
    assert shown == {"truth", "tv-fista · inpaint"}
    # contrast limits are linked: changing the reference's moves the run's
    viewer.layers["truth"].contrast_limits = (0.1, 0.7)
    assert tuple(viewer.layers["tv-fista · inpaint"].contrast_limits) == pytest.approx((0.1, 0.7))
    w._grid_btn.value = False
    assert not viewer.canvas.grid.enabled
    assert {layer.name: layer.visible for layer in viewer.layers} == before
    viewer.layers["truth"].contrast_limits = (0.0, 1.0)
    assert tuple(viewer.layers["tv-fista · inpaint"].contrast_limits) == pytest.approx((0.1, 0.7))


def test_convergence_plot_has_one_line_per_run(make_napari_viewer, runs):
    from napari_invrec._widgets.compare import CompareWidget

    viewer = _viewer_with_runs(make_napari_viewer, runs)
    w = CompareWidget(viewer)
    ax = w.residual_axes
    assert [line.get_label() for line in ax.lines] == ["adjoint · inpaint", "tv-fista · inpaint"]
    assert ax.get_yscale() == "log"
    tv_res = runs[3]["tv-fista"].metric_history["residual"]
    np.testing.assert_allclose(ax.lines[1].get_ydata(), tv_res)
    assert len(ax.lines[1].get_xdata()) == 25
    # the runs were given a reference, so a PSNR panel is drawn too
    assert len(w.plot.figure.axes) == 2 and len(w.plot.figure.axes[1].lines) == 2


@pytest.mark.parametrize("kind", [NULL_SPACE, ERROR])
def test_hallucination_compute_adds_layer(make_napari_viewer, runs, qtbot, kind):
    from napari_invrec._widgets.compare import CompareWidget

    viewer = _viewer_with_runs(make_napari_viewer, runs)
    w = CompareWidget(viewer)
    w._map_kind.value = kind
    w._map_run.value = "tv-fista · inpaint"
    worker = w.compute_map()
    assert worker is not None
    name = f"tv-fista · inpaint [{kind}]"
    qtbot.waitUntil(lambda: name in viewer.layers, timeout=20_000)
    layer = viewer.layers[name]
    assert layer.data.shape == (64, 64)
    assert layer.metadata["invrec"]["kind"] == "hallucination"
    assert layer.metadata["invrec"]["map"] == kind
    lo, hi = layer.contrast_limits
    if kind == NULL_SPACE:
        assert lo == pytest.approx(-hi) and hi > 0
    else:
        np.testing.assert_allclose(layer.data, np.abs(runs[3]["tv-fista"].x - runs[0]),
                                   atol=1e-6)
    n = len(viewer.layers)
    # computing again updates the same layer instead of adding a copy
    w.compute_map()
    qtbot.waitUntil(lambda: w._worker.is_running is False, timeout=20_000)
    qtbot.wait(50)
    assert len(viewer.layers) == n


def test_missing_reference_is_a_notification_not_a_worker(make_napari_viewer, runs,
                                                          monkeypatch):
    from napari_invrec._widgets import compare as mod

    shown = []
    monkeypatch.setattr(mod, "_show_error", shown.append)
    viewer = _viewer_with_runs(make_napari_viewer, runs)
    w = mod.CompareWidget(viewer)
    w._reference.value = None
    w._map_kind.value = NULL_SPACE
    w._map_run.value = "adjoint · inpaint"
    n = len(viewer.layers)
    assert w.compute_map() is None
    assert len(shown) == 1 and "reference" in shown[0]
    assert len(viewer.layers) == n


def test_widget_docks_from_the_manifest(make_napari_viewer):
    viewer = make_napari_viewer()
    _, w = viewer.window.add_plugin_dock_widget("napari-invrec", "Compare runs")
    assert w.table.rowCount() == 0
    assert len(w.residual_axes.lines) == 0


def test_a_run_made_in_reconstruct_appears_in_compare(make_napari_viewer, qtbot):
    """The run's result layer is its live layer adopted at the end (renamed, not inserted):
    Compare must list it once the run is shown, for a run with history and for one without."""
    from helpers import reconstruct_dock

    from napari_invrec._widgets.compare import CompareWidget
    from napari_invrec.core.data.phantoms import shepp_logan

    viewer, rec = reconstruct_dock(make_napari_viewer(), shepp_logan(48), "inpaint", keep=0.6)
    cmp = CompareWidget(viewer)
    assert cmp.runs == []
    for method, values in (("tv-fista", {"lam": 0.01, "iters": 20}), ("adjoint", {})):
        rec.method.value = method
        rec.method_form.set_values(values)
        rec.run()
        qtbot.waitUntil(lambda: not rec.controller.running, timeout=30000)
    names = [r.name for r in cmp.runs]
    assert sorted(names) == ["adjoint · inpaint", "tv-fista · inpaint"]
    assert cmp.table.rowCount() == 2
