"""GUI: a 3-D layer deconvolved as one volume with a 3-D PSF layer (Reconstruct dock), and a
volume simulated from a 3-D ground truth (Simulate dock)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.gui

SHAPE = (24, 48, 48)


def _psnr(a, ref):
    return float(10 * np.log10(float(np.ptp(ref)) ** 2 / np.mean((a - ref) ** 2)))


@pytest.fixture(scope="module")
def zstack():
    """A blurred, noisy z-stack, its truth and the 3-D PSF it was blurred with."""
    from napari_invrec.core.data import cells_volume
    from napari_invrec.core.operators import NoiseParams, make_operator

    x = cells_volume(SHAPE, seed=5, margin=6)
    op = make_operator("blur", SHAPE, sigma=1.2, sigma_z=2.5)
    psf = op.kernel_image()
    y = op.measure(torch.from_numpy(x)[None, None], NoiseParams(sigma=0.01),
                   generator=torch.Generator().manual_seed(0))[0, 0].numpy()
    return x, y, psf


def test_volume_deconvolution_with_a_3d_psf_layer(make_napari_viewer, zstack, wait_idle):
    from napari_invrec._widgets._stack_runs import PLANE, VOLUME
    from napari_invrec._widgets.reconstruct import ReconstructWidget
    from napari_invrec.api import make_operator, reconstruct
    from napari_invrec.core.methods import METHODS

    x, y, psf = zstack
    viewer = make_napari_viewer()
    viewer.add_image(x.copy(), name="truth")
    kl = viewer.add_image(psf.copy(), name="psf")
    layer = viewer.add_image(y.copy(), name="zstack")
    before = {n: np.array(viewer.layers[n].data, copy=True) for n in ("truth", "psf", "zstack")}
    w = ReconstructWidget(viewer)
    w.measurement.value = layer
    w.op_panel.operator.value = "blur"
    w.op_panel.form.set_values({"kernel": "custom"})
    w.op_panel.kernel_layer.value = kl
    w.reference.value = viewer.layers["truth"]
    w.show()
    # a 3-D layer of a 3-D family runs as a volume by default, and only 3-D methods are listed
    assert w.stack_mode.value == VOLUME and not w.stack_mode.native.isHidden()
    assert set(w.method.choices) == {m for m, s in METHODS.items()
                                     if s.volumes and s.supports("blur")}
    w.method.value = "richardson-lucy"
    w.method_form.set_values({"iters": 20})
    w.run()
    wait_idle(w, timeout=120000)
    res = viewer.layers["richardson-lucy · blur"]
    assert res.data.shape == SHAPE
    prov = res.metadata["invrec"]["provenance"]
    assert prov["operator"]["shape"] == list(SHAPE)
    assert prov["operator"]["params"]["kernel"] == "custom"
    # the GUI ran exactly the API's run with the PSF layer as the kernel
    op = make_operator("blur", SHAPE, kernel="custom", kernel_array=psf)
    api_x = reconstruct(y, op, "richardson-lucy", iters=20).x
    np.testing.assert_allclose(res.data, api_x, atol=1e-5 * float(np.ptp(api_x)))
    assert _psnr(res.data, x) > _psnr(y, x) + 2.0
    hist = viewer.layers["richardson-lucy · blur [iterates]"]
    assert hist.data.ndim == 4 and hist.data.shape[1:] == SHAPE
    for n, arr in before.items():  # inputs untouched
        np.testing.assert_array_equal(viewer.layers[n].data, arr)
    # plane by plane lists every blur method again, and a 3-D PSF cannot blur one plane
    w.stack_mode.value = PLANE
    assert "unet" in w.method.choices or len(w.method.choices) > len(
        [m for m, s in METHODS.items() if s.volumes and s.supports("blur")])


def test_simulate_a_volume_from_a_3d_ground_truth(make_napari_viewer, zstack):
    from napari_invrec._widgets.simulate import SimulateWidget
    from napari_invrec.core.operators import make_operator

    x, _, _ = zstack
    viewer = make_napari_viewer()
    viewer.add_image(x.copy(), name="cells")
    w = SimulateWidget(viewer)
    w.image.value = viewer.layers["cells"]
    w.op_panel.operator.value = "blur"
    w.op_panel.form.set_values({"sigma": 1.2, "sigma_z": 2.5})
    w.noise_form.set_values({"model": "gaussian", "sigma": 0.001})
    added = w.simulate()
    y = added[0]
    assert y.data.shape == SHAPE
    assert y.metadata["invrec"]["operator"]["shape"] == list(SHAPE)
    # the 3-D blur: y - A x is the noise alone (std 0.001, to 5 % over 55k voxels), while a
    # plane-by-plane blur misses the axial part by far more
    op3 = make_operator("blur", SHAPE, sigma=1.2, sigma_z=2.5)
    op2 = make_operator("blur", SHAPE, kernel="custom",
                        kernel_array=make_operator("blur", SHAPE[1:], sigma=1.2).kernel_image())
    xt = torch.from_numpy(x)[None, None]
    r3 = float(np.std(y.data - op3.A(xt)[0, 0].numpy()))
    r2 = float(np.std(y.data - op2.A(xt)[0, 0].numpy()))
    assert abs(r3 - 0.001) < 0.05 * 0.001 and r2 > 5 * r3
