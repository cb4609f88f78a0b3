"""Calibration sources that follow the user's data: reference images, parametric bootstrap."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import napari_invrec.core.methods.tv  # noqa: F401 - registers langevin-tv
from napari_invrec import api
from napari_invrec.core.analysis.calibration import coverage_stderr, image_coverages
from napari_invrec.core.data import shepp_logan
from napari_invrec.core.errors import InputError
from napari_invrec.core.params import make_params
from napari_invrec.core.training.datasets import SyntheticPatches
from napari_invrec.engine.calibration import _image_truths, calibrate_run, heldout_coverage

pytestmark = pytest.mark.usefixtures("one_thread")  # two threads fight over the 2 cores

N = 32
NOISE = {"model": "gaussian", "sigma": 0.05}


def _run():
    op = api.make_operator("blur", (N, N), device="cpu", sigma=1.5)
    p = make_params(api.method_params("langevin-tv"), lam=0.02, sigma=0.05, iters=60,
                    burn_in=20, n_samples=4)
    return op, p


def _phantoms(n: int, size: int = N, seed: int = 123) -> np.ndarray:
    return SyntheticPatches("phantoms").sample(n, size, np.random.default_rng(seed))[:, 0].numpy()


def _result(scale: float = 1.0):
    """A langevin-tv run on a blurred Shepp-Logan phantom, in units ``scale`` x [0, 1]."""
    op, _ = _run()
    y = api.simulate(shepp_logan(N) * scale, op, sigma=0.05 * scale, seed=0)
    res = api.reconstruct(y, op, "langevin-tv", lam=0.02, sigma=0.05, iters=60, burn_in=20,
                          n_samples=4)
    res.provenance["noise"] = {"model": "gaussian", "sigma": 0.05 * scale}
    return res


# ----------------------------------------------------------------------------- core
def test_coverage_stderr_is_over_images_and_groups():
    x = torch.zeros(4, 1, 2, 2)
    std = torch.ones(4, 1, 2, 2)
    mean = torch.zeros(4, 1, 2, 2)
    mean[0, 0, 0, 0] = mean[1, 0, :, 0] = 3.0  # image 0: 3/4 covered, image 1: 2/4
    c = image_coverages(x, mean, std, 1.0)
    assert c.tolist() == [0.75, 0.5, 1.0, 1.0]
    assert image_coverages(x, mean, std, 1.0, mode="max").tolist() == [0.0, 0.0, 1.0, 1.0]
    assert coverage_stderr(c) == pytest.approx(np.std(c.numpy(), ddof=1) / 2)
    # pairs 0, 1 reuse one truth and 2, 3 another: two groups of means 0.625 and 1.0
    assert coverage_stderr(c, [7, 7, 9, 9]) == pytest.approx(np.std([0.625, 1.0], ddof=1)
                                                             / math.sqrt(2))
    assert math.isnan(coverage_stderr(c, [1, 1, 1, 1]))


# ----------------------------------------------------------------------------- images
def test_reference_images_give_the_stated_coverage_on_held_out_images():
    op, p = _run()
    imgs = _phantoms(32)  # 16 calibrate, 16 held out
    for seed in (0, 1):
        rep = calibrate_run((op, "langevin-tv", p), "images", n_pairs=32, seed=seed, batch=32,
                            images=imgs, noise=NOISE)
        assert rep.source == "images" and rep.n_cal == rep.n_test == 16
        assert "32 reference images you supplied" in rep.trust and "exchangeable" in rep.trust
        assert 0 < rep.measured_se < 0.05
        # tolerance from the spread of the 16 held-out images' coverages
        assert abs(rep.measured - rep.stated) <= 4 * rep.measured_se, rep.summary()
        assert "Source 'images'" in rep.summary() and rep.as_dict()["trust"] == rep.trust


def test_few_images_are_reused_but_never_on_both_sides():
    op, _ = _run()
    imgs = _phantoms(6)
    x, idx, n_cal, trust = _image_truths(imgs, op, 32, seed=0)
    assert x.shape == (32, 1, N, N) and n_cal == 16
    assert not set(idx[:n_cal]) & set(idx[n_cal:])
    assert set(idx) == set(range(6)) and "reused" in trust
    for i, k in enumerate(idx):
        assert torch.equal(x[i, 0], torch.from_numpy(imgs[k]))
    # more images than pairs: a seeded subset, one pair each
    _, idx, _, trust = _image_truths(_phantoms(40), op, 8, seed=0)
    assert len(set(idx)) == 8 and "8 of the 40 reference images" in trust


def test_larger_and_lazy_images_are_centre_cropped_not_rescaled():
    da = pytest.importorskip("dask.array")
    op, _ = _run()
    big = _phantoms(4, 40) * 7.0  # in "the run's units": kept as they are
    x, idx, _, _ = _image_truths(da.from_array(big, chunks=(1, 40, 40)), op, 4, seed=0)
    for i, k in enumerate(idx):
        assert torch.equal(x[i, 0], torch.from_numpy(big[k, 4:36, 4:36]))


@pytest.mark.parametrize("images,match", [
    (np.zeros((8, 16, 16), np.float32), "smaller than the run's 32x32"),
    (np.where(np.arange(8)[:, None, None] == 3, np.nan, 0.0) * np.ones((8, N, N)),
     r"NaN/inf values \(image\(s\) \[3\]"),
    (np.zeros((N, N, 3), np.uint8), "RGB"),
    (np.zeros((5, N, N, 4), np.float32), "RGB"),
    (np.zeros((N, N), np.float32), "needs at least 4"),
    (np.zeros((8, N, N), np.uint16), "convert them to float"),
    (np.zeros((2, 8, N, N), np.float32), r"\(N, H, W\) stack"),
    (None, "needs reference images"),
])
def test_bad_reference_images_are_one_line_errors(images, match):
    op, p = _run()
    with pytest.raises(InputError, match=match) as err:
        calibrate_run((op, "langevin-tv", p), "images", n_pairs=8, images=images, noise=NOISE)
    assert "\n" not in str(err.value)


def test_sources_and_their_arguments_must_agree():
    op, p = _run()
    run = (op, "langevin-tv", p)
    with pytest.raises(InputError, match="only used with source 'images'"):
        calibrate_run(run, "phantoms", images=_phantoms(4), noise=NOISE)
    with pytest.raises(InputError, match="only used with source 'bootstrap'"):
        calibrate_run(run, mean=np.zeros((N, N), np.float32), noise=NOISE)
    with pytest.raises(InputError, match="disagree"):
        calibrate_run(run, "phantoms", generator="atoms", noise=NOISE)
    # the former keyword still picks a generator
    rep = calibrate_run(run, generator="atoms", n_pairs=8, batch=8, noise=NOISE)
    assert rep.source == "atoms" and "synthetic atoms generator" in rep.trust


# ----------------------------------------------------------------------------- bootstrap
def test_bootstrap_calibrates_around_the_runs_own_mean():
    res = _result()
    rep = calibrate_run(res, "bootstrap", n_pairs=16, batch=16)
    assert rep.source == "bootstrap" and "own mean" in rep.trust and "not covered" in rep.trust
    assert math.isfinite(rep.q) and rep.q > 0
    # exchangeable given the mean: the guarantee holds for it, within its error
    assert abs(rep.measured - rep.stated) <= 4 * rep.measured_se + 0.01, rep.summary()
    # the same run given as a layer (data + metadata) or as provenance + mean
    from napari_invrec.engine.layers import result_layers

    data, kw, _ = result_layers(res, name="r")[0]
    layer = SimpleNamespace(data=data, metadata=kw["metadata"], name="r")
    assert calibrate_run(layer, "bootstrap", n_pairs=16, batch=16).q == pytest.approx(rep.q)
    assert calibrate_run(res.provenance, "bootstrap", n_pairs=16, batch=16,
                         mean=res.x).q == pytest.approx(rep.q)
    with pytest.raises(InputError, match="needs the run's mean"):
        calibrate_run(res.provenance, "bootstrap", n_pairs=8)
    with pytest.raises(InputError, match="16x16 but its operator's image is 32x32"):
        calibrate_run(res.provenance, "bootstrap", n_pairs=8, mean=np.zeros((16, 16)))


def test_bootstrap_and_images_run_in_the_runs_units():
    # the run's normalisation is replayed, so physical units change nothing
    a, b = _result(1.0), _result(100.0)
    assert b.provenance["normalise"]["applied"]
    qa = calibrate_run(a, "bootstrap", n_pairs=8, batch=8).q
    assert calibrate_run(b, "bootstrap", n_pairs=8, batch=8).q == pytest.approx(qa, rel=1e-3)
    imgs = _phantoms(8)
    ra = calibrate_run(a, "images", n_pairs=8, batch=8, images=imgs)
    rb = calibrate_run(b, "images", n_pairs=8, batch=8, images=100.0 * imgs)
    assert rb.q == pytest.approx(ra.q, rel=1e-3)
    assert heldout_coverage(b, rb, 100.0 * _phantoms(4, seed=9)) == pytest.approx(
        heldout_coverage(a, ra, _phantoms(4, seed=9)), abs=1e-3)


# ----------------------------------------------------------------------------- widget
@pytest.mark.gui
def test_widget_calibrates_on_a_reference_layer(make_napari_viewer, wait_idle, notes):
    from helpers import drain

    from napari_invrec._widgets.trust import TrustWidget
    from napari_invrec.core.operators.noise import NoiseParams
    from napari_invrec.core.params import to_dict
    from napari_invrec.engine.layers import result_layers
    from napari_invrec.engine.runner import run as engine_run

    op, _ = _run()
    noise = make_params(NoiseParams, sigma=0.05, seed=0)
    y = api.simulate(shepp_logan(N), op, sigma=0.05, seed=0)
    p = make_params(api.method_params("langevin-tv"), lam=0.02, sigma=0.05, iters=40,
                    burn_in=15, n_samples=4)
    res = drain(engine_run(y, op, "langevin-tv", p, noise=to_dict(noise)))[1]
    viewer = make_napari_viewer()
    for data, kw, _ in result_layers(res, name="langevin"):
        viewer.add_image(data, **kw)
    viewer.add_image(_phantoms(12, 40), name="refs")  # larger: centre-cropped by the engine
    w = TrustWidget(viewer)
    w.run.value = "langevin"
    assert w.cal_images_box.native.isHidden()
    w.cal_form.set_values({"source": "images", "n_pairs": 12, "batch": 12})
    assert not w.cal_images_box.native.isHidden() and "refs" in w.cal_images.choices
    assert w.calibrate() is None  # no layer chosen yet
    assert any("choose the reference images layer" in m for m in notes())
    w.cal_images.value = "refs"
    assert w.calibrate() is not None
    wait_idle(w, 60000)
    rep = w.report
    assert rep is not None and rep.source == "images" and rep.q > 0
    assert "12 reference images you supplied" in w.status.value
    band = viewer.layers["langevin [upper 90%]"].metadata["invrec"]["calibration"]
    assert band["source"] == "images" and band["trust"] == rep.trust
    # bootstrap: the run's own result is the truth
    w.cal_form.set_values({"source": "bootstrap", "n_pairs": 8, "batch": 8})
    assert w.cal_images_box.native.isHidden()
    assert w.calibrate() is not None
    wait_idle(w, 60000)
    assert w.report.source == "bootstrap" and "own mean" in w.status.value
