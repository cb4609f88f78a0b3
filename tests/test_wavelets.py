"""Orthogonal 2-D DWT: filters, perfect reconstruction, orthogonality, adjointness, layout."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from napari_invrec.core.errors import InputError
from napari_invrec.core.linalg import bdot
from napari_invrec.core.wavelets import (
    WAVELETS,
    dwt2,
    idwt2,
    max_levels,
    pad_symmetric,
    padded_size,
    wavelet_filters,
)

NAMES = ["haar", "db2", "db4"]
DTYPES = [torch.float32, torch.complex64]
SHAPES = [(32, 48), (64, 64)]


def _randn(shape, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    if dtype.is_complex:
        return torch.complex(torch.randn(shape, generator=g), torch.randn(shape, generator=g))
    return torch.randn(shape, generator=g)


# ---------------------------------------------------------------------- filters
@pytest.mark.parametrize("name", list(WAVELETS))
def test_filters_are_orthonormal_with_vanishing_moments(name):
    h, g = (np.array(f) for f in wavelet_filters(name))
    p = WAVELETS[name]
    assert len(h) == len(g) == 2 * p
    assert np.sum(h ** 2) == pytest.approx(1.0, abs=1e-12)
    assert np.sum(h) == pytest.approx(math.sqrt(2.0), abs=1e-12)
    # double-shift orthogonality: sum_n u_n v_{n+2k} = delta_k [u = v] for u, v in {h, g}
    even = slice(1, None, 2)  # np.correlate 'full' lags -(L-1)..L-1: odd index = even lag
    delta = (np.arange(-(2 * p - 1), 2 * p)[even] == 0).astype(float)
    assert np.allclose(np.correlate(h, h, "full")[even], delta, atol=1e-12)
    assert np.allclose(np.correlate(g, g, "full")[even], delta, atol=1e-12)
    assert np.allclose(np.correlate(h, g, "full")[even], 0.0, atol=1e-12)
    n = np.arange(2 * p, dtype=np.float64)
    for j in range(p):  # p vanishing moments: g kills polynomials of degree < p
        assert abs(np.sum(g * n ** j)) < 1e-9 * max(1.0, float(np.sum(np.abs(g) * n ** j)))


def test_filters_match_the_closed_forms():
    s2 = math.sqrt(2.0)
    assert wavelet_filters("haar")[0] == pytest.approx((1 / s2, 1 / s2), abs=1e-15)
    assert wavelet_filters("db1") == wavelet_filters("haar")
    s3 = math.sqrt(3.0)
    db2 = np.array([1 + s3, 3 + s3, 3 - s3, 1 - s3]) / (4 * s2)
    assert np.allclose(wavelet_filters("db2")[0], db2, atol=1e-14)


def test_unknown_wavelet_is_an_input_error():
    with pytest.raises(InputError, match="unknown wavelet 'db3'"):
        wavelet_filters("db3")
    with pytest.raises(InputError, match="unknown wavelet"):
        dwt2(torch.zeros(1, 1, 8, 8), "sym4", 1)


# ---------------------------------------------------------------------- the transform
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("levels", [1, 2, 3])
@pytest.mark.parametrize("name", NAMES)
def test_perfect_reconstruction_and_orthogonality(name, levels, dtype, shape):
    x = _randn((2, 3, *shape), dtype)
    c = dwt2(x, name, levels)
    assert c.shape == x.shape and c.dtype == x.dtype
    assert float((idwt2(c, name, levels) - x).abs().max()) < 1e-5
    assert float(c.norm() / x.norm()) == pytest.approx(1.0, abs=1e-5)
    # W W^T = I as well (W is square and orthogonal)
    assert float((dwt2(idwt2(x, name, levels), name, levels) - x).abs().max()) < 1e-5


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", NAMES)
def test_adjointness(name, dtype):
    x = _randn((3, 1, 32, 48), dtype, seed=1)
    c = _randn((3, 1, 32, 48), dtype, seed=2)
    lhs = bdot(dwt2(x, name, 3), c)
    rhs = bdot(x, idwt2(c, name, 3))
    assert torch.allclose(lhs, rhs, rtol=1e-4, atol=1e-4 * float(x.norm() * c.norm()) / 32)


def test_complex_transform_is_the_transform_of_real_and_imaginary_parts():
    z = _randn((1, 2, 16, 32), torch.complex64)
    c = dwt2(z, "db4", 2)
    assert torch.allclose(c.real, dwt2(z.real, "db4", 2), atol=1e-6)
    assert torch.allclose(c.imag, dwt2(z.imag, "db4", 2), atol=1e-6)


def test_batch_elements_are_transformed_independently():
    x = _randn((4, 2, 32, 32), torch.float32)
    both = dwt2(x, "db2", 2)
    for i in range(4):
        assert torch.allclose(both[i:i + 1], dwt2(x[i:i + 1], "db2", 2), atol=1e-6)


def test_haar_one_level_mallat_layout():
    x = torch.tensor([[1.0, 2.0], [3.0, 5.0]])[None, None]
    a, b, c, d = 1.0, 2.0, 3.0, 5.0
    expect = torch.tensor([[a + b + c + d, a - b + c - d],
                           [a + b - c - d, a - b - c + d]]) / 2
    assert torch.allclose(dwt2(x, "haar", 1)[0, 0], expect, atol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_constant_image_lives_in_the_approximation_band(name):
    levels = 3
    x = torch.full((1, 1, 32, 48), 0.7)
    c = dwt2(x, name, levels)
    band = c[..., :32 >> levels, :48 >> levels]
    assert torch.allclose(band, torch.full_like(band, 0.7 * 2 ** levels), atol=1e-5)
    detail = c.clone()
    detail[..., :32 >> levels, :48 >> levels] = 0
    assert float(detail.abs().max()) < 1e-5


@pytest.mark.parametrize("name", ["db2", "db4"])
def test_smooth_image_has_small_fine_details(name):
    """A smooth periodic image is nearly annihilated by the high-pass filters."""
    i = torch.arange(64, dtype=torch.float64)
    x = (torch.sin(2 * math.pi * i / 64)[:, None] * torch.cos(2 * math.pi * i / 64)[None, :])
    c = dwt2(x[None, None], name, 1)
    fine = torch.cat([c[..., :32, 32:].flatten(), c[..., 32:, :].flatten()])
    assert float(fine.norm() / c.norm()) < 1e-2


def test_sizes_not_divisible_are_an_input_error_naming_the_fix():
    with pytest.raises(InputError, match="divisible by 8.*at most 0 levels"):
        dwt2(torch.zeros(1, 1, 33, 31), "haar", 3)
    with pytest.raises(InputError, match="at most 2 levels"):
        idwt2(torch.zeros(1, 1, 12, 20), "haar", 3)
    assert max_levels(64, 48) == 4 and max_levels(33, 32) == 0


def test_symmetric_padding():
    x = torch.arange(15.0).view(1, 1, 3, 5)
    p = pad_symmetric(x, 8, 8)
    assert p.shape == (1, 1, 8, 8)
    assert torch.equal(p[..., :3, :5], x)
    assert torch.equal(p[0, 0, 0, 5:], torch.tensor([4.0, 3.0, 2.0]))  # mirror at the far end
    assert torch.equal(p[0, 0, 3:, 0], torch.tensor([10.0, 5.0, 0.0, 0.0, 5.0]))  # period 2H
    assert (padded_size(33, 3), padded_size(32, 3), padded_size(1, 2)) == (40, 32, 4)
    z = pad_symmetric(torch.complex(x, -x), 4, 8)
    assert z.is_complex() and torch.equal(z[..., :3, :5].imag, -x)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("dtype", DTYPES)
def test_cuda_matches_cpu(dtype):
    x = _randn((2, 1, 32, 48), dtype)
    cpu = dwt2(x, "db4", 3)
    gpu = dwt2(x.cuda(), "db4", 3)
    assert gpu.device.type == "cuda"
    assert torch.allclose(gpu.cpu(), cpu, atol=1e-5)
    assert torch.allclose(idwt2(gpu, "db4", 3).cpu(), x, atol=1e-5)
