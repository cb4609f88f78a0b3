"""Plug-and-play methods with the classical denoisers (no trained weights needed)."""

from __future__ import annotations

import functools
import math

import pytest
import torch
from helpers import run_method

from napari_invrec.core.analysis import psnr
from napari_invrec.core.data import shepp_logan
from napari_invrec.core.denoisers import (
    DEFAULT_DENOISER,
    GaussianDenoiser,
    TVDenoiser,
    get_denoiser,
)
from napari_invrec.core.errors import InputError
from napari_invrec.core.linalg import normal_solver
from napari_invrec.core.methods import METHODS
from napari_invrec.core.methods.pnp import admm_balance, dpir_schedule
from napari_invrec.core.operators import NoiseParams, make_operator
from napari_invrec.core.params import make_params
from napari_invrec.core.tv import prox_tv, tv

SIGMA = 0.02


@functools.cache
def problem(op_name: str, n: int = 64):
    op = make_operator(op_name, (n, n))
    x = op.as_image(torch.from_numpy(shepp_logan(n))[None, None])
    return op, x, op.measure(x, NoiseParams(sigma=SIGMA, seed=1))


run = run_method


# Deblurring this phantom at noise 0.02 wants a weak prior (TV weight ~0.001-0.002, as for
# tv-fista in test_methods); inpainting works with the defaults.
GAIN_CASES = {
    ("pnp-pgd", "blur"): {"sigma": 0.006, "iters": 60},
    ("pnp-admm", "blur"): {"sigma": 0.006, "rho": 0.5, "iters": 30},
    ("dpir", "blur"): {"lam": 0.05, "iters": 20},
    ("red", "blur"): {"lam": 0.1, "sigma": 0.015, "iters": 60},
    ("pnp-pgd", "inpaint"): {"iters": 40}, ("pnp-admm", "inpaint"): {"iters": 20},
    ("dpir", "inpaint"): {"iters": 12}, ("red", "inpaint"): {"iters": 60},
}


@pytest.mark.parametrize("method,op_name", list(GAIN_CASES))
def test_tv_pnp_improves_psnr_over_the_adjoint(method, op_name):
    op, x, y = problem(op_name)
    base = psnr(run("adjoint", y, op)[1].x, x)
    got = psnr(run(method, y, op, denoiser="tv", **GAIN_CASES[method, op_name])[1].x, x)
    assert got > base + 1.0, (base, got)


def test_pnp_pgd_with_tv_is_proximal_gradient():
    """TV denoiser + tau = 1/||A||^2: ISTA on 0.5||Ax-y||^2 + lam TV, lam = w sigma^2 / tau."""
    op, _, y = problem("blur", 48)
    lam, tau = 0.002, 1.0 / op.norm() ** 2
    sigma = math.sqrt(lam * tau / TVDenoiser().weight)

    def objective(x):
        return float(0.5 * (op.A(x) - y).norm() ** 2 + lam * tv(x).sum())

    ref = run("tv-fista", y, op, lam=lam, iters=100)[1].x
    states, ret = run("pnp-pgd", y, op, denoiser="tv", sigma=sigma, iters=100)
    assert abs(objective(ret.x) - objective(ref)) / objective(ref) < 0.02
    first = objective(states[0].x)
    assert objective(ret.x) < first  # and it descends


def test_admm_balance_keeps_the_pair_below_its_noise_level_and_balances_above():
    assert admm_balance(0.05, 0.1, 0.0) == (0.05, 0.1)  # unknown noise: as given
    assert admm_balance(0.05, 0.1, 0.01) == (0.05, 0.1)  # below 0.05 sqrt(0.1) = 0.0158
    for noise in (0.02, 0.05, 0.1, 0.3):
        strength, rho = admm_balance(0.05, 0.1, noise)
        assert strength == max(0.05, noise) and rho >= 0.1
        # the MAP balance: the prox of (noise^2 / rho) R is a denoiser of this strength
        assert strength * math.sqrt(rho) == pytest.approx(noise, rel=1e-12)


@pytest.mark.parametrize("op_name,gain", [("denoise", 3.0), ("inpaint", 0.5)])
def test_pnp_admm_with_a_known_noise_level_beats_its_fixed_pair_on_noisy_data(op_name, gain):
    """At noise 0.1 the fixed pair (strength 0.05, rho 0.1) suits noise 0.016 and keeps most
    of the noise; balanced against the level, the default network denoiser gains 6.6-6.9 dB
    (denoise) and 1.0-1.2 dB (inpaint) on noise seeds 0-2 (margins well inside that)."""
    op = make_operator(op_name, (64, 64))
    x = op.as_image(torch.from_numpy(shepp_logan(64))[None, None])
    y = op.measure(x, NoiseParams(sigma=0.1, seed=4))
    fixed = psnr(run("pnp-admm", y, op, iters=30)[1].x, x)
    balanced = psnr(run("pnp-admm", y, op, iters=30, noise=0.1)[1].x, x)
    assert balanced > fixed + gain, (fixed, balanced)


