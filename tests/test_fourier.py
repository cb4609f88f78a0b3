"""Separable real FFTs over the spatial axes equal numpy's n-D real FFT (float32 rounding)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_invrec.core.fourier import irfft_spatial, rfft_spatial


@pytest.mark.parametrize("shape", [(16, 20), (3, 16, 20), (2, 9, 7)])
def test_matches_numpy_rfftn_and_inverts(shape):
    x = np.random.default_rng(0).standard_normal((2, 1, *shape)).astype(np.float32)
    f = rfft_spatial(torch.from_numpy(x), len(shape)).numpy()
    ref = np.fft.rfftn(x.astype(np.float64), axes=tuple(range(-len(shape), 0)))
    # float32 FFTs: error ~ eps32 * log2(n) * ||x||, far below 1e-4 of the largest coefficient
    assert f.shape == ref.shape
    assert np.abs(f - ref).max() <= 1e-4 * np.abs(ref).max()
    back = irfft_spatial(torch.from_numpy(f), shape).numpy()
    assert back.shape == x.shape and np.abs(back - x).max() <= 1e-5 * np.abs(x).max() * 10
