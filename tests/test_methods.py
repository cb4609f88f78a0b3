"""Reconstruction methods: quality, convergence, the generator contract, sampling, divergence."""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import torch
from helpers import run_method

from napari_invrec.core.analysis import psnr
from napari_invrec.core.data import shepp_logan
from napari_invrec.core.errors import DivergenceError, InputError
from napari_invrec.core.methods import METHODS
from napari_invrec.core.models.registry import read_manifest, trained_operator
from napari_invrec.core.operators import OPERATORS, NoiseParams, make_operator
from napari_invrec.core.params import make_params

N = 64
SIGMA = 0.02

INSTALLED = read_manifest()


def runnable(method: str, op_name: str) -> bool:
    """Whether ``method`` runs on ``op_name`` with its default weights (if it needs any):
    installed, and trained for that operator family (denoisers serve every family)."""
    spec = METHODS[method]
    if not spec.supports(op_name):
        return False
    return all(w in INSTALLED and trained_operator(INSTALLED[w]) in (None, op_name)
               for w in spec.weights)


COMPATIBLE = [(m, o) for m in METHODS for o in OPERATORS if runnable(m, o)]
# Few iterations: enough to exercise the contract quickly.
SHORT = {"min-norm": {"mode": "cg", "iters": 6}, "tikhonov": {"iters": 6},
         "tv-fista": {"iters": 6}, "tv-admm": {"iters": 6},
         "langevin-tv": {"iters": 6, "burn_in": 2, "n_samples": 3},
         "blind-deconv": {"iters": 4}, "gerchberg-saxton": {"iters": 6}, "hio": {"iters": 6},
         "wirtinger-flow": {"iters": 6}, "wavelet-fista": {"iters": 6},
         "tv-pdhg": {"iters": 6}, "pnp-pgd": {"iters": 6}, "pnp-admm": {"iters": 6},
         "dpir": {"iters": 6}, "red": {"iters": 6}, "dip": {"iters": 6},
         "deep-decoder": {"iters": 6},
         "csgm": {"iters": 6, "restarts": 2},
         **{m: {"steps": 4, "n_samples": 2} for m in ("score-dc", "dps", "ddrm", "diffpir")}}


@functools.cache
def _problem(op_name: str, n: int = N, sigma: float = SIGMA):
    op = make_operator(op_name, (n, n))
    x = op.as_image(torch.from_numpy(shepp_logan(n))[None, None])
    y = op.measure(x, NoiseParams(sigma=sigma, seed=1))
    return op, x, y


def problem(op_name: str, n: int = N, sigma: float = SIGMA):
    """Fresh operator (tests may patch it), cached ground truth and measurement."""
    _, x, y = _problem(op_name, n, sigma)
    return make_operator(op_name, (n, n)), x, y


run = run_method


def final(method: str, y, op, **kw):
    return run(method, y, op, **kw)[1]


# ---------------------------------------------------------------------- generator contract
@pytest.mark.parametrize("method,op_name", COMPATIBLE)
def test_yields_every_step_with_finite_metrics(method, op_name):
    op, _, y = problem(op_name, n=32)
    states, ret = run(method, y, op, generator=torch.Generator().manual_seed(0),
                      **SHORT.get(method, {}))
    assert [s.step for s in states] == list(range(1, len(states) + 1))
    assert ret is states[-1]
    assert ret.step == ret.total
    assert all(s.total >= s.step for s in states)
    for s in states:
        assert s.x.shape == (1, 1, 32, 32) and s.x.dtype == op.image_dtype
        assert bool(torch.isfinite(s.x).all())
        assert "residual" in s.metrics
        assert all(math.isfinite(v) for v in s.metrics.values()), s.metrics


def home_operator(method: str) -> str | None:
    """An operator family the method runs on (blur when it can); None without weights."""
    ops = sorted(o for o in OPERATORS if runnable(method, o))
    return "blur" if "blur" in ops else (ops[0] if ops else None)


@pytest.mark.parametrize("method", [m for m in METHODS if home_operator(m)])
def test_grad_mode_does_not_leak_to_the_caller(method):
    op, _, y = problem(home_operator(method), n=32)
    spec = METHODS[method]
    gen = spec.fn(y, op, make_params(spec.params, **SHORT.get(method, {})))
    next(gen)
    assert torch.is_grad_enabled()
    gen.close()


@pytest.mark.parametrize("method", ["min-norm", "tikhonov", "tv-fista", "tv-admm", "langevin-tv",
                                    "wavelet-fista", "tv-pdhg"])
