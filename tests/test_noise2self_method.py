"""The self-supervised denoiser as a method: Noise2Self's blind-spot prediction.

Figures (the shipped ``n2s-atoms``, trained by Noise2Self on noisy atoms-generator draws with
noise std 0.1; fresh atoms draws from the held-out seed at 128 px, noise 0.1, one thread):
PSNR of the noisy image 20.0 dB, of the prediction 31.1 / 31.8 / 33.3 dB (draws 0-2); the
residual ``y - x`` has a std of 0.103-0.104 and a correlation between horizontal neighbours of
-0.04 to -0.07.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import run_method

import napari_invrec.api as ir
from napari_invrec.core.data.heldout import fresh_draw
from napari_invrec.core.errors import InputError
from napari_invrec.core.methods import METHODS
from napari_invrec.core.models import read_manifest

pytestmark = [pytest.mark.usefixtures("one_thread"),
              pytest.mark.skipif("n2s-atoms" not in read_manifest(),
                                 reason="the shipped n2s-atoms weights are not installed")]
SIGMA = 0.1


def _noisy(index=0, n=128):
    x = fresh_draw("atoms", n, index)
    op = ir.make_operator("denoise", x.shape)
    return x, op, ir.simulate(x, op, sigma=SIGMA, seed=1 + index)


def _psnr(a, ref):
    return 10 * np.log10(1.0 / np.mean((a - ref) ** 2))


def test_no_output_pixel_depends_on_its_own_noisy_value():
    _, op, y = _noisy(n=48)
    grid = 4
    base = ir.reconstruct(y, op, "noise2self", grid=grid).x
    for r, c in ((10, 21), (33, 4)):
        y2 = y.copy()
        y2[r, c] += 5.0  # an outlier at one pixel
        out = ir.reconstruct(y2, op, "noise2self", grid=grid).x
        # its own prediction is computed from an identical network input: bit for bit
        assert out[r, c] == base[r, c]
        assert np.abs(out - base).max() > 1e-3  # while its neighbours do see it


@pytest.mark.parametrize("index", [0, 1])
def test_it_denoises_held_out_images_and_leaves_white_noise(index):
    x, op, y = _noisy(index)
    res = ir.reconstruct(y, op, "noise2self", reference=x)
    assert res.metrics["psnr"] > _psnr(y, x) + 6.0, (res.metrics["psnr"], _psnr(y, x))
    noise = y - res.x
    # what it removes is the noise: its std is sigma (error of the estimate included), and
    # neighbouring values are nearly uncorrelated (the blind spot cannot copy the noise)
    assert abs(noise.std() - SIGMA) < 0.1 * SIGMA, noise.std()
    lag = np.corrcoef(noise[:, 1:].ravel(), noise[:, :-1].ravel())[0, 1]
    assert abs(lag) < 0.1, lag


def test_the_passes_fill_the_image_in_and_the_run_is_its_own_units():
    x, op, y = _noisy(n=32)
    states, _ = run_method("noise2self", torch.from_numpy(y)[None, None], op, grid=3)
    assert [s.step for s in states] == list(range(1, 10))
    changed = [int((s.x[0, 0].numpy() != y).sum()) for s in states]
    assert changed == sorted(changed) and changed[-1] > 0.99 * y.size
    scaled = ir.reconstruct(1000 * y + 500, op, "noise2self")
    assert not scaled.provenance["normalise"]["applied"]  # trained in its data's units
    assert METHODS["noise2self"].own_units and ir.list_methods("denoise").count("noise2self")


def test_supervised_weights_and_complex_data_are_refused_in_one_line():
    _, op, y = _noisy(n=32)
    with pytest.raises(InputError, match="Noise2Self"):
        ir.reconstruct(y, op, "noise2self", weights="drunet-atoms")
    with pytest.raises(InputError, match="grid"):
        ir.reconstruct(y, op, "noise2self", grid=1)
    assert "noise2self" not in ir.list_methods("blur")
