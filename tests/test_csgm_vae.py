"""The VAE generator, its training loop and the ``csgm`` method (issue 5).

A tiny VAE (width 8) is trained here for 150 steps on 32 px phantoms and registered in the
session's temporary user manifest (conftest sets NAPARI_INVREC_WEIGHTS).
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
from napari_invrec.core.errors import InputError
from napari_invrec.core.models.registry import (
    ARCHITECTURES,
    load_model,
    register_weights,
    save_model,
)
from napari_invrec.core.models.vae import VAE
from napari_invrec.core.operators import NoiseParams, make_operator
from napari_invrec.core.training import make_source
from napari_invrec.core.training.vae import kl_divergence, train_vae

N = 32
TINY = "tiny-vae"


@pytest.fixture(autouse=True, scope="module")
def _registered():
    """Register csgm when the tests run, not at collection (see test_end_to_end_dip)."""
    importlib.import_module("napari_invrec.core.methods.generative")


pytestmark = pytest.mark.usefixtures("one_thread")


def _train(model, steps=150, **kw):
    kw = {"batch": 8, "patch": N, "lr": 3e-3, "val_every": steps, "seed": 0} | kw
    states, _ = drain(train_vae(model, make_source("phantoms"), steps=steps, **kw))
    return states


@functools.cache
def trained() -> tuple[str, list]:
    """Train, save and register the tiny VAE; its name and training states."""
    torch.manual_seed(0)
    model = VAE(width=8, latent_channels=8)
    states = _train(model)
    from napari_invrec.core.models.registry import user_weights_dir

    entry = save_model(model, user_weights_dir() / f"{TINY}.pt",
                       {"name": TINY, "task": "vae", "data": "phantoms"})
    register_weights(entry)
    return TINY, states


def _phantom(seed: int = 123) -> np.ndarray:
    """A fresh random-ellipse phantom (a draw no training step used)."""
    return make_source("phantoms").sample(1, N, np.random.default_rng([seed, 7]), "cpu")[0, 0] \
        .numpy()


def _measure(op, x, sigma=0.01):
    gen = torch.Generator().manual_seed(0)
    y = op.measure(torch.from_numpy(x)[None, None], NoiseParams(model="gaussian", sigma=sigma),
                   gen)
    return y[0, 0].numpy()


# ---------------------------------------------------------------- the network
@pytest.mark.parametrize("size", [(32, 32), (37, 29), (8, 13)])
def test_vae_shapes_on_any_size(size):
    torch.manual_seed(0)
    net = VAE(width=4, latent_channels=3)
    x = torch.rand(2, 1, *size)
    rec, mu, logvar = net(x)
    lat = net.latent_shape(*size)
    assert rec.shape == x.shape
    assert mu.shape == logvar.shape == (2, *lat)
    assert lat == (3, -(-size[0] // 8), -(-size[1] // 8))
    with torch.no_grad():
        g = net.decode(torch.randn(3, *lat))
    assert g.shape == (3, 1, 8 * lat[1], 8 * lat[2])
    assert float(g.min()) >= 0.0 and float(g.max()) <= 1.0
    assert net.decode(torch.randn(1, *lat), size).shape == (1, 1, *size)


def test_vae_is_registered_small_and_saves_its_config(tmp_path):
    assert ARCHITECTURES["vae"] is VAE and VAE.kind == "vae"
    assert sum(p.numel() for p in VAE().parameters()) < 1_000_000
    assert sum(p.numel() for p in VAE(width=32).parameters()) < 1_000_000
    net = VAE(width=4, latent_channels=2)
    entry = save_model(net, tmp_path / "v.pt", {"task": "vae"})
    assert entry.architecture == "vae" and entry.kwargs == net.config


def test_kl_divergence_closed_form():
    mu = torch.tensor([[0.0, 1.0, -2.0]])
    logvar = torch.tensor([[0.0, 0.0, np.log(4.0)]])
    # 0.5 * sum(mu^2 + var - 1 - log var) = 0.5 * (0 + 1 + (4 + 4 - 1 - log 4))
    want = 0.5 * (1.0 + 7.0 - np.log(4.0))
    assert float(kl_divergence(mu, logvar)[0]) == pytest.approx(want, rel=1e-6)
    assert float(kl_divergence(torch.zeros(2, 5), torch.zeros(2, 5)).abs().max()) == 0.0


# ---------------------------------------------------------------- training
def test_train_vae_learns_phantoms():
    _, states = trained()
    first = np.mean([s.loss for s in states[:10]])
    last = np.mean([s.loss for s in states[-10:]])
    assert last < 0.7 * first
    final = states[-1]
    # the reconstruction beats the best constant image per patch by a clear margin
    assert final.val_psnr > final.extras["const_psnr"] + 3.0
    assert final.extras["val_kl"] > 0


def test_train_vae_resume_reproduces_losses(tmp_path):
    ckpt = tmp_path / "v.ckpt"
    kw = {"batch": 4, "patch": 16, "val_every": 4}
    torch.manual_seed(1)
    full = [s.loss for s in _train(VAE(width=4, latent_channels=2), steps=8, **kw)]
    torch.manual_seed(1)
    gen = train_vae(VAE(width=4, latent_channels=2), make_source("phantoms"), steps=8,
                    lr=3e-3, seed=0, checkpoint=ckpt, checkpoint_every=4, **kw)
    first = [next(gen).loss for _ in range(4)]
    gen.close()
    torch.manual_seed(99)  # another init: everything must come from the checkpoint
    resumed = _train(VAE(width=4, latent_channels=2), steps=8, resume=ckpt, **kw)
    assert resumed[0].step == 5
    assert first + [s.loss for s in resumed] == full


def test_train_vae_rejects_bad_input():
    src = make_source("phantoms")
    with pytest.raises(InputError, match="beta"):
        train_vae(VAE(width=4), src, beta=-1.0, steps=2)
    from napari_invrec.core.models import DnCNN

    with pytest.raises(InputError, match="arch vae"):
        train_vae(DnCNN(width=4, depth=2), src, steps=2)


def test_engine_refuses_vae_architecture_mismatch(tmp_path):
    from napari_invrec.engine.training import TrainSpec, prepare_training

    for task, arch in (("vae", "dncnn"), ("denoiser", "vae")):
        spec = TrainSpec(task=task, arch=arch, data="phantoms", steps=2, patch=16,
                         out=str(tmp_path / "x.pt"), register=False, device="cpu")
        with pytest.raises(InputError, match="--task vae --arch vae"):
            prepare_training(spec)


# ---------------------------------------------------------------- csgm
@pytest.mark.parametrize("op_name, kw", [("inpaint", {"keep": 0.5}), ("cs", {})])
def test_csgm_beats_the_adjoint_and_fits_the_data(op_name, kw):
    name, _ = trained()
    x = _phantom()
    op = make_operator(op_name, (N, N), **kw)
    y = _measure(op, x)
    res = api.reconstruct(y, op, "csgm", weights=name, iters=150, restarts=3, reference=x)
    hist = res.metric_history["residual"]
    assert len(hist) == 150
    # the kept image is the best so far: its residual never increases, and it fell
    assert all(b <= a + 1e-6 for a, b in zip(hist, hist[1:]))
    assert hist[-1] < 0.9 * hist[0]
    assert res.x.shape == (N, N) and np.isfinite(res.x).all()
    xa = op.A_adjoint(torch.as_tensor(y)[None, None])[0, 0].numpy()
    assert psnr(res.x, x) > psnr(xa, x) + 2.0
    assert float(res.x.min()) >= 0.0 and float(res.x.max()) <= 1.0


def test_csgm_random_init_complex_operator_and_batch():
    name, _ = trained()
    x = _phantom(5)
    op = make_operator("mri", (N, N))
    y = torch.as_tensor(_measure(op, x))[None, None].repeat(2, 1, 1, 1)
    states, last = run_method("csgm", y, op, weights=name, iters=40, restarts=2,
                              init="random", generator=torch.Generator().manual_seed(3))
    assert last.x.shape == (2, 1, N, N) and last.x.is_complex()
    assert float(last.x.imag.abs().max()) == 0.0
    assert states[-1].metrics["residual"] < 0.8 * states[0].metrics["residual"]
    again = run_method("csgm", y, op, weights=name, iters=40, restarts=2, init="random",
                       generator=torch.Generator().manual_seed(3))[1]
    assert torch.equal(again.x, last.x)  # same seed, same result


def test_csgm_more_restarts_never_fit_worse():
    """Restart 0 starts at the encoder mean in both runs and follows the same path (Adam is
    elementwise), so the best of four restarts fits the data at least as well as one."""
    name, _ = trained()
    x = _phantom(11)
    op = make_operator("inpaint", (N, N), keep=0.3)
    y = torch.as_tensor(_measure(op, x))[None, None]
    gen = torch.Generator().manual_seed(0)
    one = run_method("csgm", y, op, weights=name, iters=30, restarts=1, generator=gen)[1]
    four = run_method("csgm", y, op, weights=name, iters=30, restarts=4,
                      generator=torch.Generator().manual_seed(0))[1]
    assert four.metrics["residual"] <= one.metrics["residual"] * (1 + 1e-4)


def test_csgm_network_stays_frozen():
    name, _ = trained()
    before = {k: v.clone() for k, v in load_model(name).state_dict().items()}
    op = make_operator("inpaint", (N, N), keep=0.5)
    y = torch.as_tensor(_measure(op, _phantom()))[None, None]
    run_method("csgm", y, op, weights=name, iters=5)
    after = load_model(name).state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_csgm_missing_or_wrong_weights_are_clear_errors(tmp_path):
    op = make_operator("inpaint", (N, N), keep=0.5)
    y = _measure(op, _phantom())
    with pytest.raises(InputError, match="napari-invrec train --task vae"):
        api.reconstruct(y, op, "csgm", weights="no-such-vae", iters=2)
    from napari_invrec.core.models import DnCNN

    entry = save_model(DnCNN(width=4, depth=2), tmp_path / "d.pt",
                       {"name": "not-a-vae", "task": "denoiser"})
    register_weights(entry)
    with pytest.raises(InputError, match="needs a 'vae' network"):
        api.reconstruct(y, op, "csgm", weights="not-a-vae", iters=2)
    name, _ = trained()
    with pytest.raises(InputError, match="lr"):
        api.reconstruct(y, op, "csgm", weights=name, iters=2, lr=0.0)