def test_closing_the_generator_stops_the_work(method):
    op, _, y = problem("blur", n=32)
    op.norm()  # cached power iteration is not part of the count
    calls = {"n": 0}
    a, ah = op.A, op.A_adjoint

    def count(f):
        def wrapped(v):
            calls["n"] += 1
            return f(v)
        return wrapped

    op.A, op.A_adjoint = count(a), count(ah)
    kw = {"min-norm": {"mode": "cg", "iters": 40, "tol": 0.0},
          "tikhonov": {"iters": 40, "tol": 0.0, "lam": 1e-4}}.get(method, {"iters": 40})
    if method == "langevin-tv":
        kw["burn_in"] = 10
    spec = METHODS[method]
    gen = spec.fn(y, op, make_params(spec.params, **kw))
    steps = [next(gen).step for _ in range(3)]
    at_close = calls["n"]
    gen.close()
    assert steps == [1, 2, 3]
    assert calls["n"] == at_close
    with pytest.raises(StopIteration):
        next(gen)
    calls["n"] = 0
    run(method, y, op, **kw)
    assert at_close < 0.25 * calls["n"]  # work is done step by step, not ahead


@pytest.mark.parametrize("method", ["adjoint", "tikhonov", "tv-fista", "tv-admm", "wavelet-fista",
                                    "tv-pdhg"])
def test_batch_elements_are_independent(method):
    """Changing one batch element's data leaves the other element's result unchanged.

    Both runs have the same batch shape, so they take the same FFT/BLAS code paths and round
    the unchanged element identically: any difference beyond a few float32 ulps of its
    magnitude is coupling (e.g. a CG step size shared by the batch changes it at the 1e-2
    level). Comparing against a batch-of-one run instead would compare two rounding paths,
    which an ill-conditioned CG amplifies differently on every CPU.
    """
    op, x, _ = problem("blur", n=32)
    y1 = op.measure(x, NoiseParams(sigma=SIGMA, seed=1))
    y2 = op.measure(0.5 * x.flip(-1), NoiseParams(sigma=SIGMA, seed=2))
    y3 = op.measure(x.flip(-2) ** 2, NoiseParams(sigma=SIGMA, seed=3))
    kw = {} if method == "adjoint" else {"iters": 15}
    a = final(method, torch.cat([y1, y2]), op, **kw).x
    b = final(method, torch.cat([y1, y3]), op, **kw).x
    ulps = 16 * torch.finfo(torch.float32).eps * float(a[0].abs().max())
    assert torch.allclose(a[0], b[0], rtol=0, atol=ulps), float((a[0] - b[0]).abs().max())
    assert not torch.allclose(a[1], b[1], atol=1e-2)  # the changed element did change


@pytest.mark.parametrize("method", [m for m in METHODS if home_operator(m)])
def test_wrong_measurement_shape_is_an_input_error(method):
    op, _, _ = problem(home_operator(method), n=32)
    wrong = tuple(s + 1 for s in op.measurement_shape)
    with pytest.raises(InputError, match="expected a measurement"):
        run(method, torch.zeros(1, 1, *wrong, dtype=op.measurement_dtype), op)


def test_nan_measurement_and_bad_start_are_input_errors():
    op, x, y = problem("denoise", n=32)
    bad = y.clone()
    bad[0, 0, 3, 3] = float("nan")
    with pytest.raises(InputError, match="NaN"):
        run("tv-fista", bad, op)
    with pytest.raises(InputError, match="batch"):
        run("tv-fista", y, op, x0=torch.zeros(3, 1, 32, 32))


