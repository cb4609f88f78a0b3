"""CPU throughput of training and inference (issue 18): batch shards on worker threads,
channels-last weights, multi-tensor Adam. Properties, not timings (those are in
``benchmarks/bench_train.py``).

Float32 tolerances are measured, not guessed: the float64 result of the same computation is
the reference, and the optimised path must be as close to it as the plain float32 path is (up
to a small factor), i.e. differ from the plain path only by float32 rounding.
"""

import threading

import numpy as np
import pytest
import torch
from torch import nn

from napari_invrec.core.denoisers import NetworkDenoiser, get_denoiser
from napari_invrec.core.errors import DivergenceError
from napari_invrec.core.models import DRUNet, load_model
from napari_invrec.core.models.layout import is_channels_last, to_channels_last
from napari_invrec.core.training import make_source, train_denoiser, train_noise2self
from napari_invrec.core.training.speed import (
    SHARD_SIZE,
    BatchLoss,
    ShardPool,
    make_adam,
    shard_slices,
    sharded_step,
)

EPS32 = float(np.finfo(np.float32).eps)


@pytest.fixture
def threads():
    """Set torch's threads in the test; restored afterwards."""
    old = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(old)


def _net(seed=0, **kw):
    torch.manual_seed(seed)
    return DRUNet(**{"width": 8, "scales": 3, "blocks": 1, **kw})


def _flat_grads(model):
    return torch.cat([p.grad.reshape(-1).double() for p in model.parameters()])


def _close_as_plain(fast, plain, ref, factor=4.0):
    """``fast`` is as close to the float64 ``ref`` as ``plain`` is (times ``factor``), plus
    a float32 ulp of the scale."""
    err_plain = float((plain.double() - ref).abs().max())
    err_fast = float((fast.double() - ref).abs().max())
    return err_fast <= factor * err_plain + EPS32 * float(ref.abs().max())


