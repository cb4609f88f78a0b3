"""GUI tests of the operator catalogue: measurements whose shape differs from the image (CT
sinograms, coded diffraction stacks, multi-coil k-space), real data with derived parameters
(estimated coil maps, image size from a sinogram) and extra outputs (a blind kernel)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_invrec import api
from napari_invrec.core.models import read_manifest

pytestmark = pytest.mark.gui


@pytest.fixture(scope="module")
def truth():
    from napari_invrec.core.data import shepp_logan

    return shepp_logan(48)


def _simulate(make_napari_viewer, truth, operator, noise_sigma=0.01, **params):
    """Viewer with the truth, measured through the Simulate widget as a user would."""
    from napari_invrec._widgets.reconstruct import ReconstructWidget
    from napari_invrec._widgets.simulate import SimulateWidget

    viewer = make_napari_viewer()
    viewer.add_image(truth.copy(), name="truth")
    sim = SimulateWidget(viewer)
    sim.image.value = viewer.layers["truth"]
    sim.op_panel.operator.value = operator
    sim.op_panel.form.set_values(params)
    sim.noise_form.set_values({"sigma": noise_sigma})
    added = sim.simulate()
    assert added, "simulate added no layer"
    return viewer, added, ReconstructWidget(viewer)


def _run(w, wait_idle, method, **values):
    w.method.value = method
    w.method_form.set_values(values)
    assert w.run() is not None, w.status.value
    wait_idle(w, timeout=60000)


def test_ct_sinogram_and_fbp(make_napari_viewer, truth, wait_idle):
    viewer, added, w = _simulate(make_napari_viewer, truth, "ct", n_angles=60)
    sino = added[0]
    assert sino.data.shape[0] == 60 and sino.data.shape[1] > truth.shape[1]
    assert "fbp" in w.method.choices and "bicubic" not in w.method.choices
    assert not w.stack_mode.visible  # a sinogram is one measurement, not a stack
    _run(w, wait_idle, "fbp")
    res = viewer.layers["fbp · ct"]
    assert res.data.shape == truth.shape
    err_fbp = np.mean((res.data - truth) ** 2)
    assert err_fbp < 0.5 * np.mean(truth ** 2)


def test_coded_phase_is_not_a_stack(make_napari_viewer, truth, wait_idle):
    viewer, added, w = _simulate(make_napari_viewer, truth[:32, :32].copy(), "phase",
                                 mode="coded", n_patterns=6)
    assert added[0].data.shape == (6, 32, 32)
    assert not w.stack_mode.visible
    assert set(w.method.choices) == {"gerchberg-saxton", "hio", "wirtinger-flow", "csgm",
                                     "dps", "unrolled-phase"}
    _run(w, wait_idle, "wirtinger-flow", iters=200)
    res = viewer.layers["wirtinger-flow · phase"]
    assert res.data.shape == (32, 32)
    prov = res.metadata["invrec"]["provenance"]
    assert prov["metrics"]["psnr"] > 25  # magnitude PSNR: invariant to the global phase


def test_one_coded_pattern_with_a_diffusion_prior(make_napari_viewer, truth, wait_idle):
    """One pattern: HIO cannot place the image, dps (the phantoms score model) can; the dock
    shows the posterior mean and its std like any sampler's."""
    viewer, added, w = _simulate(make_napari_viewer, truth[:32, :32].copy(), "phase",
                                 mode="coded", n_patterns=1)
    assert added[0].data.shape == (1, 32, 32)
    _run(w, wait_idle, "hio")
    _run(w, wait_idle, "dps", denoiser="drunet-phantoms")
    psnr = {m: viewer.layers[f"{m} · phase"].metadata["invrec"]["provenance"]["metrics"]["psnr"]
            for m in ("hio", "dps")}
    assert psnr["dps"] > psnr["hio"] + 6, psnr
    assert any("std" in layer.name and "dps" in layer.name for layer in viewer.layers)


def test_multicoil_views_and_real_data_with_estimated_maps(make_napari_viewer, truth,
                                                           wait_idle):
    from napari_invrec._widgets.reconstruct import ReconstructWidget

    viewer, added, _ = _simulate(make_napari_viewer, truth, "mri-multicoil", n_coils=4)
    names = [layer.name for layer in viewer.layers]
    assert any(n.endswith("[coil images]") for n in names) and any(n.endswith("[rss]")
                                                                    for n in names)
    kspace = added[0].metadata["invrec"]["complex_data"]
    assert kspace.shape == (4, *truth.shape)
    # the same k-space as plain data (no operator stored): coil maps estimated from its centre
    viewer.add_image(np.abs(kspace), name="raw k-space", metadata={"invrec": {
        "kind": "", "complex_data": kspace}})
    w = ReconstructWidget(viewer)
    w.measurement.value = viewer.layers["raw k-space"]
    w.op_panel.operator.value = "mri-multicoil"
    w.op_panel.form.set_values({"coil_maps": "estimated"})
    w.reference.value = viewer.layers["truth"]
    assert not w.stack_mode.visible
    _run(w, wait_idle, "rss")
    _run(w, wait_idle, "sense-cg", iters=20)
    res = viewer.layers["sense-cg · mri-multicoil"]
    prov = res.metadata["invrec"]["provenance"]
    assert prov["operator"]["params"]["coil_maps_array"]["array_shape"] == [4, 48, 48]
    rss = viewer.layers["rss · mri-multicoil"].metadata["invrec"]["provenance"]
    assert prov["metrics"]["psnr"] > rss["metrics"]["psnr"] + 0.5


