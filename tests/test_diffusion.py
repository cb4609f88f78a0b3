"""Diffusion posterior samplers (score-dc, dps, ddrm, diffpir, ddnm) and the spectral SVDs.

The correctness test uses a Gaussian prior :math:`x \\sim N(\\mu, s^2 I)` pixelwise, whose
MMSE denoiser is :math:`D(x, \\sigma) = (s^2 x + \\sigma^2\\mu)/(s^2 + \\sigma^2)`; for a
linear operator with white noise the posterior is Gaussian and known per spectral
coordinate (pixels for denoise / inpaint, Fourier coefficients for periodic blur).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from napari_invrec.core.denoisers import (
    NetworkDenoiser,
    denoiser_names,
    get_denoiser,
    register_denoiser,
)
from napari_invrec.core.errors import InputError
from napari_invrec.core.methods import diffusion  # noqa: F401 - registers the samplers
from napari_invrec.core.methods.diffusion_steps import insert_level, sigma_schedule
from napari_invrec.core.methods.registry import get_method
from napari_invrec.core.models.drunet import DRUNet
from napari_invrec.core.operators.noise import NoiseParams
from napari_invrec.core.operators.registry import make_operator
from napari_invrec.core.operators.svd import SVD_FAMILIES, spectral_svd
from napari_invrec.core.params import make_params

MU, S = 0.5, 0.1
SAMPLERS = ("score-dc", "dps", "ddrm", "diffpir", "ddnm")


def _gauss_denoiser(x: torch.Tensor, sigma: float) -> torch.Tensor:
    return (S * S * x + sigma * sigma * MU) / (S * S + sigma * sigma)


register_denoiser("test-gauss", lambda: _gauss_denoiser)


def _tiny_net() -> NetworkDenoiser:
    torch.manual_seed(0)
    return NetworkDenoiser(DRUNet(width=4, scales=2, blocks=1))


register_denoiser("test-tiny-drunet", _tiny_net)

OPS = {"denoise": {}, "inpaint": {"keep": 0.5}, "blur": {"sigma": 1.0}, "mri": {},
       "superres": {"factor": 2}}


def _problem(name: str, sn: float = 0.05, n: int = 16):
    op = make_operator(name, (n, n), **OPS[name])
    g = torch.Generator().manual_seed(0)
    x = MU + S * torch.randn(1, 1, n, n, generator=g)
    y = op.measure(x, NoiseParams(model="gaussian", sigma=sn), torch.Generator().manual_seed(1))
    return op, x, y


def _posterior(op, y: torch.Tensor, sn: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact posterior mean and per-pixel std for the Gaussian prior (real operators)."""
    sv = spectral_svd(op)
    s = sv.s
    obs = s > 0
    prior_mean = sv.Vh(torch.full_like(op.A_adjoint(y), MU))
    tau2 = torch.where(obs, sn ** 2 / torch.where(obs, s, 1.0) ** 2, torch.ones_like(s))
    mean = torch.where(obs, (S * S * sv.observed(y) + tau2 * prior_mean) / (S * S + tau2),
                       prior_mean)
    var = torch.where(obs, S * S * tau2 / (S * S + tau2), torch.full_like(s, S * S))
    # a diagonal covariance in an orthonormal basis: pixel variance = the basis's average
    pix_var = var if sv.kind == "identity" else var.mean().expand_as(var)
    return sv.V(mean), pix_var.sqrt().expand_as(sv.V(mean))


def _drain(method: str, y, op, seed: int = 2, **kw):
    spec = get_method(method, op.name)
    p = make_params(spec.params, **kw)
    states = list(spec.fn(y, op, p, generator=torch.Generator().manual_seed(seed)))
    return states


# ---------------------------------------------------------------------- correctness
@pytest.mark.parametrize("method,opname", [("ddrm", "denoise"), ("ddrm", "inpaint"),
                                           ("ddrm", "blur"), ("ddrm", "superres"),
                                           ("score-dc", "denoise"),
                                           ("score-dc", "inpaint"), ("ddnm", "denoise"),
                                           ("ddnm", "inpaint"), ("ddnm", "blur"),
                                           ("ddnm", "superres")])