# ---------------------------------------------------------------- shards
@pytest.mark.parametrize("batch", [1, 7, 8, 9, 16, 17, 64])
def test_shards_partition_the_batch_whatever_the_threads(batch):
    sl = shard_slices(batch)
    idx = np.concatenate([np.arange(batch)[s] for s in sl])
    assert np.array_equal(idx, np.arange(batch))
    sizes = [s.stop - s.start for s in sl]
    assert max(sizes) <= SHARD_SIZE and max(sizes) - min(sizes) <= 1
    assert len(sl) == -(-batch // SHARD_SIZE)


def _denoiser_loss(model, batch=16, patch=24):
    """A :class:`BatchLoss` of the supervised denoiser's form (weighted squared error)."""

    def draw(rng):
        x = torch.from_numpy(rng.random((batch, 1, patch, patch)).astype(np.float32))
        s = torch.from_numpy(rng.uniform(0.01, 0.2, (batch, 1, 1, 1)).astype(np.float32))
        n = torch.from_numpy(rng.standard_normal(x.shape).astype(np.float32))
        return x, s, n

    def loss(x, s, n, total=None):
        err = (model(x + s * n, s) - x).square() * (0.05 / (s + 0.05)).square()
        return err.mean() if total is None else err.sum() / total

    return BatchLoss(draw, loss, lambda b: b[0].numel(), batch)


@pytest.mark.parametrize("workers", [1, 2])
def test_sharded_gradient_equals_full_batch_to_float32_rounding(workers):
    model = _net()
    bl = _denoiser_loss(model)
    rng = lambda: np.random.default_rng(7)  # noqa: E731
    loss = bl(rng())
    loss.backward()
    plain = _flat_grads(model)
    model.zero_grad(set_to_none=True)
    pool = ShardPool(workers)
    try:
        fast_loss = sharded_step(bl, rng(), list(model.parameters()), pool)
    finally:
        pool.close()
    fast = _flat_grads(model)
    for p in model.parameters():  # each gradient in its parameter's layout
        assert p.grad.stride() == p.stride()
    model.double().zero_grad(set_to_none=True)
    x, s, n = (t.double() for t in bl.draw(rng()))
    ref_loss = bl.loss(x, s, n)
    ref_loss.backward()
    ref = _flat_grads(model)
    assert _close_as_plain(fast, plain, ref)
    assert _close_as_plain(fast_loss.reshape(1), loss.detach().reshape(1),
                           ref_loss.detach().reshape(1))


def test_parameters_outside_the_loss_keep_no_gradient():
    model = nn.ModuleDict({"used": nn.Conv2d(1, 1, 3, padding=1), "unused": nn.Linear(2, 2)})
    bl = BatchLoss(lambda rng: (torch.rand(10, 1, 6, 6),),
                   lambda x, total=None: model["used"](x).sum() / (total or 1.0),
                   lambda b: 1.0, 10)
    sharded_step(bl, np.random.default_rng(0), list(model.parameters()), ShardPool(1))
    assert model["used"].weight.grad is not None and model["unused"].weight.grad is None


def test_multi_tensor_adam_is_bit_identical_to_plain_adam():
    grads = [torch.randn(8, 4, 3, 3, generator=torch.Generator().manual_seed(k)) * 1e-3
             for k in range(3)]
    out = []
    for fast in (False, True):
        p = nn.Parameter(torch.ones(8, 4, 3, 3))
        opt = make_adam([p], 1e-2, fast=fast)
        for g in grads:
            p.grad = g.clone()
            opt.step()
        out.append(p.detach().clone())
    assert torch.equal(out[0], out[1])


# ---------------------------------------------------------------- the loops
def _denoiser_run(fast, steps=3, **kw):
    gen = train_denoiser(_net(), make_source("phantoms"), steps=steps, batch=16, patch=24,
                         seed=4, val_every=2, fast=fast, **kw)
    return [(s.loss, s.val_psnr) for s in gen]


def test_fast_denoiser_loop_matches_the_plain_loop_to_rounding(threads):
    threads(2)
    plain, fast = _denoiser_run(False), _denoiser_run(True)
    np.testing.assert_allclose(np.array(fast, dtype=float), np.array(plain, dtype=float),
                               rtol=1e-4)  # Adam steps spread rounding a little


def test_fast_losses_are_bit_identical_for_any_thread_count(threads):
    """The shards depend on the batch only, and each runs single-threaded either way."""
    threads(1)
    one = _denoiser_run(True)
    threads(2)
    two = _denoiser_run(True)
    assert one == two


def test_fast_noise2self_matches_plain_and_is_reproducible(threads):
    threads(2)
    noisy = np.random.default_rng(0).random((40, 40)).astype(np.float32)

    def run(fast):
        states = list(train_noise2self(_net(), noisy, steps=3, batch=12, patch=16,
                                       sigma=0.1, val_every=3, fast=fast))
        return [s.loss for s in states] + [states[-1].extras["val_loss"]]

    fast = run(True)
    assert fast == run(True)
    np.testing.assert_allclose(fast, run(False), rtol=1e-4)


def test_fast_loop_leaves_layout_threads_and_workers_as_found(threads):
    threads(2)
    model = _net()
    gen = train_denoiser(model, make_source("atoms"), steps=20, batch=16, patch=16,
                         val_every=100)
    next(gen)
    assert is_channels_last(model)
    assert torch.get_num_threads() == 2  # between steps: the caller's setting
    assert any(t.name.startswith("invrec-shard") for t in threading.enumerate())
    next(gen)
    gen.close()
    assert all(p.is_contiguous() for p in model.parameters())
    assert torch.get_num_threads() == 2
    assert not any(t.name.startswith("invrec-shard") for t in threading.enumerate())


def test_fast_resume_reproduces_uninterrupted_losses(tmp_path, threads):
    threads(2)
    src = make_source("mixed")
    kw = {"steps": 6, "batch": 12, "patch": 16, "lr": 2e-3, "seed": 3, "val_every": 3}
    full = [s.loss for s in train_denoiser(_net(), src, **kw)]
    ckpt = tmp_path / "run.ckpt"
    first = []
    for s in train_denoiser(_net(), src, checkpoint=ckpt, checkpoint_every=3, **kw):
        first.append(s.loss)
        if s.step == 4:
            break
    resumed = [s.loss for s in train_denoiser(_net(seed=9), src, resume=ckpt, **kw)]
    assert first[:3] + resumed == full


class _NormNet(nn.Module):
    """Batch norm couples the batch's samples: the loop must not shard it."""

    noise_conditional = False

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.c = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.o = nn.Conv2d(4, 1, 3, padding=1)

    def forward(self, x):
        return x + self.o(torch.relu(self.bn(self.c(x))))


def test_batch_norm_networks_train_unsharded(threads):
    """After one step the running statistics hold one update from the whole batch (two
    shards would have updated them twice, from half batches)."""
    threads(2)
    out = {}
    for fast in (False, True):
        model = _NormNet()
        losses = [s.loss for s in train_denoiser(model, make_source("phantoms"), steps=1,
                                                 batch=16, patch=16, val_every=10, fast=fast)]
        out[fast] = (losses, model.bn.running_mean.clone(), model.bn.num_batches_tracked)
    np.testing.assert_allclose(out[True][0], out[False][0], rtol=1e-5)
    torch.testing.assert_close(out[True][1], out[False][1], rtol=1e-5, atol=1e-7)
    assert int(out[True][2]) == 1


def test_divergence_is_reported_on_the_fast_path():
    class Blow(nn.Module):
        noise_conditional = False

        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.ones(1))

        def forward(self, x):
            return x * self.w * float("inf")

    with pytest.raises(DivergenceError, match="step 1"):
        list(train_denoiser(Blow(), make_source("atoms"), steps=2, batch=16, patch=16))


# ---------------------------------------------------------------- inference
def test_channels_last_inference_equals_contiguous_to_float32_rounding():
    model = _net(seed=3)
    x = torch.rand(2, 1, 37, 50, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        plain = model(x, 0.1)
        ref = model.double()(x.double(), 0.1)
    model.float()
    den = NetworkDenoiser(model)
    fast = den(x, 0.1)
    assert is_channels_last(den.model) and fast.is_contiguous()
    assert _close_as_plain(fast, plain, ref)


def test_shipped_default_denoiser_gives_its_outputs_channels_last():
    x = torch.rand(1, 1, 64, 64, generator=torch.Generator().manual_seed(1))
    plain = load_model("drunet-general")
    with torch.no_grad():
        a = plain(x, 0.05)
    to_channels_last(plain)
    with torch.no_grad():
        b = plain(x, 0.05)
    c = get_denoiser("drunet-general")(x, 0.05)
    scale = float(a.abs().max())
    assert float((b - a).abs().max()) <= 64 * EPS32 * scale
    assert float((c - a).abs().max()) <= 64 * EPS32 * scale
