"""Deconvolution: the blind-blur operator, blind deconvolution, Richardson-Lucy and Wiener."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from helpers import run_method

import napari_invrec.api as ir
from napari_invrec.core.analysis import psnr
from napari_invrec.core.data import shepp_logan
from napari_invrec.core.errors import InputError
from napari_invrec.core.methods.blind import gaussian_kernel, kernel_width, project_simplex
from napari_invrec.core.operators import OPERATORS, NoiseParams, make_operator
from napari_invrec.core.operators.blur import Blur
from napari_invrec.core.operators.registry import operator_from_spec
from napari_invrec.core.tv import tv


def run(method: str, y, op, *, x0=None, **kw):
    """Drain a method: (list of yielded states, returned state)."""
    return run_method(method, y, op, x0=x0, **kw)


def phantom(n: int) -> torch.Tensor:
    return torch.from_numpy(shepp_logan(n))[None, None]


# ---------------------------------------------------------------------- blind-blur operator
def test_blind_blur_is_a_nonlinear_family_and_simulates_like_blur():
    assert not OPERATORS["blind-blur"].linear
    op = make_operator("blind-blur", (32, 48), sigma=1.7, support=9)
    ref = make_operator("blur", (32, 48), sigma=1.7)
    x = torch.rand(2, 1, 32, 48, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(op.A(x), ref.A(x))
    assert op.support == 9 and op.measurement_shape == (32, 48)
    np.testing.assert_array_equal(op.kernel_image(), ref.kernel_image())
    back = operator_from_spec(op.spec())
    assert back.support == 9 and back.params == op.params


def test_with_kernel_builds_the_blur_of_an_estimate():
    op = make_operator("blind-blur", (33, 31))
    k = torch.rand(1, 1, 7, 7, generator=torch.Generator().manual_seed(3))
    b = op.with_kernel(k)
    assert isinstance(b, Blur)
    np.testing.assert_allclose(b.kernel_image(), (k / k.sum())[0, 0].numpy(), rtol=1e-5)
    x = torch.randn(1, 1, 33, 31, generator=torch.Generator().manual_seed(1))
    v = torch.randn(1, 1, 33, 31, generator=torch.Generator().manual_seed(2))
    lhs, rhs = float((b.A(x) * v).sum()), float((x * b.A_adjoint(v)).sum())
    assert abs(lhs - rhs) < 1e-4 * abs(lhs)
    with pytest.raises(InputError, match="2-D"):
        op.with_kernel(torch.ones(3))


@pytest.mark.parametrize("support,match", [(14, "odd"), (0, "minimum|odd"), (35, "fit")])
def test_blind_blur_rejects_bad_supports(support, match):
    with pytest.raises(InputError, match=match):
        make_operator("blind-blur", (32, 33), support=support)


def test_method_lists_follow_what_each_method_needs():
    blind = ir.list_methods("blind-blur")
    assert "blind-deconv" in blind and "tv-fista" not in blind and "wiener" not in blind
    assert "richardson-lucy" not in blind  # the kernel is unknown there
    blur = ir.list_methods("blur")
    assert {"richardson-lucy", "wiener"} <= set(blur) and "blind-deconv" not in blur


# ---------------------------------------------------------------------- kernel helpers
def test_project_simplex_is_the_euclidean_projection():
    g = torch.Generator().manual_seed(0)
    v = torch.randn(4, 1, 5, 5, generator=g, dtype=torch.float64) * torch.tensor(
        [0.01, 0.3, 1.0, 10.0], dtype=torch.float64).view(-1, 1, 1, 1)
    p = project_simplex(v)
    assert float(p.min()) >= 0
    torch.testing.assert_close(p.flatten(1).sum(1), torch.ones(4, dtype=torch.float64))
    # independent check: theta by bisection on sum(max(v - theta, 0)) = 1
    for b in range(4):
        lo, hi = float(v[b].min()) - 1, float(v[b].max())
        for _ in range(200):
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if float((v[b] - mid).clamp_min(0).sum()) > 1 else (lo, mid)
        torch.testing.assert_close(p[b], (v[b] - lo).clamp_min(0), atol=1e-10, rtol=0)
    # optimality: no random point of the simplex is closer to v
    for _ in range(50):
        q = torch.rand(1, 1, 5, 5, generator=g, dtype=torch.float64) ** 4
        q = q / q.sum()
        assert float((v[2] - p[2]).norm()) <= float((v[2] - q[0]).norm()) + 1e-12
    torch.testing.assert_close(project_simplex(p), p)  # idempotent


def test_kernel_width_is_the_gaussian_sigma_and_shift_invariant():
    for s in (0.7, 1.5, 3.0):
        assert float(kernel_width(gaussian_kernel(s, 31))) == pytest.approx(s, rel=2e-3)
    k = gaussian_kernel(1.5, 15)
    shifted = torch.roll(k, shifts=(2, -1), dims=(-2, -1))
    assert float(kernel_width(shifted)) == pytest.approx(float(kernel_width(k)), rel=1e-3)


# ---------------------------------------------------------------------- blind deconvolution
N_BLIND, TRUE_SIGMA, BLIND_ITERS = 64, 2.0, 40


@functools.cache
def _blind_problem():
    op = make_operator("blind-blur", (N_BLIND, N_BLIND), sigma=TRUE_SIGMA)
    x = phantom(N_BLIND)
    return op, x, op.measure(x, NoiseParams(sigma=0.01, seed=0))


@functools.cache
def _blind_run(**kw):
    op, _, y = _blind_problem()
    return run("blind-deconv", y, op, init_sigma=1.0, **kw)


def test_blind_deconvolution_recovers_the_kernel_width():
    """Acceptance: the width of a Gaussian kernel (sigma 2) within 15 %, from a start of 1.

    Measured here: 1.89 (5.7 % low) after 40 outer iterations at the default lam 0.03 (the
    width settles at 1.87 +- 0.01 over noise seeds 0-3; 1.81 at 96 px; 2.78 for sigma 3)."""
    op, x, y = _blind_problem()
    states, ret = _blind_run(iters=BLIND_ITERS)
    width = float(kernel_width(ret.extras["kernel"]))
    assert width == pytest.approx(TRUE_SIGMA, rel=0.15), width
    assert width == pytest.approx(ret.metrics["kernel_width"], rel=1e-5)
    assert states[0].metrics["kernel_width"] < 1.3  # it really started narrow
    # the method never saw the true kernel, yet its image is as good as the non-blind one
    nonblind = run("tv-fista", y, op.sim, lam=0.03, iters=200, nonneg=True)[1].x
    assert psnr(ret.x, x) > psnr(nonblind, x) - 0.5
    assert psnr(ret.x, x) > psnr(y, x) - 0.5


def test_blind_kernel_stays_on_the_simplex_and_centred():
    states, ret = _blind_run(iters=BLIND_ITERS)
    s = _blind_problem()[0].support
    for st in states:
        k = st.extras["kernel"]
        assert k.shape == (1, 1, s, s)
        assert float(k.min()) >= 0
        assert float(k.sum()) == pytest.approx(1.0, abs=1e-5)
        assert all(np.isfinite(v) for v in st.metrics.values())
    k = ret.extras["kernel"][0, 0].double()
    t = torch.arange(s, dtype=torch.float64) - s // 2
    assert abs(float((k.sum(1) * t).sum())) < 1.0 and abs(float((k.sum(0) * t).sum())) < 1.0
    assert [st.step for st in states] == list(range(1, ret.total + 1))


def test_without_the_kernel_ridge_the_estimate_collapses_towards_a_delta():
    """The mechanism the docstring explains: plain projected gradient on F shrinks the kernel."""
    plain = _blind_run(k_ridge=0.0, iters=20)[1].metrics["kernel_width"]
    ridge = _blind_run(iters=BLIND_ITERS)[0][19].metrics["kernel_width"]  # same 20 steps
    assert plain < 1.0 < 1.5 < ridge, (plain, ridge)


def test_blind_batch_elements_get_their_own_kernels():
    op = make_operator("blind-blur", (32, 32), support=9)
    x = phantom(32)
    y1 = op.measure(x, NoiseParams(sigma=0.01, seed=1))
    y2 = make_operator("blur", (32, 32), sigma=0.8).measure(x.flip(-1), NoiseParams(sigma=0.01))
    kw = {"iters": 4, "x_iters": 5, "k_iters": 5}
    both = run("blind-deconv", torch.cat([y1, y2]), op, **kw)[1]
    assert both.extras["kernel"].shape == (2, 1, 9, 9)
    for i, yi in enumerate((y1, y2)):
        one = run("blind-deconv", yi, op, **kw)[1]
        torch.testing.assert_close(both.x[i:i + 1], one.x, atol=1e-4, rtol=0)
        torch.testing.assert_close(both.extras["kernel"][i:i + 1], one.extras["kernel"],
                                   atol=1e-5, rtol=0)


def test_engine_returns_the_kernel_estimate():
    op = ir.make_operator("blind-blur", (32, 32), support=7)
    y = ir.simulate(shepp_logan(32), op, sigma=0.01, seed=0)
    res = ir.reconstruct(y, op, "blind-deconv", iters=3, x_iters=3, k_iters=3)
    k = res.extras["kernel"]
    assert k.shape == (7, 7) and k.min() >= 0 and abs(float(k.sum()) - 1) < 1e-5
    assert "kernel_width" in res.metrics


# ---------------------------------------------------------------------- Richardson-Lucy
@functools.cache
def _poisson_problem(n: int = 64):
    op = make_operator("blur", (n, n), sigma=1.5)
    x = phantom(n)
    return op, x, op.measure(x, NoiseParams(model="poisson", photons=100.0, seed=0))


def test_richardson_lucy_preserves_flux_and_improves_psnr():
    op, x, y = _poisson_problem()
    states, ret = run("richardson-lucy", y, op)  # default 30 iterations
    assert ret.step == 30
    assert float(ret.x.min()) >= 0
    assert float(ret.x.sum()) == pytest.approx(float(y.sum()), rel=0.01)
    assert abs(ret.metrics["flux"] - 1) < 1e-3
    assert psnr(ret.x, x) > psnr(y, x) + 1.5, (psnr(ret.x, x), psnr(y, x))
    obj = np.array([s.metrics["objective"] for s in states])  # EM: I-divergence decreases
    assert np.all(obj[1:] <= obj[:-1] * (1 + 1e-5)) and obj[-1] < 0.8 * obj[0]


def test_richardson_lucy_tv_damps_the_noise_blow_up():
    op, x, y = _poisson_problem()
    plain, _ = run("richardson-lucy", y, op, iters=300)
    reg, _ = run("richardson-lucy", y, op, iters=300, tv_lam=0.005)
    p_plain = [psnr(s.x, x) for s in plain]
    p_reg = [psnr(s.x, x) for s in reg]
    assert max(p_plain) - p_plain[-1] > 2.0  # plain RL really fits the noise when run long
    assert max(p_reg) - p_reg[-1] < 0.5
    assert p_reg[-1] > p_plain[-1] + 2.0
    assert float(tv(reg[-1].x)) < 0.6 * float(tv(plain[-1].x))


def test_richardson_lucy_clamps_negative_measurements_and_rejects_signed_kernels():
    op = make_operator("blur", (32, 32), sigma=1.0)
    x = phantom(32)
    y = op.measure(x, NoiseParams(sigma=0.05, seed=0))
    assert float(y.min()) < 0
    _, ret = run("richardson-lucy", y, op, iters=10)
    assert bool(torch.isfinite(ret.x).all()) and float(ret.x.min()) >= 0
    signed = make_operator("blur", (32, 32), kernel="custom",
                           kernel_array=np.array([[0.0, -0.2, 0.0], [0.3, 1.0, 0.3], [0, 0, 0]]))
    with pytest.raises(InputError, match="non-negative kernel"):
        run("richardson-lucy", signed.A(x), signed)


# ---------------------------------------------------------------------- Wiener
def test_wiener_is_the_closed_form_and_beats_the_adjoint():
    n, nsr = 48, 0.02
    op = make_operator("blur", (n, n), sigma=2.0)
    x = phantom(n)
    y = op.measure(x, NoiseParams(sigma=0.01, seed=4))
    delta = torch.zeros(1, 1, n, n, dtype=torch.float64)
    delta[..., 0, 0] = 1.0
    h = torch.fft.fft2(op.A(delta.float()).double())
    closed = torch.fft.ifft2(h.conj() * torch.fft.fft2(y.double()) / (h.abs() ** 2 + nsr)).real
    states, ret = run("wiener", y, op, nsr=nsr)
    assert len(states) == 1 and ret.step == ret.total == 1
    assert float((ret.x.double() - closed).norm() / closed.norm()) < 1e-5
    assert psnr(ret.x, x) > psnr(op.A_adjoint(y), x) + 1.0
    torch.testing.assert_close(run("wiener", y, op, nsr=0.0)[1].x, op.A_pinv(y))
