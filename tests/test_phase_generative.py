"""Generative priors for phase retrieval: autograd through the intensity, csgm and dps.

The priors need only :math:`A(x) = |G E x|^2` and its gradient, taken by autograd. Along a
line, :math:`f(x + t d) = \\|A(x + t d) - y\\|^2` is a polynomial of degree 4 in :math:`t`, on
which the five-point central difference is exact: the autograd derivative must match it to
float32 rounding alone.

Figures (64 px in-domain phantoms draws from the held-out seed, one coded pattern, noise 0.01,
one CPU thread): HIO 11-14 dB (one pattern does not determine the image for it), ``csgm``
(the phantoms VAE) 26-28 dB, ``dps`` (the phantoms DRUNet) 33-40 dB, 3-4 s each; with two
patterns HIO 31-34 dB and ``dps`` 38-41 dB. The tests ask for margins of half the smallest
gap seen.
"""

from __future__ import annotations

import pytest
import torch
from helpers import run_method

import napari_invrec.api as ir
from napari_invrec.core.data.heldout import fresh_draw
from napari_invrec.core.errors import InputError
from napari_invrec.core.methods import METHODS
from napari_invrec.core.methods.starts import data_start
from napari_invrec.core.operators import NoiseParams, make_operator

EPS = torch.finfo(torch.float32).eps
#: relative rounding of one misfit evaluation, a generous bound: two FFT passes of
#: log2(N) stages and a pairwise sum, each a few eps relative to the norm
ROUND = 64 * EPS


pytestmark = pytest.mark.usefixtures("one_thread")


def _misfit(op, x, y):
    return (op.A(op.as_image(x)) - y).square().sum()


@pytest.mark.parametrize("kw", [{"mode": "coded", "n_patterns": 1},
                                {"mode": "coded", "n_patterns": 3},
                                {"mode": "oversampled"}])
def test_gradient_through_the_intensity_matches_finite_differences(kw):
    op = make_operator("phase", (24, 20), **kw)
    g = torch.Generator().manual_seed(0)
    truth = torch.rand((1, 1, 24, 20), generator=g)
    y = op.measure(op.as_image(truth), NoiseParams(model="none"))
    x = truth + 0.1 * torch.randn(truth.shape, generator=g)
    xg = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(_misfit(op, xg, y), xg)
    d = torch.randn(truth.shape, generator=g)
    d = d + grad * (d.norm() / grad.norm())  # a random direction with a clear slope
    auto = float((grad * d).sum())
    h = 0.05
    with torch.no_grad():
        f = [float(_misfit(op, x + t * h * d, y)) for t in (-2, -1, 1, 2)]
    fd = (f[0] - 8 * f[1] + 8 * f[2] - f[3]) / (12 * h)
    # exact on the quartic: what is left is rounding, 18 weighted values over 12 h, and the
    # rounding of the gradient's inner product
    tol = 18 * ROUND * max(f) / (12 * h) + ROUND * float(grad.norm() * d.norm())
    assert abs(fd - auto) <= tol, (fd, auto, tol)
    assert tol < 1e-2 * abs(auto)  # the check can fail: the bound is far below the slope


def _problem(n=64, k=1, index=0):
    x = fresh_draw("phantoms", n, index)
    op = ir.make_operator("phase", x.shape, mode="coded", n_patterns=k)
    return x, op, ir.simulate(x, op, sigma=0.01, seed=1 + index)


def test_generative_priors_are_offered_for_phase_retrieval_and_need_only_A():
    names = ir.list_methods("phase")
    assert {"csgm", "dps"} <= set(names)
    # samplers whose maths needs an adjoint, a pseudo-inverse or an SVD stay linear-only
    assert not {"score-dc", "ddrm", "ddnm", "diffpir", "pnp-admm"} & set(names)
    assert METHODS["dps"].supports("blur") and METHODS["csgm"].supports("mri")


def test_the_phase_start_is_the_magnitude_of_hio():
    x, op, y = _problem(32, k=2)
    yt = op.as_measurement(torch.from_numpy(y))[None, None]
    start = data_start(yt, op)
    _, last = run_method("hio", yt, op, generator=torch.Generator().manual_seed(0))
    assert start.is_complex() and float(start.imag.abs().max()) == 0.0
    torch.testing.assert_close(start.real, last.x.abs(), rtol=0, atol=0)


@pytest.mark.parametrize("index", [0, 1])
def test_with_one_pattern_the_priors_recover_what_hio_cannot(index):
    x, op, y = _problem(k=1, index=index)
    hio = ir.reconstruct(y, op, "hio", reference=x).metrics["psnr"]
    dps = ir.reconstruct(y, op, "dps", reference=x, denoiser="drunet-phantoms")
    csgm = ir.reconstruct(y, op, "csgm", reference=x).metrics["psnr"]
    assert dps.metrics["psnr"] > hio + 10, (dps.metrics["psnr"], hio)
    assert csgm > hio + 6, (csgm, hio)
    # the posterior mean fits the intensities better than HIO's own result
    assert dps.metrics["residual"] < ir.reconstruct(y, op, "hio").metrics["residual"]
    assert dps.std is not None and dps.std.shape == x.shape


def test_one_step_size_serves_two_patterns():
    x, op, y = _problem(k=2)
    hio = ir.reconstruct(y, op, "hio", reference=x).metrics["psnr"]
    dps = ir.reconstruct(y, op, "dps", reference=x, denoiser="drunet-phantoms").metrics["psnr"]
    assert dps > hio + 3, (dps, hio)


def test_trust_maps_of_a_phase_run_are_the_std_alone():
    """Phase retrieval has no null space: a sampler's run gets its std; the null-space maps
    are refused in one line."""
    from napari_invrec.engine.compare import hallucination_map
    from napari_invrec.engine.trust import trust_maps

    x, op, y = _problem(32, k=2)
    res = ir.reconstruct(y, op, "dps", denoiser="drunet-phantoms", steps=4, n_samples=3)
    maps = trust_maps(res.provenance, res.x, std=res.std, samples=res.samples, reference=x,
                      measurement=y)
    assert list(maps) == ["std"] and maps["std"].shape == x.shape
    with pytest.raises(InputError, match="no null space"):
        hallucination_map("null-space (vs reference)", res.provenance, res.x, x, None)
    hio = ir.reconstruct(y, op, "hio", iters=5)
    with pytest.raises(InputError, match="not linear"):
        trust_maps(hio.provenance, hio.x, reference=x, measurement=y)
