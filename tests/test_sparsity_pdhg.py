"""wavelet-fista (wavelet sparsity) and tv-pdhg (Chambolle-Pock TV) on any linear operator."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from helpers import run_method

from napari_invrec.core.analysis import psnr
from napari_invrec.core.data import camera, shepp_logan
from napari_invrec.core.errors import DivergenceError, InputError
from napari_invrec.core.methods.sparsity import soft_threshold
from napari_invrec.core.operators import NoiseParams, make_operator
from napari_invrec.core.wavelets import dwt2, idwt2

IMAGES = {"camera": camera, "shepp_logan": shepp_logan}


@functools.cache
def _problem(op_name: str, image: str, n: int):
    op = make_operator(op_name, (n, n))
    x = op.as_image(torch.from_numpy(IMAGES[image](n))[None, None])
    return x, op.measure(x, NoiseParams(sigma=0.02, seed=1))


def problem(op_name: str, image: str = "shepp_logan", n: int = 64):
    """Fresh operator (tests may patch it), cached ground truth and measurement."""
    x, y = _problem(op_name, image, n)
    return make_operator(op_name, (n, n)), x, y


run = run_method


def final(method: str, y, op, **kw):
    return run(method, y, op, **kw)[1]


def gain(method: str, op_name: str, image: str, **kw) -> float:
    op, x, y = problem(op_name, image)
    base = psnr(final("adjoint", y, op).x.abs(), x.abs())
    return psnr(final(method, y, op, **kw).x.abs(), x.abs()) - base


# ---------------------------------------------------------------------- wavelet-fista
def test_soft_threshold_shrinks_the_modulus_and_keeps_the_phase():
    c = torch.tensor([3.0 + 4.0j, 0.3 - 0.4j, -2.0 + 0.0j, 0.0j])
    out = soft_threshold(c, 1.0)
    assert torch.allclose(out.abs(), torch.tensor([4.0, 0.0, 1.0, 0.0]), atol=1e-6)
    assert torch.allclose(out[0] / out[0].abs(), c[0] / c[0].abs(), atol=1e-6)
    assert torch.allclose(out[2], torch.tensor(-1.0 + 0.0j))
    real = soft_threshold(torch.tensor([-2.0, -0.5, 0.5, 2.0]), 1.0)
    assert torch.equal(real, torch.tensor([-1.0, 0.0, 0.0, 1.0]))


@pytest.mark.parametrize("op_name,image,kw", [
    ("inpaint", "camera", {}), ("blur", "camera", {}),
    ("inpaint", "shepp_logan", {}), ("blur", "shepp_logan", {"lam": 0.003}),
    ("denoise", "camera", {}),
    ("mri", "shepp_logan", {"cycle_spin": True}),
])
def test_wavelet_fista_improves_psnr_over_the_adjoint(op_name, image, kw):
    assert gain("wavelet-fista", op_name, image, **kw) > 1.0


def test_cycle_spinning_beats_the_fixed_grid_on_inpainting():
    op, x, y = problem("inpaint", "camera")
    fixed = psnr(final("wavelet-fista", y, op).x, x)
    spun = psnr(final("wavelet-fista", y, op, cycle_spin=True).x, x)
    assert spun > fixed + 0.5, (fixed, spun)


@pytest.mark.parametrize("op_name", ["blur", "inpaint", "mri"])
def test_wavelet_fista_objective_decreases_nearly_monotonically(op_name):
    op, _, y = problem(op_name, n=48)
    states, _ = run("wavelet-fista", y, op, wavelet="db4")
    obj = np.array([s.metrics["objective"] for s in states])
    assert obj[-1] < 0.9 * obj[0]
    ok = obj[1:] <= obj[:-1] * (1 + 1e-6)
    assert ok.mean() >= 0.9, ok.mean()


@pytest.mark.parametrize("n", [32, 30])  # 30: padded to 32 for 3 levels
def test_lam_zero_on_denoise_returns_the_measurement(n):
    op, _, y = problem("denoise", n=n)
    st = final("wavelet-fista", y, op, lam=0.0, iters=5)
    assert st.x.shape == y.shape
    assert torch.allclose(st.x, y, atol=1e-5)


@pytest.mark.parametrize("wavelet,lam", [("haar", 0.05), ("db4", 0.02), ("db2", 1e3)])
def test_denoising_solution_is_wavelet_shrinkage(wavelet, lam):
    """A = I: the minimiser is W^T soft(W y) on the details, approximation band kept (lam=1e3:
    only the approximation band survives)."""
    op, _, y = problem("denoise", "camera", n=32)
    c = dwt2(y, wavelet, 3)
    shrunk = soft_threshold(c, lam)
    shrunk[..., :4, :4] = c[..., :4, :4]
    st = final("wavelet-fista", y, op, lam=lam, wavelet=wavelet, iters=10)
    assert torch.allclose(st.x, idwt2(shrunk, wavelet, 3), atol=1e-5)


def test_wavelet_fista_on_a_padded_size_and_a_batch():
    op = make_operator("inpaint", (45, 37))
    x = torch.from_numpy(camera(64)[:45, :37].copy())[None, None]
    y1 = op.measure(x, NoiseParams(sigma=0.02, seed=1))
    y2 = op.measure(x.flip(-1), NoiseParams(sigma=0.02, seed=2))
    states, both = run("wavelet-fista", torch.cat([y1, y2]), op, iters=60)
    assert both.x.shape == (2, 1, 45, 37)
    obj = [s.metrics["objective"] for s in states]
    assert obj[-1] < obj[0]
    one = final("wavelet-fista", y1, op, iters=60).x
    assert torch.allclose(both.x[:1], one, atol=1e-4)
    adj = psnr(op.A_adjoint(y1), x)
    assert psnr(one, x) > adj + 5.0


def test_wavelet_fista_tolerance_stop_and_bad_input():
    op, _, y = problem("blur", n=32)
    states, ret = run("wavelet-fista", y, op, tol=1e-3, iters=500)
    assert ret.step < 500 and ret.total == ret.step
    assert ret.metrics["rel_change"] < 1e-3 <= states[-2].metrics["rel_change"]
    with pytest.raises(InputError, match="db3"):
        run("wavelet-fista", y, op, wavelet="db3")
    with pytest.raises(InputError, match="lam"):
        run("wavelet-fista", y, op, lam=-1.0)


# ---------------------------------------------------------------------- tv-pdhg
@pytest.mark.parametrize("op_name", ["blur", "inpaint", "mri"])
def test_pdhg_reaches_the_fista_objective(op_name):
    op, _, y = problem(op_name)
    ref = final("tv-fista", y, op, iters=150).metrics["objective"]  # converged to ~1e-5
    got = final("tv-pdhg", y, op).metrics["objective"]  # default 200 iterations
    assert abs(got - ref) / ref < 0.01, (ref, got)


@pytest.mark.parametrize("op_name,kw", [("denoise", {}), ("blur", {"lam": 0.002}),
                                        ("inpaint", {}), ("mri", {})])
def test_pdhg_improves_psnr_over_the_adjoint(op_name, kw):
    assert gain("tv-pdhg", op_name, "shepp_logan", **kw) > 1.0


def test_pdhg_optimality_residuals_vanish():
    op, _, y = problem("mri", n=32)
    states, _ = run("tv-pdhg", y, op, iters=300)
    for key in ("primal_residual", "dual_residual"):
        r = np.array([s.metrics[key] for s in states])
        assert r[-1] < 0.02 * r[:5].max(), (key, r[:5], r[-1])


def test_pdhg_nonneg_lam_zero_and_tolerance_stop():
    op, _, y = problem("blur", n=32)
    st = final("tv-pdhg", y, op, nonneg=True, iters=50)
    assert float(st.x.min()) >= 0.0
    op_d, _, y_d = problem("denoise", n=32)
    assert torch.allclose(final("tv-pdhg", y_d, op_d, lam=0.0, iters=100).x, y_d, atol=1e-4)
    states, ret = run("tv-pdhg", y, op, tol=1e-3, iters=2000)
    assert ret.step < 2000 and ret.total == ret.step
    assert ret.metrics["rel_change"] < 1e-3 <= states[-2].metrics["rel_change"]
    op_m, _, y_m = problem("mri", n=32)
    with pytest.raises(InputError, match="real images"):
        run("tv-pdhg", y_m, op_m, nonneg=True)


# ---------------------------------------------------------------------- divergence
@pytest.mark.parametrize("method,match", [
    ("wavelet-fista", "wavelet-fista diverged at step .*op.norm"),
    ("tv-pdhg", "tv-pdhg stopped at step .*op.norm"),
])
@pytest.mark.parametrize("op_name", ["blur", "mri"])
def test_a_wrong_operator_norm_raises_instead_of_returning_nan(method, match, op_name):
    op, _, y = problem(op_name, n=32)
    op.norm = lambda: 1e-6
    with pytest.raises(DivergenceError, match=match):
        run(method, y, op, iters=200)


@pytest.mark.parametrize("method", ["wavelet-fista", "tv-pdhg"])
def test_an_overflowing_operator_raises(method):
    op, _, y = problem("blur", n=32)
    op.norm()
    a, ah = op.A, op.A_adjoint
    op.A = lambda v: a(v) * 1e25
    op.A_adjoint = lambda v: ah(v) * 1e25
    with pytest.raises(DivergenceError, match=method):
        run(method, y, op, iters=50)
