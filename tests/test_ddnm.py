"""The few-step range-null-space sampler ``ddnm``: data consistency, network evaluations,
batching, seeds, cancellation, refusal of operators without a pseudo-inverse.

Its agreement with the exact Gaussian posterior and the shared sampler contract (streams,
seeds, closing, missing weights) are tested with the other samplers in ``test_diffusion.py``.
"""

from __future__ import annotations

import math

import pytest
import torch
from test_diffusion import MU, S, _drain, _gauss_denoiser, _problem

from napari_invrec.core.denoisers import register_denoiser
from napari_invrec.core.errors import InputError
from napari_invrec.core.methods.ddnm import RCOND
from napari_invrec.core.methods.registry import METHODS, get_method
from napari_invrec.core.operators.noise import NoiseParams
from napari_invrec.core.operators.registry import OPERATORS, make_operator
from napari_invrec.core.operators.svd import SVD_FAMILIES
from napari_invrec.core.params import make_params

EPS = torch.finfo(torch.float32).eps


class Spy:
    """A Gaussian-prior denoiser that records the batch size and level of every call."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, float]] = []

    def __call__(self, x: torch.Tensor, sigma: float) -> torch.Tensor:
        self.calls.append((int(x.shape[0]), float(sigma)))
        return _gauss_denoiser(x, sigma)


def _spy() -> Spy:
    spy = Spy()
    register_denoiser("test-ddnm-spy", lambda: spy)
    return spy


# ---------------------------------------------------------------------- data consistency
@pytest.mark.parametrize("opname", ["inpaint", "mri", "denoise"])
def test_noiseless_samples_satisfy_the_data(opname: str) -> None:
    """A x = y for every sample to float32 rounding: the measured coordinates are set to the
    data at the last step, and the spectral transforms are unitary (MRI: one centred FFT and
    its inverse, error about eps log2(n^2) relative to ||y||; masks: exact)."""
    n = 16
    op, _, y = _problem(opname, sn=0.0, n=n)
    st = _drain("ddnm", y, op, denoiser="test-gauss", noise_sigma=0.0, steps=8, n_samples=6)[-1]
    samples = st.extras["samples"]
    r = op.A(samples) - y.repeat_interleave(6, dim=0)
    rel = float(r.abs().square().sum().sqrt() / (y.abs().square().sum().sqrt() * math.sqrt(6)))
    assert rel <= 10 * EPS * math.log2(n * n), rel
    if opname == "inpaint":  # the unmeasured pixels are the prior's: they differ per sample
        gap = (1 - op._mask) * (samples - samples.mean(0, keepdim=True))
        assert float(gap.abs().max()) > 0.1 * S


def test_every_prediction_is_data_consistent() -> None:
    """Noiseless: each step's corrected prediction x0_hat = A^+ y + (I - A^+ A) D(x_t)
    satisfies the data (the point of the range-null-space decomposition)."""
    op, _, y = _problem("mri", sn=0.0)
    states = _drain("ddnm", y, op, denoiser="test-gauss", noise_sigma=0.0, steps=5,
                    n_samples=3, init="measurement")
    for st in states:
        r = op.A(st.extras["samples"]) - y.repeat_interleave(3, dim=0)
        assert float(r.abs().max()) <= 1e-5 * float(y.abs().max()), st.step


def test_noiseless_blur_matches_the_truncated_pseudo_inverse() -> None:
    """Blur: frequencies with |K| > RCOND max |K| (those the operator's truncated A^+ inverts)
    carry the data, so A^+ A x = A^+ y; relative error bounded by the rounding of y amplified
    by at most 1 / RCOND."""
    op, _, y = _problem("blur", sn=0.0)
    assert op.pinv_rcond == RCOND
    st = _drain("ddnm", y, op, denoiser="test-gauss", noise_sigma=0.0, steps=6, n_samples=2)[-1]
    ref = op.A_pinv(y)
    err = op.range_project(st.extras["samples"]) - ref
    assert float(err.norm() / (ref.norm() * math.sqrt(2))) < 10 * EPS / RCOND


def test_noisy_measured_pixels_keep_a_posterior_spread() -> None:
    """Noisy inpainting: measured pixels are not clamped to the noisy data; they end with the
    spread of their posterior, std s sn / sqrt(s^2 + sn^2) (within 25 %; 128 samples x 128
    pixels, eta 0.3 ~ ancestral at 60 levels), and their mean is the posterior mean (within
    a quarter of that std; Monte-Carlo error 1/sqrt(128) = 0.09 of it; the noisy data itself
    is 0.5 of it away)."""
    sn = 0.05
    op, _, y = _problem("inpaint", sn=sn)
    st = _drain("ddnm", y, op, denoiser="test-gauss", noise_sigma=sn, init="noise",
                sigma_max=1.0, sigma_min=1e-3, steps=60, n_samples=128, eta=0.3,
                relax=1.0)[-1]
    s = st.extras["samples"]
    m = op._mask.bool().expand_as(s[:1])
    std = (s - s.mean(0, keepdim=True)).square().mean(0, keepdim=True).sqrt()[m]
    want = S * sn / math.sqrt(S * S + sn * sn)
    assert abs(float(std.square().mean().sqrt()) / want - 1) < 0.25
    mean = s.mean(0, keepdim=True)[m]
    exact = ((S * S * y + sn * sn * MU) / (S * S + sn * sn)).expand_as(s[:1])[m]
    assert float((mean - exact).square().mean().sqrt()) < 0.25 * want


# ---------------------------------------------------------------------- cost and batching
@pytest.mark.parametrize("steps", [1, 4, 12])
def test_network_evaluations_equal_the_steps(steps: int) -> None:
    """One denoiser call per level, all B * N chains in one batch (from the measurement; the
    estimate start adds its own calls, ``test_diffusion_estimate.py``)."""
    spy = _spy()
    op = make_operator("inpaint", (16, 16), keep=0.5)
    x = torch.rand(2, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    y = op.measure(x, NoiseParams(sigma=0.01), torch.Generator().manual_seed(1))
    states = _drain("ddnm", y, op, denoiser="test-ddnm-spy", steps=steps, n_samples=5,
                    noise_sigma=0.01, init="measurement")
    assert len(states) == steps
    assert [b for b, _ in spy.calls] == [2 * 5] * steps
    levels = [s for _, s in spy.calls]
    assert all(a > b for a, b in zip(levels, levels[1:]))


def test_default_is_few_steps() -> None:
    p = make_params(METHODS["ddnm"].params)
    assert p.steps <= 20
    assert METHODS["ddnm"].stochastic


def test_samples_differ_and_repeat_with_the_seed() -> None:
    op, _, y = _problem("mri", sn=0.01)
    kw = dict(denoiser="test-gauss", noise_sigma=0.01, steps=6, n_samples=4)
    a = _drain("ddnm", y, op, seed=3, **kw)[-1].extras["samples"]
    b = _drain("ddnm", y, op, seed=3, **kw)[-1].extras["samples"]
    c = _drain("ddnm", y, op, seed=4, **kw)[-1].extras["samples"]
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)
    spread = (a - a.mean(0, keepdim=True)).abs().amax(dim=(1, 2, 3))
    assert bool((spread > 1e-3).all())  # every chain differs from the mean


def test_closing_stops_within_a_step() -> None:
    spy = _spy()
    op, _, y = _problem("blur", sn=0.01)
    gen = get_method("ddnm").fn(y, op, make_params(METHODS["ddnm"].params,
                                                   denoiser="test-ddnm-spy", steps=20))
    for _ in range(3):
        next(gen)
    gen.close()
    with pytest.raises(StopIteration):
        next(gen)
    assert len(spy.calls) == 3


# ---------------------------------------------------------------------- operators
def test_registry_lists_the_pseudo_inverse_families() -> None:
    spec = get_method("ddnm")
    assert {o for o in OPERATORS if spec.supports(o)} == set(SVD_FAMILIES)


@pytest.mark.parametrize("opname", ["cs", "ct", "mri-multicoil"])
def test_refuses_operators_without_a_pseudo_inverse(opname: str) -> None:
    with pytest.raises(InputError, match="does not support"):
        get_method("ddnm", opname)
    op = make_operator(opname, (16, 16))
    y = op.A(op.as_image(torch.rand(1, 1, 16, 16)))
    gen = get_method("ddnm").fn(y, op, make_params(METHODS["ddnm"].params,
                                                   denoiser="test-gauss"))
    with pytest.raises(InputError, match="ddnm supports .*diffpir"):
        next(gen)


def test_bad_eta() -> None:
    op, _, y = _problem("inpaint", 0.01)
    with pytest.raises(InputError, match="eta"):
        _drain("ddnm", y, op, denoiser="test-gauss", eta=1.5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu() -> None:
    """Device-agnostic: the run stays on the operator's device and its posterior mean agrees
    with the CPU's (64 samples each; the two devices draw different noise)."""
    outs = []
    for dev in ("cpu", "cuda"):
        op = make_operator("mri", (16, 16), device=dev)
        x = op.as_image(torch.rand(1, 1, 16, 16, generator=torch.Generator().manual_seed(0)))
        y = op.measure(x.to(dev), NoiseParams(sigma=0.01), torch.Generator().manual_seed(1))
        spec = get_method("ddnm")
        gen = spec.fn(y, op, make_params(spec.params, denoiser="test-gauss", steps=5,
                                         n_samples=64, noise_sigma=0.01),
                      generator=torch.Generator(device=dev).manual_seed(2))
        st = list(gen)[-1]
        assert st.x.device.type == dev
        outs.append(st.x.cpu())
    assert bool(torch.isfinite(outs[1]).all())
    assert float((outs[0] - outs[1]).abs().mean()) < 0.05


@pytest.mark.parametrize("opname", ["inpaint", "mri"])
def test_without_relaxation_and_with_fresh_noise_it_is_ddrm(opname: str) -> None:
    """eta = relax = 1: measured coordinates set to y plus the noise the level lacks, the
    others re-noised afresh or stepped ancestrally: ddrm with eta = eta_b = 1, the same
    draws in the same order, so the same samples to float rounding. (Not for blur: there
    ddnm counts frequencies with |K| <= RCOND max |K| as unmeasured, ddrm as measured with a
    huge noise level.)"""
    op, _, y = _problem(opname, sn=0.02)
    kw = dict(denoiser="test-gauss", noise_sigma=0.02, steps=7, n_samples=3, eta=1.0,
              init="measurement", sigma_max=0.25)
    a = _drain("ddnm", y, op, relax=1.0, **kw)[-1].extras["samples"]
    b = _drain("ddrm", y, op, eta_b=1.0, **kw)[-1].extras["samples"]
    assert torch.allclose(a, b, atol=1e-5)
