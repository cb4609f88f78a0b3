"""Analysis: running statistics, metrics against scikit-image, hallucination maps."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.metrics import normalized_root_mse, peak_signal_noise_ratio, structural_similarity

from napari_invrec.core.analysis import (
    Welford,
    compute_metrics,
    error_map,
    measurement_space_map,
    nrmse,
    null_space_difference,
    null_space_map,
    null_space_spread,
    psnr,
    residual,
    ssim,
)
from napari_invrec.core.data import shepp_logan
from napari_invrec.core.operators import NoiseParams, make_operator

N = 48


def _phantom(n: int = N) -> torch.Tensor:
    return torch.from_numpy(shepp_logan(n))[None, None]


# ---------------------------------------------------------------------- Welford
@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
@pytest.mark.parametrize("unbiased", [False, True])
def test_welford_matches_numpy_over_uneven_batches(dtype, unbiased):
    rng = np.random.default_rng(0)
    data = rng.normal(size=(37, 2, 5, 6)) * 3 + 1.5
    if dtype == np.complex128:
        data = data + 1j * (rng.normal(size=data.shape) - 4)
    w = Welford(unbiased=unbiased)
    start = 0
    for size in (1, 5, 1, 13, 17):
        w.update(torch.from_numpy(data[start:start + size]))
        start += size
    assert w.count == 37
    ddof = 1 if unbiased else 0
    var = np.var(data, axis=0, ddof=ddof)  # numpy: mean of |x - mean|^2 for complex too
    np.testing.assert_allclose(w.mean.numpy(), data.mean(0), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(w.var.numpy(), var, rtol=1e-10)
    np.testing.assert_allclose(w.std.numpy(), np.sqrt(var), rtol=1e-10)
    assert not w.var.is_complex()


def test_welford_is_stable_with_a_large_offset_in_float32():
    """E[x^2] - E[x]^2 would lose every digit here; the pairwise merge does not."""
    rng = np.random.default_rng(1)
    data = (1e4 + rng.normal(size=(200, 64))).astype(np.float32)
    w = Welford()
    for chunk in np.split(data, 20):
        w.update(chunk)
    np.testing.assert_allclose(w.std.numpy(), data.astype(np.float64).std(0), rtol=1e-3)


def test_welford_single_sample_and_empty():
    w = Welford(unbiased=True)
    with pytest.raises(ValueError, match="no samples"):
        _ = w.mean
    w.update(torch.ones(1, 3))
    assert w.count == 1 and torch.equal(w.var, torch.zeros(3))
    with pytest.raises(ValueError, match="differs"):
        w.update(torch.ones(2, 4))


# ---------------------------------------------------------------------- metrics
def _noisy_pair(seed: int = 0):
    x = _phantom()
    g = torch.Generator().manual_seed(seed)
    noisy = (x + 0.05 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    return x, noisy


def test_psnr_and_nrmse_match_skimage():
    x, noisy = _noisy_pair()
    a, b = x[0, 0].numpy().astype(np.float64), noisy[0, 0].numpy().astype(np.float64)
    assert psnr(noisy, x) == pytest.approx(peak_signal_noise_ratio(a, b, data_range=1.0),
                                           abs=1e-4)
    assert psnr(noisy, x, data_range=2.0) == pytest.approx(
        peak_signal_noise_ratio(a, b, data_range=2.0), abs=1e-4)
    assert nrmse(noisy, x) == pytest.approx(normalized_root_mse(a, b, normalization="euclidean"),
                                            rel=1e-5)
    assert psnr(x, x) == float("inf")


@pytest.mark.parametrize("data_range", [None, 1.0, 0.5])
def test_ssim_matches_skimage_gaussian(data_range):
    x, noisy = _noisy_pair(1)
    blurred = make_operator("blur", (N, N)).A(x)
    a = x[0, 0].numpy().astype(np.float64)
    for img in (noisy, blurred):
        b = img[0, 0].numpy().astype(np.float64)
        ref = structural_similarity(a, b, gaussian_weights=True, sigma=1.5,
                                    use_sample_covariance=False,
                                    data_range=1.0 if data_range is None else data_range)
        assert ssim(img, x, data_range=data_range) == pytest.approx(ref, abs=1e-3)
        # numpy in, 2-D in: same value
        assert ssim(b, a, data_range=data_range) == pytest.approx(ref, abs=1e-3)


def test_metrics_batch_reduction_and_complex_magnitude():
    x, noisy = _noisy_pair()
    batch = torch.cat([noisy, x])
    per = psnr(batch, torch.cat([x, x]), reduction="none")
    assert per.shape == (2,) and torch.isinf(per[1])
    s = ssim(batch, torch.cat([x, x]), reduction="none")
    assert s[1] == pytest.approx(1.0, abs=1e-6) and s[0] < 0.9
    phase = torch.exp(1j * torch.rand(x.shape))
    assert psnr(noisy * phase, x) == pytest.approx(psnr(noisy, x), abs=1e-3)
    assert nrmse(x * phase, x) < 1e-6


def test_residual_and_compute_metrics():
    op = make_operator("mri", (N, N))
    x = op.as_image(_phantom())
    y_clean = op.measure(x, NoiseParams(model="none"))
    y = op.measure(x, NoiseParams(sigma=0.05))
    assert residual(op, x, y_clean) < 1e-6
    expected = float((y - y_clean).abs().norm() / y.abs().norm())
    assert residual(op, x, y) == pytest.approx(expected, rel=1e-4)
    m = compute_metrics(op.A_adjoint(y), ref=x, op=op, y=y)
    assert set(m) == {"psnr", "ssim", "nrmse", "residual"}
    assert all(isinstance(v, float) for v in m.values())
    assert set(compute_metrics(x, ref=x)) == {"psnr", "ssim", "nrmse"}
    assert compute_metrics(x) == {}


# ---------------------------------------------------------------------- hallucination maps
def _inpaint_case():
    op = make_operator("inpaint", (N, N))
    x_true = _phantom()
    g = torch.Generator().manual_seed(3)
    x_hat = x_true + 0.1 * torch.randn(x_true.shape, generator=g)
    return op, x_true, x_hat, torch.from_numpy(op.mask).bool()


def test_null_space_map_for_inpainting():
    op, x_true, x_hat, measured = _inpaint_case()
    m = null_space_map(op, x_hat, x_true)[0, 0]
    d = (x_hat - x_true)[0, 0]
    assert torch.all(m[measured] == 0)
    assert torch.allclose(m[~measured], d[~measured])
    assert torch.allclose(null_space_difference(op, x_hat, x_true), m[None, None])
    assert torch.allclose(error_map(x_hat, x_true), (x_hat - x_true).abs())


@pytest.mark.parametrize("op_name", ["inpaint", "mri", "blur"])
def test_measurement_space_map_vanishes_for_data_consistent_images(op_name):
    op = make_operator(op_name, (N, N))
    x = op.as_image(_phantom())
    y = op.measure(x, NoiseParams(sigma=0.05))
    g = torch.Generator().manual_seed(4)
    junk = op.as_image(torch.randn(x.shape, generator=g))
    consistent = op.A_pinv(y) + op.null_project(junk)
    ms = measurement_space_map(op, consistent, y)
    assert float(ms.abs().max()) < 1e-4 * float(consistent.abs().max())
    # a data-inconsistent image has a non-zero map
    assert float(measurement_space_map(op, x + junk, y).abs().max()) > 0.1
    # the two maps split the error: (I - P) d + P d = d
    nsm = null_space_map(op, consistent, x)
    d = consistent - x
    assert torch.allclose(nsm + op.range_project(d), d, atol=1e-4)


def test_null_space_spread_only_where_unmeasured():
    op, x_true, _, measured = _inpaint_case()
    g = torch.Generator().manual_seed(5)
    samples = x_true + 0.2 * torch.randn((64, 1, N, N), generator=g)
    spread = null_space_spread(op, samples)
    assert spread.shape == (1, 1, N, N)
    s = spread[0, 0]
    assert torch.all(s[measured] == 0)
    assert float(s[~measured].mean()) == pytest.approx(0.2, rel=0.05)
