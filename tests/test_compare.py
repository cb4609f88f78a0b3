"""Engine-side comparison of runs (no Qt): run discovery, metric rows, hallucination maps."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_invrec import api
from napari_invrec.core.analysis.metrics import nrmse, psnr, ssim
from napari_invrec.core.errors import InputError
from napari_invrec.engine.compare import (
    ERROR,
    MAP_KINDS,
    MEASUREMENT_SPACE,
    NULL_DIFFERENCE,
    NULL_SPACE,
    find_runs,
    hallucination_map,
    map_layer,
    metric_rows,
)
from napari_invrec.engine.layers import measurement_layer, result_layers


def _phantom(n: int = 64) -> np.ndarray:
    from napari_invrec.core.data.phantoms import shepp_logan

    return shepp_logan(n)


@pytest.fixture(scope="module")
def blur_case():
    x = _phantom()
    op = api.make_operator("blur", x.shape, device="cpu", sigma=1.5)
    y = api.simulate(x, op, sigma=0.02, seed=3)
    runs = {
        "adjoint": api.reconstruct(y, op, "adjoint", reference=x),
        "tv-fista": api.reconstruct(y, op, "tv-fista", reference=x, lam=0.005, iters=40),
    }
    layers = [(x, {"name": "truth"}, "image"),
              measurement_layer(y, op, None, name="y", ground_truth="truth")]
    for m, res in runs.items():
        layers += result_layers(res, name=f"{m} · blur")
    return x, y, op, runs, layers


def test_find_runs_finds_results_only(blur_case):
    x, y, _, runs, layers = blur_case
    found = find_runs(layers)
    assert [r.name for r in found] == ["adjoint · blur", "tv-fista · blur"]
    assert [r.method for r in found] == ["adjoint", "tv-fista"]
    assert all(r.operator == "blur" for r in found)
    tv = found[1]
    assert tv.params["iters"] == 40 and tv.params["lam"] == pytest.approx(0.005)
    assert tv.time_s == pytest.approx(runs["tv-fista"].provenance["timings"]["total_s"])
    # the measurement is found by the fingerprint in the provenance
    assert tv.measurement_layer == "y"
    np.testing.assert_array_equal(tv.measurement, y)
    # the per-step history travels on the result layer
    assert len(tv.metric_history["residual"]) == 40
    assert tv.metric_history["residual"] == pytest.approx(
        runs["tv-fista"].metric_history["residual"])
    assert "lam=0.005" in tv.params_text()


def test_metric_rows_match_core_metrics(blur_case):
    x, _, _, runs, layers = blur_case
    rows = metric_rows(find_runs(layers), x)
    assert len(rows) == 2
    for row, res in zip(rows, runs.values()):
        xt, rt = torch.from_numpy(res.x)[None, None], torch.from_numpy(x)[None, None]
        assert row["psnr"] == pytest.approx(psnr(xt, rt), abs=1e-6)
        assert row["ssim"] == pytest.approx(ssim(xt, rt), abs=1e-6)
        assert row["nrmse"] == pytest.approx(nrmse(xt, rt), abs=1e-6)
        assert row["residual"] == pytest.approx(res.metrics["residual"], abs=1e-4)
        assert row["note"] == ""
    adj, tv = rows
    assert tv["psnr"] > adj["psnr"] + 1.0
    assert tv["ssim"] > adj["ssim"]


def test_metric_rows_without_reference_or_measurement(blur_case):
    _, _, _, _, layers = blur_case
    no_y = [t for t in layers if t[1]["name"] != "y"]
    rows = metric_rows(find_runs(no_y), None)
    assert all(r["psnr"] is None and r["residual"] is None for r in rows)
    assert all("measurement" in r["note"] for r in rows)
    # an explicit measurement stands in for the missing layer
    y = blur_case[1]
    rows = metric_rows(find_runs(no_y), np.zeros((32, 32), np.float32), measurement=y)
    assert all(r["residual"] is not None for r in rows)
    assert all(r["psnr"] is None and "reference shape" in r["note"] for r in rows)


@pytest.fixture(scope="module")
def inpaint_case():
    x = _phantom()
    op = api.make_operator("inpaint", x.shape, device="cpu", keep=0.5, seed=1)
    y = api.simulate(x, op, sigma=0.01, seed=2)
    res = api.reconstruct(y, op, "tv-fista", reference=x, lam=0.01, iters=30)
    layers = [(x, {"name": "truth"}, "image"), measurement_layer(y, op, None, name="y")]
    layers += result_layers(res, name="tv-fista · inpaint")
    return x, y, op, res, layers


def test_null_space_map_zero_on_measured_pixels(inpaint_case):
    x, y, op, res, layers = inpaint_case
    run = find_runs(layers)[0]
    m = hallucination_map(NULL_SPACE, run.meta, run.result, reference=x)
    mask = op.A(torch.ones(1, 1, *x.shape)).squeeze().numpy() != 0
    assert 0.3 < mask.mean() < 0.7
    assert np.abs(m[mask]).max() < 1e-5
    # off the mask it is exactly the error, which is not zero
    np.testing.assert_allclose(m[~mask], (res.x - x)[~mask], atol=1e-5)
    assert np.abs(m[~mask]).max() > 1e-2


def test_measurement_space_and_error_maps(inpaint_case):
    x, y, op, res, layers = inpaint_case
    run = find_runs(layers)[0]
    ms = hallucination_map(MEASUREMENT_SPACE, run.meta, run.result, measurement=run.measurement)
    mask = op.A(torch.ones(1, 1, *x.shape)).squeeze().numpy() != 0
    # for inpainting P x - A^+ y is (x - y) on the measured pixels and 0 elsewhere
    np.testing.assert_allclose(ms[mask], (res.x - y)[mask], atol=1e-5)
    assert np.abs(ms[~mask]).max() < 1e-5
    err = hallucination_map(ERROR, run.meta, run.result, reference=x)
    np.testing.assert_allclose(err, np.abs(res.x - x), atol=1e-6)


def test_null_space_difference_between_results(inpaint_case):
    x, y, op, res, layers = inpaint_case
    run = find_runs(layers)[0]
    other = api.reconstruct(y, op, "adjoint").x
    d = hallucination_map(NULL_DIFFERENCE, run.meta, run.result, reference=other)
    mask = op.A(torch.ones(1, 1, *x.shape)).squeeze().numpy() != 0
    assert np.abs(d[mask]).max() < 1e-5
    np.testing.assert_allclose(d[~mask], (res.x - other)[~mask], atol=1e-5)


@pytest.mark.parametrize("kind", [NULL_SPACE, ERROR, NULL_DIFFERENCE])
def test_map_without_reference_says_so(inpaint_case, kind):
    run = find_runs(inpaint_case[4])[0]
    with pytest.raises(InputError, match="reference"):
        hallucination_map(kind, run.meta, run.result, reference=None)


def test_map_input_errors(inpaint_case):
    x, _, _, _, layers = inpaint_case
    run = find_runs(layers)[0]
    with pytest.raises(InputError, match="measurement"):
        hallucination_map(MEASUREMENT_SPACE, run.meta, run.result, measurement=None)
    with pytest.raises(InputError, match="shape"):
        hallucination_map(NULL_SPACE, run.meta, run.result, reference=x[:32, :32])
    with pytest.raises(InputError, match="unknown map kind"):
        hallucination_map("sparkle", run.meta, run.result, reference=x)
    with pytest.raises(InputError, match="operator"):
        hallucination_map(NULL_SPACE, {}, run.result, reference=x)


def test_map_layer_is_symmetric_and_described():
    data = np.array([[-0.5, 0.2], [0.1, 0.0]], np.float32)
    arr, kw, ltype = map_layer(NULL_SPACE, "tv · blur", data, reference_name="truth")
    assert ltype == "image" and kw["name"] == f"tv · blur [{NULL_SPACE}]"
    assert kw["contrast_limits"] == (-0.5, 0.5)
    meta = kw["metadata"]["invrec"]
    assert meta["kind"] == "hallucination" and meta["map"] == NULL_SPACE
    assert meta["run"] == "tv · blur" and meta["reference"] == "truth"
    _, kw_err, _ = map_layer(ERROR, "r", np.abs(data))
    assert kw_err["contrast_limits"] == (0.0, 0.5) and kw_err["colormap"] != kw["colormap"]
    assert set(MAP_KINDS) == {NULL_SPACE, MEASUREMENT_SPACE, NULL_DIFFERENCE, ERROR}
