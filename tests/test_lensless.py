"""The lensless (diffuser) camera: operator, caustic PSF, and learned ADMM's mechanics.

The forward model is the linear convolution of the scene with the PSF, cropped to the sensor;
it is checked against scipy's direct convolution in float64 (float32 FFTs agree to ~1e-6 of
the largest value) and its adjoint by the inner-product identity.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import signal

import napari_invrec.api as ir
from napari_invrec.core.errors import InputError
from napari_invrec.core.models.unrolled import LearnedADMM
from napari_invrec.core.operators import make_operator
from napari_invrec.core.operators.lensless import caustic_psf

pytestmark = pytest.mark.usefixtures("one_thread")
EPS = float(torch.finfo(torch.float32).eps)


def test_forward_is_the_linear_convolution_cropped_to_the_sensor():
    shape = (14, 11)
    op = make_operator("lensless", shape)
    k = op.psf_image().astype(np.float64)
    x = np.random.default_rng(0).random(shape)
    full = signal.convolve2d(x, k, mode="full")  # (2H - 1, 2W - 1)
    # output pixel (i, j) of the sensor sees scene offsets around the PSF's centre
    r, c = shape[0] // 2, shape[1] // 2
    want = full[r:r + shape[0], c:c + shape[1]]
    got = op.A(torch.from_numpy(x).float()[None, None])[0, 0].double().numpy()
    # float32 FFTs of a 2H x 2W grid: rounding ~ eps * log2(size) of the largest value
    tol = 16 * EPS * math.log2(4 * x.size) * np.abs(want).max()
    np.testing.assert_allclose(got, want, rtol=0, atol=tol)


@pytest.mark.parametrize("shape", [(32, 32), (33, 20)])
def test_adjoint_identity(shape):
    op = make_operator("lensless", shape, seed=3)
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn((2, 1, *shape), generator=g), torch.randn((2, 1, *shape), generator=g)
    lhs, rhs = float((op.A(x) * y).sum()), float((x * op.A_adjoint(y)).sum())
    tol = 16 * EPS * math.log2(4 * x[0].numel()) * float(x.norm() * y.norm())
    assert abs(lhs - rhs) <= tol, (lhs, rhs, tol)
    assert op.norm() <= 1.0 + 1e-4  # ||A|| <= max |K| = 1 for a PSF of sum 1


def test_light_that_misses_the_sensor_is_lost():
    op = make_operator("lensless", (32, 32))
    centre, corner = torch.zeros((1, 1, 32, 32)), torch.zeros((1, 1, 32, 32))
    centre[..., 16, 16] = 1.0
    corner[..., 0, 0] = 1.0
    # a point at the centre casts its whole caustic on the sensor; one in the corner about a
    # quarter of it (the caustic spreads around the point in every direction)
    assert abs(float(op.A(centre).sum()) - 1.0) < 1e-5
    assert 0.05 < float(op.A(corner).sum()) < 0.6


def test_caustic_psf_is_a_deterministic_normalised_caustic():
    a, b = caustic_psf((64, 64), seed=0), caustic_psf((64, 64), seed=0)
    np.testing.assert_array_equal(a, b)
    assert a.min() >= 0 and abs(a.sum() - 1) < 1e-12
    assert np.abs(a - caustic_psf((64, 64), seed=1)).sum() > 0.5  # another diffuser
    # caustics: a few sharp bright curves carry much of the light over a wide support
    lit = a > 0.05 * a.max()
    assert 0.1 < lit.mean() < 0.6
    assert np.sort(a.ravel())[::-1][: a.size // 20].sum() > 0.2


def test_custom_psf_and_bad_parameters_are_refused_in_one_line():
    k = np.zeros((5, 5))
    k[2, 2], k[0, 4] = 2.0, 2.0
    op = make_operator("lensless", (16, 16), psf="custom", kernel_array=k)
    assert abs(op.psf_image().sum() - 1) < 1e-6
    for bad, match in ((None, "needs kernel_array"), (np.ones((20, 4)), "at most"),
                       (np.full((3, 3), np.nan), "finite"), (np.zeros((3, 3)), "positive")):
        with pytest.raises(InputError, match=match):
            make_operator("lensless", (16, 16), psf="custom", kernel_array=bad)
    with pytest.raises(InputError, match="feature"):
        make_operator("lensless", (16, 16), feature=0.0)


def test_tv_recovers_what_the_adjoint_smears():
    from napari_invrec.core.data.heldout import heldout_image

    x = heldout_image("cell", 64)
    op = ir.make_operator("lensless", x.shape)
    y = ir.simulate(x, op, sigma=0.01, seed=1)
    adj = ir.reconstruct(y, op, "adjoint", reference=x).metrics["psnr"]
    tv = ir.reconstruct(y, op, "tv-fista", reference=x).metrics["psnr"]
    assert tv > adj + 5, (tv, adj)


def test_untrained_learned_admm_is_the_proximal_point_iteration():
    """Zero CNNs (their initial state): from the Tikhonov start, u stays 0 and
    z_{k+1} = (A^H A + rho I)^{-1}(A^H y + rho z_k), exact for the blur (closed-form data
    step), and rho gets gradients."""
    op = make_operator("blur", (24, 24), sigma=1.5)
    y = op.A(torch.rand((1, 1, 24, 24), generator=torch.Generator().manual_seed(0)))
    net = LearnedADMM(stages=3, width=4, depth=2)
    zs = list(net.stages(y, op))
    rho = 0.1 * op.norm() ** 2
    z = op.solve_normal(op.A_adjoint(y), 0.01 * op.norm() ** 2)
    for got in zs:
        z = op.solve_normal(op.A_adjoint(y) + rho * z, rho)
        torch.testing.assert_close(got, z, rtol=1e-5, atol=1e-6)
    zs[-1].square().sum().backward()
    assert net.log_rho.grad is not None and bool((net.log_rho.grad != 0).all())