def test_real_sinogram_infers_the_image_size(make_napari_viewer, truth, wait_idle):
    from napari_invrec._widgets.reconstruct import ReconstructWidget

    viewer = make_napari_viewer()
    op = api.make_operator("ct", truth.shape, n_angles=45)
    viewer.add_image(api.simulate(truth, op, sigma=0.01), name="sinogram")
    w = ReconstructWidget(viewer)
    w.op_panel.operator.value = "ct"
    w.op_panel.form.set_values({"n_angles": 45})
    _run(w, wait_idle, "fbp")
    assert viewer.layers["fbp · ct"].data.shape == truth.shape
    w.op_panel.form.set_values({"n_angles": 30})  # does not match the sinogram's 45 rows
    assert w.run() is None and "n_angles" in w.status.value


def test_blind_deconvolution_adds_the_kernel_layer(make_napari_viewer, truth, wait_idle):
    viewer, _, w = _simulate(make_napari_viewer, truth, "blind-blur", sigma=2.0)
    _run(w, wait_idle, "blind-deconv", iters=5)
    kernel = viewer.layers["blind-deconv · blind-blur [kernel]"]
    assert kernel.data.ndim == 2 and kernel.data.shape[0] < truth.shape[0]
    np.testing.assert_allclose(kernel.data.sum(), 1.0, atol=1e-4)


@pytest.mark.skipif("learned-admm-lensless" not in read_manifest(),
                    reason="the shipped learned-admm-lensless weights are not installed")
def test_lensless_camera_shows_its_psf_and_runs_learned_admm(make_napari_viewer, wait_idle):
    from napari_invrec.core.data.heldout import heldout_image

    # a microscopy image: most of Shepp-Logan's edges lie where the sensor loses the caustic
    cell = heldout_image("cell", 64)
    viewer, added, w = _simulate(make_napari_viewer, cell, "lensless")
    assert added[0].data.shape == cell.shape
    psf = viewer.layers[f"{added[0].name} [psf]"]
    assert not psf.visible and abs(float(psf.data.sum()) - 1) < 1e-4
    assert {"learned-admm", "tv-admm", "unrolled-pgd"} <= set(w.method.choices)
    _run(w, wait_idle, "adjoint")
    _run(w, wait_idle, "learned-admm")
    psnr = {m: viewer.layers[f"{m} · lensless"].metadata["invrec"]["provenance"]["metrics"]
            ["psnr"] for m in ("adjoint", "learned-admm")}
    assert psnr["learned-admm"] > psnr["adjoint"] + 3, psnr  # measured 19.0 -> 23.6 dB


def test_noise2self_denoises_in_the_dock(make_napari_viewer, wait_idle):
    from napari_invrec.core.data.heldout import fresh_draw

    clean = fresh_draw("atoms", 64, 0)
    viewer, added, w = _simulate(make_napari_viewer, clean, "denoise", noise_sigma=0.1)
    w.method.value = "noise2self"
    assert "n2s-atoms" in w.method_form.widget("weights").choices
    _run(w, wait_idle, "noise2self")
    res = viewer.layers["noise2self · denoise"]
    prov = res.metadata["invrec"]["provenance"]
    assert prov["params"]["weights"] == "n2s-atoms" and not prov["normalise"]["applied"]
    noisy = 10 * np.log10(1 / np.mean((added[0].data - clean) ** 2))
    assert prov["metrics"]["psnr"] > noisy + 6  # 20 dB noisy, about 31 dB denoised


def test_lensless_with_a_measured_psf_from_a_layer(make_napari_viewer, truth):
    """A measured PSF comes from an Image layer ('kernel from layer'), as for a custom blur;
    the layer is read, never modified."""
    from napari_invrec._widgets.simulate import SimulateWidget

    viewer = make_napari_viewer()
    viewer.add_image(truth.copy(), name="truth")
    psf = np.zeros((9, 9), np.float32)
    psf[4, 4], psf[0, 8] = 3.0, 1.0
    viewer.add_image(psf.copy(), name="measured psf")
    sim = SimulateWidget(viewer)
    sim.image.value = viewer.layers["truth"]
    sim.op_panel.operator.value = "lensless"
    sim.op_panel.form.set_values({"psf": "custom"})
    assert not sim.op_panel.kernel_layer.native.isHidden()
    assert sim.op_panel.mask_layer.native.isHidden()
    sim.op_panel.kernel_layer.value = viewer.layers["measured psf"]
    sim.noise_form.set_values({"sigma": 0.0, "model": "none"})
    y = sim.simulate()[0].data
    # two copies of the scene: 3/4 of the light at the centre, 1/4 shifted by (-4, +4)
    want = 0.75 * truth[8:40, 8:40] + 0.25 * truth[12:44, 4:36]
    np.testing.assert_allclose(y[8:40, 8:40], want, atol=1e-5)
    np.testing.assert_array_equal(viewer.layers["measured psf"].data, psf)