# ---------------------------------------------------------------------- quality
# Parameters sensible for each operator at 64 px with noise std 0.02. Deblurring this phantom
# wants a weaker TV weight than the default; the sampler's sigma is the noise std per real
# degree of freedom (complex k-space noise of E|n|^2 = 0.02^2 has 0.02 / sqrt(2) per part),
# and MRI's null space needs a longer chain to forget the zero-filled start.
GAIN_CASES = {
    ("tikhonov", "blur"): {},
    ("richardson-lucy", "blur"): {}, ("wiener", "blur"): {},
    ("wavelet-fista", "denoise"): {}, ("wavelet-fista", "blur"): {"lam": 0.003},
    ("wavelet-fista", "inpaint"): {}, ("wavelet-fista", "mri"): {"cycle_spin": True},
    ("tv-pdhg", "denoise"): {}, ("tv-pdhg", "blur"): {"lam": 0.002},
    ("tv-pdhg", "inpaint"): {}, ("tv-pdhg", "mri"): {},
    ("fbp", "ct"): {}, ("sirt", "ct"): {}, ("tv-fista", "ct"): {"lam": 0.003},
    ("tv-fista", "cs"): {}, ("tv-admm", "cs"): {},
    ("bicubic", "superres"): {}, ("tv-fista", "superres"): {"lam": 0.001},
    ("tv-fista", "denoise"): {}, ("tv-fista", "blur"): {"lam": 0.002},
    ("tv-fista", "inpaint"): {}, ("tv-fista", "mri"): {},
    ("tv-admm", "denoise"): {}, ("tv-admm", "blur"): {"lam": 0.002},
    ("tv-admm", "inpaint"): {}, ("tv-admm", "mri"): {},
    ("langevin-tv", "denoise"): {"sigma": SIGMA},
    ("langevin-tv", "blur"): {"sigma": SIGMA, "lam": 0.002},
    ("langevin-tv", "inpaint"): {"sigma": SIGMA},
    ("langevin-tv", "mri"): {"sigma": SIGMA / 2 ** 0.5, "iters": 600, "burn_in": 200},
}


@pytest.mark.parametrize("method,op_name", list(GAIN_CASES))
def test_psnr_improves_over_the_adjoint(method, op_name):
    op, x, y = problem(op_name)
    ref = x.abs()
    base = psnr(final("adjoint", y, op).x.abs(), ref)
    got = psnr(final(method, y, op, generator=torch.Generator().manual_seed(0),
                     **GAIN_CASES[method, op_name]).x.abs(), ref)
    assert got > base + 1.0, (base, got)


@pytest.mark.parametrize("op_name", ["denoise", "inpaint", "mri"])
def test_linear_methods_on_partial_isometries(op_name):
    """For A with A A^H a projection, A^+ = A^H and Tikhonov is A^H y / (1 + lam): no gain."""
    op, _, y = problem(op_name)
    adj = final("adjoint", y, op).x
    scale = float(adj.abs().max())
    for kw in ({"mode": "exact"}, {"mode": "cg"}):
        assert torch.allclose(final("min-norm", y, op, **kw).x, adj, atol=1e-5 * scale)
    tik = final("tikhonov", y, op, lam=0.25).x
    assert torch.allclose(tik, adj / 1.25, atol=1e-5 * scale)


def test_tikhonov_matches_the_fourier_closed_form_on_blur():
    op, _, y = problem("blur")
    lam = 0.01
    delta = torch.zeros(1, 1, N, N)
    delta[..., 0, 0] = 1.0
    h = torch.fft.fft2(op.A(delta).double())
    closed = torch.fft.ifft2(h.conj() * torch.fft.fft2(y.double()) / (h.abs() ** 2 + lam)).real
    got = final("tikhonov", y, op, lam=lam, iters=500, tol=1e-7).x.double()
    assert float((got - closed).norm() / closed.norm()) < 1e-3


def test_min_norm_exact_and_cg_agree_and_fit_the_data():
    op = make_operator("blur", (48, 48), sigma=0.6)  # well conditioned: min |K| / max |K| ~ 0.1
    x = torch.from_numpy(shepp_logan(48))[None, None]
    y = op.measure(x, NoiseParams(model="none"))
    exact = final("min-norm", y, op, mode="exact").x
    cg = final("min-norm", y, op, mode="cg", iters=300, tol=1e-7).x
    assert float((exact - cg).norm() / exact.norm()) < 1e-4
    op_i, x_i, _ = problem("inpaint")
    y_i = op_i.measure(x_i, NoiseParams(model="none"))
    for mode in ("exact", "cg"):
        st = final("min-norm", y_i, op_i, mode=mode)
        assert float((op_i.A(st.x) - y_i).norm() / y_i.norm()) < 1e-5
        assert st.metrics["residual"] < 1e-5


# ---------------------------------------------------------------------- TV solvers
@pytest.mark.parametrize("op_name", ["blur", "inpaint", "mri"])
def test_fista_objective_decreases_nearly_monotonically(op_name):
    """FISTA is not a descent method (and its prox is inexact), so only "nearly" monotone."""
    op, _, y = problem(op_name, n=48)
    states, _ = run("tv-fista", y, op)
    obj = np.array([s.metrics["objective"] for s in states])
    assert obj[-1] < obj[0]
    ok = obj[1:] <= obj[:-1] * (1 + 1e-6)
    assert ok.mean() >= 0.9, ok.mean()


