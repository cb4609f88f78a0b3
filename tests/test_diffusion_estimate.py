"""The samplers' ``init="estimate"`` start: a plug-and-play (DPIR) estimate computed once per
measurement with the score model, yielded as the run's first steps, then the chains diffuse
from it (few levels, the few-step default of ``ddnm``)."""

from __future__ import annotations

import math

import pytest
import torch
from test_ddnm import _spy
from test_diffusion import _drain, _problem

from napari_invrec.core.errors import InputError
from napari_invrec.core.methods.registry import METHODS, get_method
from napari_invrec.core.operators.registry import make_operator
from napari_invrec.core.params import make_params

EPS = torch.finfo(torch.float32).eps
SAMPLERS = ("ddnm", "ddrm", "diffpir", "score-dc", "dps")


@pytest.mark.parametrize("method", SAMPLERS)
def test_the_estimate_is_one_chain_then_the_levels_batch_the_samples(method: str) -> None:
    """``estimate_iters`` denoiser calls on the B images, then one call per level on all B * N
    chains (dps: its own calls per level); the steps count both and the first ones show the
    shared estimate (every sample equal to it, std 0)."""
    spy = _spy()
    op, _, y = _problem("inpaint", sn=0.01)
    iters, levels, n = 6, 4, 3
    states = _drain(method, y, op, denoiser="test-ddnm-spy", init="estimate",
                    estimate_iters=iters, steps=levels, n_samples=n, noise_sigma=0.01)
    assert [s.step for s in states] == list(range(1, len(states) + 1))
    assert all(s.total == len(states) for s in states)
    assert len(states) >= iters + levels
    assert [b for b, _ in spy.calls[:iters]] == [1] * iters
    assert all(b == n for b, _ in spy.calls[iters:])
    for st in states[:iters]:
        assert float(st.extras["std"].abs().max()) == 0.0
        assert torch.equal(st.extras["samples"], st.x.repeat_interleave(n, dim=0))
    assert float(states[-1].extras["std"].max()) > 0  # the chains part after the estimate


def test_the_estimate_is_dpir_with_the_score_model() -> None:
    """The shared start is DPIR's iteration (the same code path): its last lead step equals a
    ``dpir`` run at its defaults with the score model, ending at max(noise_sigma, sigma_min),
    bit for bit."""
    op, _, y = _problem("blur", sn=0.02)
    iters = 7
    states = _drain("ddnm", y, op, denoiser="test-gauss", init="estimate",
                    estimate_iters=iters, steps=3, n_samples=2, noise_sigma=0.02,
                    sigma_min=0.005)
    ref = _drain("dpir", y, op, denoiser="test-gauss", sigma=0.02, iters=iters)
    assert torch.equal(states[iters - 1].x, ref[-1].x)
    assert [s.metrics["sigma"] for s in states[:iters]] == [s.metrics["sigma"] for s in ref]


@pytest.mark.parametrize("opname", ["inpaint", "mri"])
def test_noiseless_samples_from_the_estimate_satisfy_the_data(opname: str) -> None:
    """ddnm keeps A x = y for every sample (to float32 rounding, as from the measurement
    start) when the chains start from the estimate."""
    n = 16
    op, _, y = _problem(opname, sn=0.0, n=n)
    st = _drain("ddnm", y, op, denoiser="test-gauss", noise_sigma=0.0, init="estimate",
                estimate_iters=5, steps=4, n_samples=4)[-1]
    r = op.A(st.extras["samples"]) - y.repeat_interleave(4, dim=0)
    rel = float(r.abs().square().sum().sqrt() / (y.abs().square().sum().sqrt() * 2))
    assert rel <= 10 * EPS * math.log2(n * n), rel


def test_the_seed_repeats_and_cancelling_stops_in_the_estimate() -> None:
    op, _, y = _problem("mri", sn=0.01)
    kw = dict(denoiser="test-gauss", noise_sigma=0.01, init="estimate", estimate_iters=4,
              steps=3, n_samples=3)
    a = _drain("ddnm", y, op, seed=5, **kw)[-1].extras["samples"]
    b = _drain("ddnm", y, op, seed=5, **kw)[-1].extras["samples"]
    assert torch.equal(a, b)
    spy = _spy()
    spec = get_method("ddnm")
    gen = spec.fn(y, op, make_params(spec.params, **{**kw, "denoiser": "test-ddnm-spy"}))
    next(gen)
    next(gen)
    gen.close()
    assert len(spy.calls) == 2


def test_ddnm_starts_from_the_estimate_by_default() -> None:
    p = make_params(METHODS["ddnm"].params)
    assert p.init == "estimate"


def test_a_non_linear_operator_is_refused() -> None:
    op = make_operator("phase", (8, 8), mode="coded", n_patterns=2)
    y = op.A(op.as_image(torch.rand(1, 1, 8, 8)))
    spec = get_method("dps")
    gen = spec.fn(y, op, make_params(spec.params, denoiser="test-gauss", init="estimate"))
    with pytest.raises(InputError, match="linear operator"):
        next(gen)
