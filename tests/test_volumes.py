"""3-D volumes: geometry, 3-D operators (blur with a 3-D PSF, denoise, inpaint), 3-D TV,
Richardson-Lucy against scikit-image, slice-wise networks, clear refusals."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import napari_invrec as ir
from napari_invrec.core.data import cells_volume
from napari_invrec.core.errors import InputError
from napari_invrec.core.geometry import slice_wise
from napari_invrec.core.operators import NoiseParams, make_operator
from napari_invrec.core.tv import grad, grad_adjoint, prox_tv, tv
from napari_invrec.engine.execute import run_to_result

VOL = (12, 20, 24)
F32 = float(np.finfo(np.float32).eps)


def _psnr(a: np.ndarray, ref: np.ndarray) -> float:
    return float(10 * np.log10(float(np.ptp(ref)) ** 2 / np.mean((a - ref) ** 2)))


@pytest.mark.parametrize("name", ["blur", "denoise", "inpaint"])
def test_volume_operator_adjoint_and_null_space(name):
    op = make_operator(name, VOL)
    g = torch.Generator().manual_seed(0)
    x = torch.randn((2, 1, *VOL), generator=g)
    y = torch.randn((2, 1, *op.measurement_shape), generator=g)
    lhs, rhs = float((op.A(x) * y).sum()), float((x * op.A_adjoint(y)).sum())
    # float32 sums of ~6e3 products of O(1) terms: error ~ sqrt(n) eps |terms|
    assert abs(lhs - rhs) <= 1e3 * F32 * float(x.norm() * y.norm())
    null = op.A(op.null_project(x))
    tol = (op.pinv_rcond if name == "blur" else 0) + 1e-4
    assert float(null.norm()) <= tol * float(x.norm())


def test_gaussian_psf_is_3d_and_anisotropic():
    op = make_operator("blur", (16, 32, 32), sigma=1.0, sigma_z=2.5)
    k = op.kernel_image()
    assert k.ndim == 3 and abs(float(k.sum()) - 1) < 1e-5
    var = [float((k.sum(axis=tuple(b for b in range(3) if b != a))
                  * (np.arange(k.shape[a]) - k.shape[a] // 2) ** 2).sum()) for a in range(3)]
    # second moments of the sampled Gaussian: sigma^2 to within the truncation at 4 sigma
    assert var[0] == pytest.approx(2.5 ** 2, rel=2e-2)
    assert var[1] == pytest.approx(1.0, rel=2e-2) and var[2] == pytest.approx(1.0, rel=2e-2)
    # a 2-D custom kernel on a volume blurs each plane alone (depth 1)
    op2 = make_operator("blur", (6, 32, 32), kernel="custom", kernel_array=np.ones((3, 3)))
    assert op2.kernel_image().shape == (1, 3, 3)


def test_tv_gradient_adjoint_in_3d():
    g = torch.Generator().manual_seed(1)
    x = torch.randn((1, 1, *VOL), generator=g, dtype=torch.float64)
    p = torch.randn((1, 1, 3, *VOL), generator=g, dtype=torch.float64)
    assert float((grad(x) * p).sum()) == pytest.approx(float((x * grad_adjoint(p)).sum()),
                                                       rel=1e-12)


def test_prox_tv_3d_of_z_constant_volume_is_2d_prox_of_each_plane():
    """For v constant along z, the 3-D TV prox is constant along z (Jensen) and each plane is
    the 2-D prox: both FGP runs converge to the same point."""
    g = torch.Generator().manual_seed(2)
    plane = torch.rand((1, 1, 24, 24), generator=g, dtype=torch.float64)
    vol = plane[:, :, None].expand(1, 1, 5, 24, 24).contiguous()
    x3, _ = prox_tv(vol, 0.1, iters=2000)
    x2, _ = prox_tv(plane, 0.1, iters=2000)
    assert float((x3 - x2[:, :, None]).abs().max()) < 1e-4
    # and it lowers the 3-D objective below the start
    obj = 0.5 * (x3 - vol).square().sum() + 0.1 * tv(x3).sum()
    assert float(obj) < float(0.1 * tv(vol).sum())


def _blurred_volume(shape=(32, 48, 48), margin=12, seed=0):
    x = cells_volume(shape, seed=seed, margin=margin)
    op = make_operator("blur", shape, sigma=1.2, sigma_z=2.5)
    y = op.measure(torch.from_numpy(x)[None, None], NoiseParams(model="poisson", photons=300.0),
                   generator=torch.Generator().manual_seed(seed))[0, 0].numpy()
    return x, y, op


def test_richardson_lucy_3d_equals_scikit_image():
    """With empty faces at least the PSF's half-width, periodic and zero-padded convolution
    agree, so our 3-D RL from scikit-image's start (0.5) follows its iterates: they differ
    only by float32 rounding and our floor of 1e-6 on y and A x."""
    restoration = pytest.importorskip("skimage.restoration")
    x, y, op = _blurred_volume()
    ours = run_to_result(y, op, "richardson-lucy", {"iters": 15}, normalise="off",
                         x0=np.full(x.shape, 0.5, np.float32)).x
    theirs = restoration.richardson_lucy(y.astype(np.float64),
                                         op.kernel_image().astype(np.float64),
                                         num_iter=15, clip=False)
    assert abs(_psnr(ours, x) - _psnr(theirs, x)) < 0.02
    assert np.abs(ours - theirs).max() < 1e-2 * float(np.ptp(theirs))


def test_3d_deconvolution_beats_plane_by_plane():
    """Axial blur is invisible to a 2-D model: the 3-D runs must win clearly."""
    from napari_invrec.engine.execute import drain
    from napari_invrec.engine.stack import reconstruct_eager

    x, y, op = _blurred_volume(seed=1)
    rl3 = run_to_result(y, op, "richardson-lucy", {"iters": 20}).x
    op2 = make_operator("blur", x.shape[1:], sigma=1.2)
    rl2 = drain(reconstruct_eager(y, op2, "richardson-lucy", iters=20))
    tv3 = run_to_result(y, op, "tv-fista", {"lam": 0.002, "iters": 60}).x
    assert _psnr(rl3, x) > _psnr(rl2, x) + 1.0
    assert _psnr(tv3, x) > _psnr(rl2, x) + 1.0


def test_inpaint_volume_masks():
    op = make_operator("inpaint", VOL, keep=0.3)
    assert op.mask.shape == VOL and int(op.mask.sum()) == round(0.3 * np.prod(VOL))
    box = make_operator("inpaint", VOL, mask="box", box_size=0.5).mask
    assert box[VOL[0] // 2, VOL[1] // 2, VOL[2] // 2] == 0 and box[0, 0, 0] == 1


def test_network_denoiser_runs_slice_by_slice():
    """2.5-D: a volume's slices go through the 2-D network as one batch, the same as one by
    one (float32 batch/no-batch rounding only)."""
    from napari_invrec.core.denoisers import get_denoiser

    den = get_denoiser("drunet-general")
    g = torch.Generator().manual_seed(3)
    v = torch.rand((1, 1, 3, 32, 32), generator=g)
    out = den(v, 0.05)
    one = torch.stack([den(v[:, :, k], 0.05) for k in range(3)], dim=2)
    assert out.shape == v.shape
    assert float((out - one).abs().max()) < 1e-4
    twice = slice_wise(lambda t: t * 2, v)
    assert torch.equal(twice, v * 2)


def test_api_volume_round_trip_and_rerun():
    x = cells_volume((16, 32, 32), seed=4, margin=2)
    op = ir.make_operator("blur", x.shape, sigma=1.0, sigma_z=2.0)
    assert op.shape == x.shape
    y = ir.simulate(x, op, sigma=0.01, seed=0)
    res = ir.reconstruct(y, op, "tv-fista", lam=0.002, iters=10, reference=x)
    assert res.x.shape == x.shape and res.iterates.shape[1:] == x.shape
    assert res.metrics["psnr"] > _psnr(y, x)
    again = ir.rerun(res.provenance, y, res.arrays)
    assert np.array_equal(again.x, res.x)


def test_volume_refusals_say_what_to_do():
    op = ir.make_operator("blur", VOL)
    y = np.zeros(VOL, np.float32)
    with pytest.raises(InputError, match="works on 2-D images.*plane by plane"):
        ir.reconstruct(y, op, "unet")
    with pytest.raises(InputError, match="must be \\(H, W\\).*plane by plane"):
        make_operator("mri", VOL)
    with pytest.raises(InputError, match="3-D PSF needs a 3-D image"):
        make_operator("blur", (32, 32), kernel="custom", kernel_array=np.ones((3, 3, 3)))
    with pytest.raises(InputError, match="larger than the image"):
        make_operator("blur", (4, 32, 32), kernel="custom", kernel_array=np.ones((5, 3, 3)))
    with pytest.raises(InputError, match="must be 3-D"):
        ir.reconstruct(np.zeros((20, 24), np.float32), op, "tv-fista")
