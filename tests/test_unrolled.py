"""Unrolled networks (UnrolledPGD, VarNet, NeumannNet): architectures, training, methods.

Tiny networks (width 4-8, a few stages) trained for 60-150 steps on 32 px phantom patches;
single-threaded (two cores, one busy elsewhere).
"""

import copy

import numpy as np
import pytest
import torch

import napari_invrec.core.methods.unrolled  # noqa: F401 - registers the methods
from napari_invrec import api
from napari_invrec.core.errors import InputError
from napari_invrec.core.methods.registry import METHODS
from napari_invrec.core.models.registry import load_model, register_weights, save_model
from napari_invrec.core.models.unrolled import NeumannNet, UnrolledPGD, VarNet
from napari_invrec.core.operators import NoiseParams, make_operator
from napari_invrec.core.params import make_params
from napari_invrec.core.training import SyntheticPatches, load_checkpoint, make_source
from napari_invrec.core.training.operator_nets import train_unrolled

ARCHS = {"unrolled-pgd": lambda c: UnrolledPGD(3, 8, 3, complex_images=c),
         "varnet": lambda c: VarNet(3, 4, 2, complex_images=c),
         "neumann": lambda c: NeumannNet(3, 8, 3, complex_images=c)}


pytestmark = pytest.mark.usefixtures("one_thread")


def _psnr(x, ref) -> float:
    x, ref = np.abs(np.asarray(x)), np.abs(np.asarray(ref))
    return float(10 * np.log10(1.0 / np.mean((x - ref) ** 2)))


def _residual(op, x, y) -> float:
    return float((op.A(x) - y).abs().norm() / y.abs().norm())


# ---------------------------------------------------------------- architectures
@pytest.mark.parametrize("arch", sorted(ARCHS))
@pytest.mark.parametrize("operator", ["inpaint", "mri", "mri-multicoil"])
def test_stages_shape_dtype_odd_size_batch2(arch, operator):
    kw = {"n_coils": 4} if operator == "mri-multicoil" else {}
    op = make_operator(operator, (33, 31), **kw)
    torch.manual_seed(0)
    model = ARCHS[arch](op.complex_image)
    for p in model.parameters():  # non-zero last layers: the CNNs really run
        p.data.add_(0.01 * torch.randn_like(p))
    x = op.as_image(torch.rand(2, 1, 33, 31))
    y = op.A(x)
    with torch.no_grad():
        outs = list(model.stages(y, op))
        last = model(y, op)
    assert len(outs) == model.n_stages == 3
    for o in outs:
        assert o.shape == (2, 1, 33, 31) and o.dtype == op.image_dtype
        assert torch.isfinite(o.abs()).all()
    torch.testing.assert_close(last, outs[-1])
    # batch elements are independent: element 1 alone gives the same result
    with torch.no_grad():
        one = model(y[1:], op)
    torch.testing.assert_close(one, outs[-1][1:], rtol=1e-4, atol=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_cpu_gpu_parity(arch):
    torch.manual_seed(0)
    model = ARCHS[arch](True)
    for p in model.parameters():
        p.data.add_(0.01 * torch.randn_like(p))
    op = make_operator("mri", (32, 32))
    y = op.A(op.as_image(torch.rand(2, 1, 32, 32)))
    with torch.no_grad():
        cpu = model(y, op)
        gpu = model.cuda()(y.cuda(), op.to("cuda"))
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=1e-3, atol=1e-4)


def test_untrained_networks_are_landweber_and_neumann_series():
    """Zero-initialised CNNs: UnrolledPGD is gradient descent with step 1/||A||^2 and
    NeumannNet sums the series towards the least-squares solution; both lower ||Ax - y||."""
    op = make_operator("blur", (32, 32), sigma=1.5)
    x = SyntheticPatches("phantoms").patches(2, 32, seed=5)
    y = op.A(x)
    with torch.no_grad():
        pgd = list(UnrolledPGD(5, 4, 2).stages(y, op))
        neu = list(NeumannNet(5, 4, 2).stages(y, op))
    step = 1.0 / op.norm() ** 2
    ref = op.A_adjoint(y)
    for k in range(5):
        ref = ref - step * op.A_adjoint(op.A(ref) - y)
        torch.testing.assert_close(pgd[k], ref, rtol=1e-4, atol=1e-5)
    for seq in (pgd, neu):
        res = [_residual(op, s, y) for s in seq]
        assert all(b < a for a, b in zip(res, res[1:])), res


def test_real_network_on_complex_operator_is_refused():
    op = make_operator("mri", (32, 32))
    y = op.A(op.as_image(torch.rand(1, 1, 32, 32)))
    with pytest.raises(InputError, match="complex"):
        UnrolledPGD(2, 4, 2, complex_images=False)(y, op)
    with pytest.raises(InputError, match="complex_images"):
        train_unrolled(UnrolledPGD(2, 4, 2), make_source("phantoms"),
                       lambda s, d: make_operator("mri", s, device=d), steps=2, patch=16)


# ---------------------------------------------------------------- training + method
CASES = {
    # arch: (model, operator, operator kwargs, steps, lr, required dB over the adjoint)
    "unrolled-pgd": (lambda: UnrolledPGD(4, 8, 3), "inpaint", {"keep": 0.5}, 60, 3e-3, 5.0),
    "varnet": (lambda: VarNet(3, 8, 2), "mri", {"acceleration": 4.0}, 150, 5e-3, 1.0),
    "neumann": (lambda: NeumannNet(4, 16, 3), "blur", {"sigma": 1.5}, 100, 5e-3, 1.0),
}
# dB the trained network must gain over the same network untrained (zero CNNs: Landweber /
# the plain truncated Neumann series) on fresh images
GAIN = {"unrolled-pgd": 5.0, "varnet": 1.0, "neumann": 0.3}


