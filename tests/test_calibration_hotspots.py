"""Split-conformal calibration, hotspot overlay, planted hallucinations (no Qt)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

import napari_invrec.core.methods.tv  # noqa: F401 - registers langevin-tv, tv-fista
from napari_invrec import api
from napari_invrec.core.analysis.calibration import (
    bands,
    calibrate,
    conformal_quantile,
    coverage,
    nonconformity,
)
from napari_invrec.core.analysis.hallucination import null_space_difference, null_space_map
from napari_invrec.core.analysis.hotspots import HotspotParams, find_hotspots
from napari_invrec.core.errors import InputError
from napari_invrec.core.params import make_params
from napari_invrec.engine.calibration import calibrate_run
from napari_invrec.engine.trust import hotspot_layer, trust_maps

N = 32


# ----------------------------------------------------------------------------- conformal core
def test_conformal_quantile_is_the_kth_order_statistic():
    scores = torch.arange(1, 20, dtype=torch.float32)[torch.randperm(19)]  # 1..19, shuffled
    # k = ceil(20 * 0.9) = 18 -> the 18th smallest
    assert conformal_quantile(scores, 0.1) == 18.0
    assert conformal_quantile(scores, 0.5) == 10.0
    with pytest.raises(InputError, match="too few"):
        conformal_quantile(torch.ones(5), 0.1)  # k = ceil(6 * 0.9) = 6 > 5
    with pytest.raises(InputError, match="alpha"):
        conformal_quantile(scores, 1.5)


def test_split_conformal_guarantee_on_exchangeable_scores():
    # exchangeable scores: 1 - alpha <= P(new <= q) <= 1 - alpha + 1 / (n + 1)
    g = torch.Generator().manual_seed(0)
    n, trials, alpha = 19, 4000, 0.1
    s = torch.randn(trials, n + 1, generator=g).abs()
    hits = [float(s[t, -1]) <= conformal_quantile(s[t, :-1], alpha) for t in range(trials)]
    rate = float(np.mean(hits))
    assert 0.9 - 0.015 <= rate <= 0.9 + 1 / (n + 1) + 0.015


def test_scores_bands_and_coverage():
    x = torch.zeros(2, 1, 4, 4)
    mean = torch.zeros(2, 1, 4, 4)
    mean[0, 0, 0, 0] = 3.0
    std = torch.ones(2, 1, 4, 4)
    r = nonconformity(x, mean, std)
    assert r.shape == (32,) and float(r.max()) == 3.0
    r_max = nonconformity(x, mean, std, mode="max")
    assert r_max.tolist() == [3.0, 0.0]
    assert coverage(x, mean, std, 1.0) == pytest.approx(31 / 32)
    assert coverage(x, mean, std, 1.0, mode="max") == 0.5
    lo, hi = bands(mean, 2 * std, 1.5)
    assert torch.allclose(hi - lo, torch.full_like(lo, 6.0))
    # complex images: the modulus of the error
    z = torch.zeros(1, 1, 1, 1, dtype=torch.complex64)
    rc = nonconformity(z, z + (3 + 4j), torch.ones(1, 1, 1, 1))
    assert float(rc) == pytest.approx(5.0)
    cal = calibrate(x, mean, std, 0.5)
    assert cal.stated == 0.5 and cal.n_scores == 32
    with pytest.raises(InputError, match="same shape"):
        nonconformity(x, mean[:1], std)


# ----------------------------------------------------------------------------- calibration
def _langevin(op_name: str, **op_kw):
    op = api.make_operator(op_name, (N, N), device="cpu", **op_kw)
    p = make_params(api.method_params("langevin-tv"), lam=0.02, sigma=0.05, iters=60,
                    burn_in=20, n_samples=4)
    return op, p


@pytest.mark.parametrize("op_name,op_kw", [("denoise", {}), ("inpaint", {"keep": 0.6, "seed": 1})])
def test_calibrated_90_bands_cover_held_out_pairs(op_name, op_kw):
    op, p = _langevin(op_name, **op_kw)
    for seed in (0, 1, 2):
        rep = calibrate_run((op, "langevin-tv", p), "phantoms", n_pairs=16, alpha=0.1,
                            seed=seed, batch=16, noise={"model": "gaussian", "sigma": 0.05})
        assert rep.n_cal == 8 and rep.n_test == 8 and rep.stated == pytest.approx(0.9)
        assert 0.85 <= rep.measured <= 0.95, rep.summary()
        if op_name == "inpaint":
            # the raw std under-covers the unobserved pixels badly; calibration repairs it
            assert rep.raw_coverage < 0.8 and rep.q > 2 * rep.raw_q, rep.summary()


def test_calibration_refuses_bad_runs():
    op, p = _langevin("denoise")
    noise = {"model": "gaussian", "sigma": 0.05}
    tv = make_params(api.method_params("tv-fista"))
    with pytest.raises(InputError, match="not a stochastic"):
        calibrate_run((op, "tv-fista", tv), noise=noise)
    with pytest.raises(InputError, match="no noise model"):
        calibrate_run((op, "langevin-tv", p))
    with pytest.raises(InputError, match="provenance"):
        calibrate_run({"kind": "result"}, noise=noise)
    with pytest.raises(InputError, match="too few"):  # 4 images cannot state 90 % per image
        calibrate_run((op, "langevin-tv", p), n_pairs=8, mode="max", noise=noise)


def test_calibration_from_provenance_matches_tuple():
    op, p = _langevin("denoise")
    from napari_invrec.core.data import shepp_logan

    y = api.simulate(shepp_logan(N), op, sigma=0.05, seed=0)
    res = api.reconstruct(y, op, "langevin-tv", lam=0.02, sigma=0.05, iters=30, burn_in=10,
                          n_samples=4)
    res.provenance["noise"] = {"model": "gaussian", "sigma": 0.05, "photons": 100.0, "seed": 0}
    a = calibrate_run(res.provenance, n_pairs=8, batch=8)
    b = calibrate_run((op, "langevin-tv", make_params(api.method_params("langevin-tv"),
                                                       lam=0.02, sigma=0.05, iters=30,
                                                       burn_in=10, n_samples=4)),
                      n_pairs=8, batch=8, noise=res.provenance["noise"])
    assert a.q == pytest.approx(b.q) and a.measured == pytest.approx(b.measured)


# ----------------------------------------------------------------------------- hotspots
def _blob(r: float, c: float, s: float, amp: float = 1.0, n: int = N) -> np.ndarray:
    rr, cc = np.indices((n, n))
    return (amp * np.exp(-((rr - r) ** 2 + (cc - c) ** 2) / (2 * s * s))).astype(np.float32)


def test_hotspots_rank_regions_and_drop_small_ones():
    rng = np.random.default_rng(0)
    m = _blob(8, 8, 2.0, 1.0) + _blob(22, 22, 2.0, 0.5) + 0.02 * rng.standard_normal((N, N))
    m[28, 3] = 0.8  # a single hot pixel: smoothed into a tiny region, below min_area
    labels, regions = find_hotspots(m, HotspotParams(sigma=1.0, threshold="mean+k*std", k=2.0,
                                                     min_area=6))
    assert [r.label for r in regions] == [1, 2]
    assert labels.max() == 2 and labels[28, 3] == 0
    assert regions[0].sum > regions[1].sum
    assert np.hypot(*np.subtract(regions[0].centroid, (8, 8))) < 0.5
    assert np.hypot(*np.subtract(regions[1].centroid, (22, 22))) < 0.5
    assert labels[8, 8] == 1 and labels[22, 22] == 2
    assert regions[0].area == int((labels == 1).sum())
    assert sum(r.energy_fraction for r in regions) <= 1.0
    # a quantile threshold keeps about the top (1 - quantile) of the pixels
    labels_q, _ = find_hotspots(m, HotspotParams(sigma=0.0, quantile=0.9, min_area=1))
    assert 0.05 <= (labels_q > 0).mean() <= 0.11
    # signed or torch maps: the modulus is used
    labels_neg, _ = find_hotspots(torch.from_numpy(-m)[None, None],
                                  HotspotParams(sigma=1.0, threshold="mean+k*std", k=2.0,
                                                min_area=6))
    assert np.array_equal(labels_neg, labels)
    layer, _ = hotspot_layer(m, None, run_name="r", map_name="std")
    assert layer[2] == "labels" and layer[1]["features"]["index"][0] == 1


# ----------------------------------------------------------------------------- planted
def _planted(op_name: str, **op_kw):
    """Smooth phantom, its TV reconstruction plus a null-space blob, and a second TV result."""
    from napari_invrec.core.data import shepp_logan

    x = ndimage.gaussian_filter(shepp_logan(N), 1.0).astype(np.float32)
    op = api.make_operator(op_name, (N, N), device="cpu", **op_kw)
    y = api.simulate(x, op, sigma=0.01, seed=1)
    rec = api.reconstruct(y, op, "tv-fista", lam=0.003, iters=300).x
    ref = api.reconstruct(y, op, "tv-fista", lam=0.01, iters=300).x  # data-consistent reference

    def t(a):
        return op.as_image(torch.from_numpy(np.ascontiguousarray(a))[None, None])

    b = _blob(N // 3, 2 * N // 3, 2.0, 1.0)
    planted = op.null_project(t(b))
    assert float(op.A(planted).abs().max()) < 1e-4  # invisible to the measurements
    region = ndimage.binary_dilation(b > 0.05 * b.max(), iterations=2)
    x_hat = t(rec) + planted
    return {"null-space map": null_space_map(op, x_hat, t(x)),
            "null-space difference": null_space_difference(op, x_hat, t(ref))}, region


def _energy_inside(m: torch.Tensor, region: np.ndarray) -> float:
    a = m[0, 0].abs().numpy() ** 2
    return float(a[region].sum() / a.sum())


def _top_overlaps(m: torch.Tensor, region: np.ndarray) -> bool:
    labels, regions = find_hotspots(m)
    return bool(regions) and bool(((labels == 1) & region).any())


def test_planted_hallucination_inpainting_is_localised():
    maps, region = _planted("inpaint", keep=0.5, seed=3)
    for name, m in maps.items():
        assert _energy_inside(m, region) > 0.7, name
        assert _top_overlaps(m, region), name
        labels, _ = find_hotspots(m)
        # the top hotspot lies mostly inside the planted region
        assert ((labels == 1) & region).sum() > 0.8 * (labels == 1).sum(), name


def test_planted_hallucination_mri_is_localised():
    maps, region = _planted("mri", acceleration=6)
    # against a data-consistent reference the planted structure holds most of the energy
    assert _energy_inside(maps["null-space difference"], region) > 0.7
    # against ground truth the map also carries TV's own null-space error (aliasing TV did not
    # remove at 6x): the energy is spread, but the strongest hotspot is the planted one
    for m in maps.values():
        assert _top_overlaps(m, region)


def test_trust_maps_of_a_langevin_run():
    from napari_invrec.core.data import shepp_logan

    x = shepp_logan(N)
    op = api.make_operator("inpaint", (N, N), device="cpu", keep=0.6, seed=1)
    y = api.simulate(x, op, sigma=0.05, seed=0)
    res = api.reconstruct(y, op, "langevin-tv", lam=0.02, sigma=0.05, iters=30, burn_in=10,
                          n_samples=6)
    meta = {"kind": "result", "provenance": res.provenance, "arrays": res.arrays}
    maps = trust_maps(meta, res.x, std=res.std, samples=res.samples, reference=x,
                      measurement=y)
    assert set(maps) == {"std", "null-space (vs reference)", "measurement-space",
                         "null-space spread"}
    mask = np.asarray(op.mask).reshape(N, N) > 0
    spread = maps["null-space spread"]
    # observed pixels have no null-space component: no spread there
    assert float(np.abs(spread[mask]).max()) < 1e-5 < float(spread[~mask].mean())
    assert np.allclose(maps["std"], res.std)


def test_null_space_spread_of_a_complex_mri_run():
    """MRI samples are complex: the spread comes from the complex samples kept in the samples
    layer's metadata; the magnitudes alone are refused."""
    from napari_invrec.core.data import shepp_logan
    from napari_invrec.engine.layers import result_layers
    from napari_invrec.engine.trust import run_companions

    x = shepp_logan(N)
    op = api.make_operator("mri", (N, N), device="cpu", acceleration=4, seed=2)
    y = api.simulate(x, op, sigma=0.01, seed=0)
    res = api.reconstruct(y, op, "ddrm", denoiser="gaussian", steps=8, n_samples=5,
                          noise_sigma=0.01, seed=0)
    assert np.iscomplexobj(res.samples) and res.samples.shape == (5, N, N)
    layers = result_layers(res, name="run")
    samples_layer = next(t for t in layers if t[1]["name"] == "run [samples]")
    assert not np.iscomplexobj(samples_layer[0])  # the layer shows magnitudes

    class _Layer:  # what run_companions reads of a napari layer
        def __init__(self, t):
            self.data, self.metadata, self.name = t[0], t[1]["metadata"], t[1]["name"]

    comp = run_companions([_Layer(t) for t in layers], res.provenance)
    np.testing.assert_array_equal(comp["samples"], res.samples)
    meta = {"kind": "result", "provenance": res.provenance, "arrays": res.arrays}
    spread = trust_maps(meta, res.x, samples=comp["samples"])["null-space spread"]
    # by hand: the std over samples of the unmeasured k-space part, back in the image domain
    mask = np.asarray(op.mask).reshape(N, N) > 0
    from napari_invrec.core.operators.mri import fft2c, ifft2c

    k = fft2c(torch.from_numpy(res.samples))
    null = ifft2c(k * torch.from_numpy(~mask)).numpy()
    want = np.sqrt((np.abs(null - null.mean(0)) ** 2).mean(0))
    assert spread.shape == (N, N) and float(want.mean()) > 1e-3
    np.testing.assert_allclose(spread, want, rtol=1e-3, atol=1e-5)
    with pytest.raises(InputError, match="complex samples"):
        trust_maps(meta, res.x, samples=np.abs(res.samples))