def test_pnp_admm_leaves_its_pair_alone_when_AtA_is_not_a_projection():
    op, _, y = problem("blur", 32)
    a = run("pnp-admm", y, op, denoiser="tv", iters=5)[1].x
    b = run("pnp-admm", y, op, denoiser="tv", iters=5, noise=0.1)[1].x
    assert torch.equal(a, b)


def test_dpir_schedule_decreases_to_the_noise_level():
    op, _, y = problem("inpaint", 48)
    states, ret = run("dpir", y, op, sigma=SIGMA, sigma_max=0.2, iters=8)
    sig = [s.metrics["sigma"] for s in states]
    assert len(sig) == 8 and sig[0] == pytest.approx(0.2)
    assert all(b < a for a, b in zip(sig, sig[1:], strict=False))
    assert sig[-1] == SIGMA and ret.metrics["sigma"] == SIGMA
    ratios = [b / a for a, b in zip(sig, sig[1:], strict=False)]
    assert max(ratios) - min(ratios) < 1e-9  # geometric
    assert dpir_schedule(0.2, 0.02, 1) == [0.02]
    # a noise level above sigma_max (a noisy measurement's estimate) leaves nothing to anneal
    assert dpir_schedule(0.01, 0.02, 5) == pytest.approx([0.02] * 5)
    with pytest.raises(InputError, match="sigma > 0"):
        dpir_schedule(0.1, 0.0, 5)


@pytest.mark.parametrize("op_name", ["inpaint", "mri", "blur"])
def test_data_step_solves_the_regularised_normal_equations(op_name):
    op, _, y = problem(op_name, 32)
    b = op.A_adjoint(y) + 0.3 * torch.ones_like(op.A_adjoint(y))
    x = normal_solver(op, b, cg_iters=200)(b, 0.5, torch.zeros_like(b))
    err = (op.AtA(x) + 0.5 * x - b).norm() / b.norm()
    assert float(err) < 1e-4


def test_network_denoiser_without_weights_is_a_clear_input_error():
    op, _, y = problem("blur", 32)
    spec = METHODS["pnp-pgd"]
    params = make_params(spec.params)
    params.denoiser = "drunet-not-trained"
    with pytest.raises(InputError, match="napari-invrec train drunet-not-trained"):
        next(spec.fn(y, op, params))
    with pytest.raises(InputError, match="napari-invrec train"):
        get_denoiser("no-such-denoiser")
    for name in ("pnp-pgd", "pnp-admm", "dpir", "red"):
        assert METHODS[name].weights == (DEFAULT_DENOISER,)
        assert METHODS[name].operators is None


def test_classical_denoisers_denoise_and_handle_batches_and_complex():
    _, x, _ = problem("denoise", 48)
    gen = torch.Generator().manual_seed(0)
    noisy = x + SIGMA * torch.randn(x.shape, generator=gen)
    assert psnr(TVDenoiser()(noisy, SIGMA), x) > psnr(noisy, x) + 1.0
    r = torch.linspace(-1, 1, 48)
    smooth = torch.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / 0.3)[None, None]
    noisy_s = smooth + SIGMA * torch.randn(smooth.shape, generator=gen)
    assert psnr(GaussianDenoiser()(noisy_s, SIGMA), smooth) > psnr(noisy_s, smooth) + 1.0
    tvd = TVDenoiser()
    pair = torch.cat([noisy, noisy])
    out = tvd(pair, torch.tensor([SIGMA, 2 * SIGMA]))
    ref = prox_tv(noisy, tvd.lam(2 * SIGMA), iters=tvd.iters)[0]
    assert torch.allclose(out[1:], ref, atol=1e-5)
    z = torch.complex(noisy, noisy.flip(-1))
    for den in (TVDenoiser(), GaussianDenoiser()):
        dz = den(z, SIGMA)
        assert dz.is_complex() and dz.shape == z.shape
    g = GaussianDenoiser()(z, SIGMA)
    assert torch.allclose(g.real, GaussianDenoiser()(noisy, SIGMA), atol=1e-6)


def test_dpir_runs_40_iterations_on_mri_which_remove_the_aliasing_8_leave():
    """DPIR's deblurring schedule (8 iterations) leaves a 4x k-space mask's aliasing in
    place; the MRI default (40) gained 5.5-6.6 dB on a 64 px phantom on mask and noise seeds
    0-2 (the margin is half that)."""
    assert METHODS["dpir"].defaults_for("mri") == {"iters": 40}
    op = make_operator("mri", (64, 64), acceleration=4, seed=2)
    x = op.as_image(torch.from_numpy(shepp_logan(64))[None, None])
    y = op.measure(x, NoiseParams(sigma=0.01, seed=2))
    eight = psnr(run("dpir", y, op, sigma=0.01)[1].x.abs(), x.abs())
    default = psnr(run("dpir", y, op, sigma=0.01, iters=40)[1].x.abs(), x.abs())
    assert default > eight + 3.0, (eight, default)