def test_matches_gaussian_posterior(method: str, opname: str) -> None:
    """Mean within 0.1 s (RMS over pixels) and pooled std within 10 % of the exact posterior,
    N = 256 samples at 16 px, noise std 0.05 = s / 2, pure-noise start at sigma_max = 10 s.
    (The Monte-Carlo error of the mean alone is about s / 16 on unmeasured pixels.)"""
    sn = 0.05
    op, _, y = _problem(opname, sn)
    # eta 0.3: at these 150 levels about the ancestral share sqrt(1 - sigma'^2 / sigma^2);
    # ddnm without over-relaxation (relax 1), the form that samples the posterior exactly
    extra = {"ddrm": {"eta": 0.3}, "ddnm": {"eta": 0.3, "relax": 1.0}}.get(method, {})
    st = _drain(method, y, op, denoiser="test-gauss", noise_sigma=sn, init="noise",
                sigma_max=1.0, sigma_min=1e-3, steps=150, n_samples=256, **extra)[-1]
    samples = st.extras["samples"]
    assert samples.shape == (256, 1, 16, 16)
    mean_t, std_t = _posterior(op, y, sn)
    emp_mean = samples.mean(0, keepdim=True)
    emp_std = (samples - emp_mean).square().mean(0, keepdim=True).sqrt()
    mean_err = float((emp_mean - mean_t).square().mean().sqrt()) / S
    prior_err = float((MU - mean_t).square().mean().sqrt()) / S
    std_ratio = float(emp_std.square().mean().sqrt() / std_t.square().mean().sqrt())
    assert prior_err > 0.2  # the data really moves the posterior away from the prior
    assert mean_err < 0.1, (mean_err, prior_err)
    assert abs(std_ratio - 1.0) < 0.1, std_ratio
    assert torch.allclose(st.x, emp_mean, atol=1e-5)  # x is the mean over samples


def test_dps_moves_toward_posterior() -> None:
    sn = 0.05
    op, _, y = _problem("inpaint", sn)
    st = _drain("dps", y, op, denoiser="test-gauss", noise_sigma=sn, init="noise",
                sigma_max=1.0, sigma_min=1e-3, steps=100, n_samples=32, zeta=1.0)[-1]
    mean_t, _ = _posterior(op, y, sn)
    err = float((st.x - mean_t).square().mean().sqrt())
    prior_err = float((MU - mean_t).square().mean().sqrt())
    assert err < 0.6 * prior_err, (err, prior_err)


def test_noise_free_projection_is_data_consistent() -> None:
    op, _, y = _problem("inpaint", sn=0.0)
    st = _drain("score-dc", y, op, denoiser="test-gauss", noise_sigma=0.0, init="noise",
                sigma_max=1.0, steps=30, n_samples=4)[-1]
    r = op.A(st.extras["samples"]) - y
    assert float(r.abs().max()) < 1e-5


# ---------------------------------------------------------------------- streams, batches
@pytest.mark.parametrize("method", SAMPLERS)
@pytest.mark.parametrize("opname", ["inpaint", "mri"])
def test_streams_shapes_and_spread(method: str, opname: str) -> None:
    op, _, y = _problem(opname, sn=0.02)
    steps = 6
    states = _drain(method, y, op, denoiser="test-gauss", noise_sigma=0.02, steps=steps,
                    n_samples=5, sigma_max=0.2, init="measurement")
    # one denoiser call per level, the last level going to sigma = 0
    assert len(states) == steps and states[-1].step == states[-1].total == steps
    for st in states:
        assert st.x.shape == (1, 1, 16, 16) and st.x.dtype == op.image_dtype
        for key in ("x_t", "x0_hat", "std"):
            assert st.extras[key].shape == st.x.shape, key
        assert st.extras["samples"].shape == (5, 1, 16, 16)
        assert {"residual", "sigma"} <= set(st.metrics)
    assert float(states[-1].extras["std"].mean()) > 1e-4
    assert math.isfinite(states[-1].metrics["residual"])


@pytest.mark.parametrize("method", SAMPLERS)
def test_network_denoiser_and_batch(method: str) -> None:
    """A real (tiny) network as the score model, B = 2 measurements x N = 3 samples."""
    op = make_operator("inpaint", (16, 16), keep=0.6)
    x = torch.rand(2, 1, 16, 16, generator=torch.Generator().manual_seed(3))
    y = op.measure(x, NoiseParams(sigma=0.02), torch.Generator().manual_seed(4))
    st = _drain(method, y, op, denoiser="test-tiny-drunet", steps=3, n_samples=3)[-1]
    assert st.x.shape == (2, 1, 16, 16) and st.extras["samples"].shape == (6, 1, 16, 16)
    assert st.extras["x_t"].shape == (2, 1, 16, 16)
    assert bool(torch.isfinite(st.x).all())