def test_fista_and_admm_reach_the_same_objective_on_blur():
    op, _, y = problem("blur")
    f = final("tv-fista", y, op, iters=200).metrics["objective"]
    a = final("tv-admm", y, op, iters=200).metrics["objective"]
    assert abs(f - a) / f < 0.01, (f, a)


def test_fista_nonneg_and_tolerance_stop():
    op, _, y = problem("blur", n=32)
    states, ret = run("tv-fista", y, op, nonneg=True, tol=1e-3, iters=500)
    assert float(ret.x.min()) >= 0.0
    assert ret.step < 500 and ret.total == ret.step
    assert ret.metrics["rel_change"] < 1e-3 <= states[-2].metrics["rel_change"]
    op_m, _, y_m = problem("mri", n=32)
    with pytest.raises(InputError, match="real images"):
        run("tv-fista", y_m, op_m, nonneg=True)


def test_fista_diverges_loudly_with_a_wrong_operator_norm():
    op, _, y = problem("blur", n=32)
    op.norm = lambda: 1e-6
    with pytest.raises(DivergenceError, match="tv-fista diverged at step .*op.norm"):
        run("tv-fista", y, op, iters=200)


def test_admm_diverges_loudly_when_the_operator_overflows():
    op, _, y = problem("blur", n=32)
    a, ah = op.A, op.A_adjoint
    op.A = lambda v: a(v) * 1e25
    op.A_adjoint = lambda v: ah(v) * 1e25
    with pytest.raises(DivergenceError, match="tv-admm diverged at step"):
        run("tv-admm", y, op, iters=50)


# ---------------------------------------------------------------------- Langevin
def test_langevin_is_reproducible_and_reports_a_positive_std():
    op, _, y = problem("mri", n=32)
    kw = {"iters": 30, "burn_in": 10, "n_samples": 4}
    r1 = final("langevin-tv", y, op, generator=torch.Generator().manual_seed(7), **kw)
    r2 = final("langevin-tv", y, op, generator=torch.Generator().manual_seed(7), **kw)
    r3 = final("langevin-tv", y, op, generator=torch.Generator().manual_seed(8), **kw)
    assert torch.equal(r1.x, r2.x) and torch.equal(r1.extras["std"], r2.extras["std"])
    assert torch.equal(r1.extras["samples"], r2.extras["samples"])
    assert not torch.equal(r1.x, r3.x)
    std = r1.extras["std"]
    assert r1.x.shape == std.shape == (1, 1, 32, 32) and r1.x.is_complex()
    assert r1.extras["samples"].shape == (4, 1, 32, 32)
    assert not std.is_complex() and bool(torch.isfinite(std).all()) and float(std.min()) > 0


@pytest.mark.parametrize("step_scale", [0.2, 0.9])
def test_langevin_gaussian_posterior_std(step_scale):
    """lam = 0 on denoise: the posterior is N(y, sigma^2 I) and ULA's stationary variance is
    sigma^2 * 2 / (2 - step_scale) along it."""
    sigma = 0.03
    op, _, y = problem("denoise", n=48, sigma=sigma)
    st = final("langevin-tv", y, op, lam=0.0, sigma=sigma, step_scale=step_scale,
               generator=torch.Generator().manual_seed(0))
    ratio = float(st.extras["std"].mean()) / sigma
    assert ratio == pytest.approx(math.sqrt(2 / (2 - step_scale)), rel=0.05)
    if step_scale <= 0.2:
        assert ratio == pytest.approx(1.0, rel=0.15)
    assert float((st.x - y).abs().mean()) < 0.2 * sigma


def test_langevin_mean_approaches_the_tv_solution_at_low_temperature():
    op, _, y = problem("blur", n=48)
    tv_map = final("tv-fista", y, op, iters=300).x
    st = final("langevin-tv", y, op, sigma=0.005, generator=torch.Generator().manual_seed(0))
    assert psnr(st.x, tv_map, data_range=1.0) > 30.0


def test_langevin_diverges_loudly_with_too_large_a_step():
    op, _, y = problem("denoise", n=32)
    op.norm = lambda: 1e-6
    with pytest.raises(DivergenceError, match="langevin-tv diverged.*step_scale"):
        run("langevin-tv", y, op, lam=0.0, iters=200, burn_in=10)


def test_langevin_rejects_burn_in_beyond_iters():
    op, _, y = problem("denoise", n=32)
    with pytest.raises(InputError, match="burn_in"):
        run("langevin-tv", y, op, iters=10, burn_in=10)