def _eval_psnr(model, op, seed: int) -> float:
    x = op.as_image(SyntheticPatches("phantoms").patches(8, 32, seed=seed))
    gen = torch.Generator().manual_seed(seed)
    y = op.measure(x, NoiseParams(model="gaussian", sigma=0.01), gen)
    with torch.no_grad():
        return _psnr(model(y, op).numpy(), x.numpy())


@pytest.mark.parametrize("arch", sorted(CASES))
def test_training_beats_adjoint_and_registered_method_runs(arch, tmp_path):
    make, opname, opkw, steps, lr, margin = CASES[arch]

    def factory(shape, device):
        return make_operator(opname, shape, device=device, **opkw)

    torch.manual_seed(0)
    model = make()
    untrained = copy.deepcopy(model)
    states = list(train_unrolled(model, make_source("phantoms"), factory, noise_sigma=0.01,
                                 steps=steps, batch=4, patch=32, lr=lr, val_every=steps,
                                 val_size=4))
    losses = [s.loss for s in states]
    assert np.mean(losses[-10:]) < np.mean(losses[:10])
    last = states[-1]
    assert last.val_psnr > last.extras["adjoint_psnr"] + margin, (last.val_psnr, last.extras)
    op = factory((32, 32), torch.device("cpu"))
    before, after = _eval_psnr(untrained, op, 7), _eval_psnr(model.eval(), op, 7)
    assert after > before + GAIN[arch], (before, after)

    name = f"test-{arch}-{opname}"
    entry = save_model(model, tmp_path / f"{name}.pt",
                       {"name": name, "task": "unrolled", "operator": op.spec(),
                        "metrics": {"val_psnr": last.val_psnr}})
    register_weights(entry)
    assert type(load_model(name)) is type(model)

    truth = SyntheticPatches("phantoms").patches(1, 32, seed=99)[0, 0].numpy()
    y = api.simulate(truth, op, sigma=0.01, seed=1)
    res = api.reconstruct(y, op, arch, weights=name)
    assert res.steps == list(range(1, model.n_stages + 1))
    assert len(res.metric_history["residual"]) == model.n_stages
    assert np.iscomplexobj(res.x) == op.complex_image
    # the registered method is the trained network (its quality is asserted on 8 images
    # above; one near-constant patch gave margins within 0.1 dB of any threshold across CPUs)
    with torch.no_grad():
        direct = model.eval()(op.as_measurement(torch.as_tensor(y))[None, None], op)
    direct = direct[0, 0].numpy()
    scale = float(np.abs(direct).max())
    np.testing.assert_allclose(res.x, direct, rtol=0, atol=1e-4 * scale)

    # the method runs under no_grad without leaking it to the caller
    spec = METHODS[arch]
    gen = spec.fn(op.as_measurement(torch.as_tensor(y))[None, None], op,
                  make_params(spec.params, weights=name))
    first = next(gen)
    assert torch.is_grad_enabled() and not first.x.requires_grad and first.total == len(res.steps)
    gen.close()

    # the same network for another operator family: refused, naming the trained one
    other = make_operator("cs" if opname != "blur" else "inpaint", (32, 32)) \
        if arch != "varnet" else make_operator("mri-multicoil", (32, 32), n_coils=4)
    y2 = other.A(other.as_image(torch.as_tensor(truth)[None, None]))[0, 0].numpy()
    with pytest.raises(InputError, match=f"trained for the '{opname}' operator"):
        api.reconstruct(y2, other, arch, weights=name)


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_missing_weights_say_how_to_train(arch):
    op = make_operator("mri" if arch == "varnet" else "inpaint", (32, 32))
    y = op.A(op.as_image(torch.rand(1, 1, 32, 32)))[0, 0].numpy()
    with pytest.raises(InputError, match="napari-invrec train"):
        api.reconstruct(y, op, arch, weights="no-such-unrolled-net")


def test_weights_of_another_architecture_are_refused(tmp_path):
    op = make_operator("inpaint", (32, 32))
    entry = save_model(NeumannNet(2, 4, 2), tmp_path / "neu.pt",
                       {"name": "test-neu-as-pgd", "task": "unrolled",
                        "operator": op.spec()})
    register_weights(entry)
    y = op.A(torch.rand(1, 1, 32, 32))[0, 0].numpy()
    with pytest.raises(InputError, match="needs 'unrolled-pgd' for 'unrolled'"):
        api.reconstruct(y, op, "unrolled-pgd", weights="test-neu-as-pgd")


# ---------------------------------------------------------------- resume
def test_resume_reproduces_uninterrupted_losses(tmp_path):
    def factory(shape, device):
        return make_operator("inpaint", shape, device=device)

    def model():
        torch.manual_seed(0)
        return UnrolledPGD(2, 4, 2)

    src = make_source("phantoms")
    kw = {"steps": 8, "batch": 2, "patch": 16, "lr": 3e-3, "seed": 4, "val_every": 4,
          "val_size": 2}
    full = [s.loss for s in train_unrolled(model(), src, factory, **kw)]
    ckpt = tmp_path / "run.ckpt"
    first = []
    for s in train_unrolled(model(), src, factory, checkpoint=ckpt, checkpoint_every=3, **kw):
        first.append(s.loss)
        if s.step == 5:
            break  # interrupted: the last checkpoint is at step 3
    assert load_checkpoint(ckpt)["step"] == 3
    torch.manual_seed(321)  # another initialisation: the checkpoint must overwrite it
    resumed = list(train_unrolled(UnrolledPGD(2, 4, 2), src, factory, resume=ckpt, **kw))
    assert resumed[0].step == 4
    assert first[:3] + [s.loss for s in resumed] == full
    assert len(set(full)) > 1