@pytest.mark.parametrize("method", SAMPLERS)
def test_seeded(method: str) -> None:
    op, _, y = _problem("inpaint", 0.02)
    kw = dict(denoiser="test-gauss", steps=5, n_samples=3)
    a = _drain(method, y, op, seed=7, **kw)[-1].extras["samples"]
    b = _drain(method, y, op, seed=7, **kw)[-1].extras["samples"]
    c = _drain(method, y, op, seed=8, **kw)[-1].extras["samples"]
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


@pytest.mark.parametrize("method", SAMPLERS)
def test_cancel_by_closing(method: str) -> None:
    calls = []

    def counting(x, sigma):
        calls.append(sigma)
        return _gauss_denoiser(x, sigma)

    register_denoiser("test-counting", lambda: counting)
    op, _, y = _problem("inpaint", 0.02)
    spec = get_method(method)
    gen = spec.fn(y, op, make_params(spec.params, denoiser="test-counting", steps=50))
    next(gen)
    next(gen)
    gen.close()
    with pytest.raises(StopIteration):
        next(gen)
    assert len(calls) == 2


@pytest.mark.parametrize("method", SAMPLERS)
def test_missing_weights(method: str) -> None:
    op, _, y = _problem("inpaint", 0.02)
    spec = get_method(method)
    gen = spec.fn(y, op, make_params(spec.params, denoiser="drunet-not-installed"))
    with pytest.raises(InputError, match="drunet-not-installed"):
        next(gen)


def test_bad_input() -> None:
    op, _, y = _problem("inpaint", 0.02)
    with pytest.raises(InputError, match="sigma_min"):
        _drain("ddrm", y, op, denoiser="test-gauss", sigma_min=0.5, sigma_max=0.2)
    with pytest.raises(InputError, match="noise_sigma"):
        _drain("score-dc", y, op, denoiser="test-gauss", noise_sigma=0.5, sigma_max=0.2)
    with pytest.raises(InputError, match="ddrm"):
        get_method("ddrm", "cs")
    with pytest.raises(InputError, match="spectral"):
        spectral_svd(make_operator("cs", (16, 16)))
    with pytest.raises(InputError, match="divisible"):
        spectral_svd(make_operator("superres", (16, 15), factor=2))


# ---------------------------------------------------------------------- SVD, schedules
@pytest.mark.parametrize("name", SVD_FAMILIES)
def test_spectral_svd(name: str) -> None:
    op = make_operator(name, (16, 12), **OPS[name])
    sv = spectral_svd(op)
    g = torch.Generator().manual_seed(0)
    x = op.as_image(torch.randn(2, 1, 16, 12, generator=g))
    if op.complex_image:
        x = x + 1j * torch.randn(2, 1, 16, 12, generator=g)
    assert torch.allclose(sv.Uh(op.A(x)), sv.s * sv.Vh(x), atol=1e-5)
    assert torch.allclose(sv.V(sv.Vh(x)), x, atol=1e-5)
    assert math.isclose(float(sv.s.max()), op.norm(), rel_tol=1e-4)
    # the basis is orthonormal: norms are kept
    assert torch.allclose(sv.Vh(x).abs().square().sum(), x.abs().square().sum(), rtol=1e-5)


def test_schedules() -> None:
    g = sigma_schedule(1.0, 0.01, 5)
    assert g[0] == 1.0 and math.isclose(g[-1], 0.01) and np.allclose(np.diff(np.log(g)),
                                                                     math.log(0.1) / 2)
    k = sigma_schedule(1.0, 0.01, 20, "karras", 7.0)
    assert math.isclose(k[-1], 0.01) and all(a > b for a, b in zip(k, k[1:]))
    mid = (0.5 * (1.0 + 0.01 ** (1 / 7))) ** 7  # halfway in sigma^(1/rho)
    assert math.isclose(sigma_schedule(1.0, 0.01, 3, "karras", 7.0)[1], mid)
    ins = insert_level(g, 0.05)
    assert 0.05 in ins and len(ins) == len(g) and all(a > b for a, b in zip(ins, ins[1:]))
    assert insert_level(g, 2.0) == g


def test_register_denoiser() -> None:
    assert "test-gauss" in denoiser_names()
    assert get_denoiser("test-gauss") is _gauss_denoiser
    with pytest.raises(InputError):
        register_denoiser("tv", lambda: _gauss_denoiser)


def test_api_result() -> None:
    import napari_invrec.api as ir

    op, x, y = _problem("inpaint", 0.02, n=16)
    res = ir.reconstruct(y[0, 0].numpy(), op, "ddrm", seed=1, denoiser="test-gauss",
                         steps=4, n_samples=3, reference=x[0, 0].numpy())
    assert res.mean is not None and res.std is not None
    assert res.samples.shape == (3, 16, 16)
    assert float(res.std.mean()) > 0
