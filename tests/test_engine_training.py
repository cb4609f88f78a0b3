"""The training engine (no Qt): spec checks, save + register, Noise2Self, cancel, resume."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from helpers import drain

from napari_invrec.core.errors import InputError
from napari_invrec.core.models import load_model, read_manifest, weights_names
from napari_invrec.engine.training import (
    TrainSpec,
    estimate_noise_sigma,
    run_training,
    train_command,
)

TINY_DRUNET = {"width": 8, "scales": 2, "blocks": 1}


def _spec(name: str = "eng", **kw) -> TrainSpec:
    base = {"task": "denoiser", "arch": "drunet", "arch_kwargs": TINY_DRUNET, "data": "atoms",
            "steps": 150, "batch": 8, "patch": 24, "lr": 3e-3, "sigma_min": 0.02,
            "sigma_max": 0.2, "val_every": 50, "checkpoint_every": 50, "name": name}
    return TrainSpec(**{**base, **kw})


def _psnr(a, ref):
    return 10 * np.log10(1.0 / np.mean((a - ref) ** 2))


@pytest.fixture(scope="module")
def clean_atoms():
    from napari_invrec.core.data.phantoms import atoms

    x = np.stack([atoms(64, seed=s) for s in (11, 12)]).astype(np.float32)
    return (x - x.min()) / (x.max() - x.min())


def test_supervised_denoiser_saved_registered_and_denoises(clean_atoms):
    from napari_invrec.core.denoisers import denoiser_names, get_denoiser

    states, entry = drain(run_training(_spec("eng-sup")))
    assert [s.step for s in states] == list(range(1, 151))
    assert entry.name == "eng-sup" and entry.task == "denoiser"
    assert entry.file.endswith("eng-sup.pt")
    assert "eng-sup" in read_manifest() and "eng-sup" in weights_names(task="denoiser")
    assert "eng-sup" in denoiser_names()
    m = entry.metrics
    assert m["val_psnr"] > m["noisy_psnr"] + 1.0  # it learned something on held-out patches
    assert "napari-invrec train" in entry.train_command and "--data atoms" in entry.train_command
    side = json.loads(open(entry.file + ".json").read())
    assert side["spec"]["steps"] == 150 and side["metrics"]["final_loss"] == m["final_loss"]
    assert load_model("eng-sup").config["width"] == 8
    # a fresh atoms image (never seen) with noise 0.1: the network beats the noisy input
    x = clean_atoms[0]
    y = x + 0.1 * np.random.default_rng(3).standard_normal(x.shape).astype(np.float32)
    out = get_denoiser("eng-sup")(torch.from_numpy(y)[None, None], 0.1)[0, 0].numpy()
    assert _psnr(out, x) > _psnr(y, x) + 3.0


def test_noise2self_on_arrays_learns_from_noisy_images_alone(clean_atoms):
    from napari_invrec.core.denoisers import get_denoiser

    rng = np.random.default_rng(0)
    noisy = (clean_atoms + 0.1 * rng.standard_normal(clean_atoms.shape)).astype(np.float32)
    assert abs(estimate_noise_sigma(list(noisy)) - 0.1) < 0.02
    spec = _spec("eng-n2s", task="noise2self", data="arrays:noisy", steps=200)
    _, entry = drain(run_training(spec, arrays=noisy))
    assert entry.task == "denoiser" and "val_loss" in entry.metrics
    side = json.loads(open(entry.file + ".json").read())
    assert side["training"] == "noise2self" and abs(side["data_sigma"] - 0.1) < 0.02
    assert entry.training == "noise2self" == read_manifest()["eng-n2s"].training
    out = get_denoiser("eng-n2s")(torch.from_numpy(noisy[:1])[None], 0.1)[0, 0].numpy()
    assert _psnr(out, clean_atoms[0]) > _psnr(noisy[0], clean_atoms[0]) + 3.0


def test_noise2self_on_a_generator_trains_on_its_draws_with_the_given_noise():
    from napari_invrec.core.training.datasets import make_source
    from napari_invrec.engine.training import N2S_DRAWS, noisy_draws

    draws = noisy_draws(make_source("atoms"), 24, 0.1, seed=3)
    assert len(draws) == N2S_DRAWS and draws[0].shape == (256, 256)
    assert abs(estimate_noise_sigma(draws) - 0.1) < 0.02  # the noise that was asked for
    np.testing.assert_array_equal(draws[5], noisy_draws(make_source("atoms"), 24, 0.1, 3)[5])
    _, entry = drain(run_training(_spec("eng-n2s-gen", task="noise2self", data_sigma=0.1,
                                        steps=3)))
    assert entry.training == "noise2self" and entry.metrics["data_sigma"] == 0.1
    assert "--data atoms" in entry.train_command and "--data-sigma 0.1" in entry.train_command


def test_closing_early_registers_nothing_and_resume_continues(tmp_path):
    ckpt = tmp_path / "r.ckpt"
    spec = _spec("eng-resume", steps=40, checkpoint=str(ckpt), checkpoint_every=10,
                 val_every=10)
    gen = run_training(spec)
    first = [next(gen) for _ in range(25)]
    gen.close()  # cancel
    assert "eng-resume" not in read_manifest()
    assert not (tmp_path / "eng-resume.pt").exists()
    assert ckpt.is_file()  # the step-20 checkpoint stays
    states, entry = drain(run_training(TrainSpec(**{**spec.__dict__,
                                                      "resume": str(ckpt)})))
    assert states[0].step == 21 and states[-1].step == 40
    # the resumed run repeats the losses of the interrupted one (same data, same state)
    np.testing.assert_allclose([s.loss for s in states[:5]], [s.loss for s in first[20:25]],
                               rtol=1e-5)
    assert "eng-resume" in read_manifest() and "--resume" in entry.train_command


def test_init_weights_starts_from_installed_weights_of_the_same_network():
    from napari_invrec.engine.training import prepare_training

    _, first = drain(run_training(_spec("eng-start", steps=3, val_every=100)))
    plan = prepare_training(_spec("eng-tuned", steps=3, init_weights="eng-start",
                                  register=False))
    start = load_model("eng-start")
    for (name, a), b in zip(start.state_dict().items(), plan.model.state_dict().values(),
                            strict=True):
        assert torch.equal(a, b), name  # copied exactly, not re-drawn from the seed
    assert "--init-weights eng-start" in train_command(plan.spec)
    with pytest.raises(InputError, match="same network"):
        prepare_training(_spec("eng-other", arch_kwargs={**TINY_DRUNET, "width": 4},
                               init_weights="eng-start", register=False))
    with pytest.raises(InputError, match="no-such-weights"):
        prepare_training(_spec("eng-none", init_weights="no-such-weights", register=False))


def test_the_seed_fixes_the_initial_weights_and_the_losses():
    """Two runs with one seed train identically (the provenance reproduces the network);
    another seed starts elsewhere; the caller's global torch random state is untouched."""
    from napari_invrec.engine.training import prepare_training

    def losses(seed):
        states, _ = drain(run_training(_spec("eng-seed", steps=5, seed=seed, register=False,
                                             val_every=100)))
        return [s.loss for s in states]

    torch.manual_seed(123)
    before = torch.rand(3)
    torch.manual_seed(123)
    first = prepare_training(_spec("eng-seed", seed=4, register=False))
    np.testing.assert_array_equal(torch.rand(3), before)
    second = prepare_training(_spec("eng-seed", seed=4, register=False))
    other = prepare_training(_spec("eng-seed", seed=5, register=False))
    w = [next(iter(p.model.parameters())).detach() for p in (first, second, other)]
    assert torch.equal(w[0], w[1]) and not torch.allclose(w[0], w[2])
    a, b = losses(4), losses(4)
    np.testing.assert_allclose(a, b, rtol=1e-6)
    assert not np.allclose(a, losses(5), rtol=1e-3)


@pytest.mark.parametrize("kw, match", [
    ({"task": "gan"}, "unknown training task"),
    ({"arch": "resnet9000"}, "unknown architecture"),
    ({"arch_kwargs": "{width: 4"}, "not valid JSON"),
    ({"arch_kwargs": {"widht": 4}}, "bad arch_kwargs"),
    ({"data": "arrays"}, "needs images"),
    ({"data": "imagenet"}, "unknown training data"),
    ({"task": "noise2self"}, "noisy images"),
    ({"task": "noise2self", "arch": "dncnn", "arch_kwargs": {}}, "pick drunet"),
    ({"task": "end-to-end", "operator": None}, "needs an operator"),
    ({"task": "end-to-end", "operator": "warp-drive"}, "unknown operator"),
    ({"sigma_min": 0.3, "sigma_max": 0.1}, "sigma_min <= sigma_max"),
    ({"steps": 0}, "steps must be a positive integer"),
    ({"name": "../evil"}, "weights name"),
    ({"resume": "/nonexistent/x.ckpt"}, "does not exist"),
    ({"out": "/nonexistent/dir/x.pt"}, "does not exist"),
])
def test_bad_specs_raise_input_error_at_once(kw, match):
    with pytest.raises(InputError, match=match):
        run_training(_spec(**{"name": "eng-bad", **kw}))
    assert "eng-bad" not in read_manifest()


@pytest.mark.parametrize("kwargs, match", [
    ({"width": 3000, "depth": 3}, r"above the limit of 64,000,000"),
    ({"width": 100000}, r"'width'.*integer in 0\.\.4096"),
    ({"depth": 4096}, r"more than [\d,]+ parameter tensors"),
    ({"widht": 4}, r"unknown dncnn kwargs.*'widht'"),
])
def test_arch_kwargs_the_registry_would_not_load_are_refused_before_training(
        tmp_path, monkeypatch, kwargs, match):
    """Weights trained with these kwargs could never be loaded: refused before the network is
    built for real, before any file is written."""
    from napari_invrec.core.models import ARCHITECTURES, DnCNN
    from napari_invrec.engine.training import prepare_training

    real_builds: list = []

    class Spy(DnCNN):
        def __init__(self, in_channels: int = 1, out_channels: int = 1, width: int = 32,
                     depth: int = 10) -> None:
            if torch.empty(0).device.type != "meta":
                real_builds.append((width, depth))
            super().__init__(in_channels, out_channels, width, depth)

    monkeypatch.setitem(ARCHITECTURES, "dncnn", Spy)
    spec = _spec("eng-huge", arch="dncnn", out=str(tmp_path / "w.pt"), register=False)
    with pytest.raises(InputError, match=f"bad arch_kwargs for 'dncnn':.*{match}.*--arch-kwargs"):
        prepare_training(dataclasses.replace(spec, arch_kwargs=kwargs))
    assert not real_builds and not any(tmp_path.iterdir())
    plan = prepare_training(dataclasses.replace(spec, arch_kwargs={"width": 4, "depth": 2}))
    plan.loop.close()
    assert real_builds == [(4, 2)]  # the spy sees real builds: valid kwargs still train


@pytest.mark.parametrize("arr, match", [
    (np.zeros((64, 64, 3), np.float32), "RGB"),
    (np.zeros((64, 64), np.uint8), "integer"),
    (np.full((64, 64), np.nan, np.float32), "NaN"),
    (np.zeros((16, 16), np.float32), "smaller than the patch"),
])
def test_bad_arrays_raise_input_error(arr, match):
    with pytest.raises(InputError, match=match):
        run_training(_spec("eng-bad", data="arrays"), arrays=arr)


def test_end_to_end_records_its_operator():
    spec = _spec("eng-e2e", task="end-to-end", arch="unet", arch_kwargs={"width": 4},
                 operator="blur", op_params={"sigma": 1.0}, steps=4, val_every=2)
    try:
        _, entry = drain(run_training(spec))
    except InputError as e:  # an architecture whose constructor differs is a clear error
        pytest.fail(str(e))
    assert entry.task == "end-to-end" and entry.operator["operator"] == "blur"
    assert entry.operator["params"]["sigma"] == 1.0
    assert "eng-e2e" in weights_names(task="end-to-end", operator="blur")
    assert "--operator blur" in train_command(spec)


def test_augmented_data_train_arrays_and_are_refused_where_they_would_alter_the_noise(
        tmp_path, clean_atoms, monkeypatch):
    """``+aug`` varies clean images (here a layer's arrays); Noise2Self's noisy data and
    measurements are used as they are, so it is refused there before anything is written."""
    from napari_invrec.core.training.datasets import AugmentedPatches
    from napari_invrec.engine.training import prepare_training

    spec = _spec("eng-aug", data="arrays:layer+aug", steps=2, out=str(tmp_path / "a.pt"),
                 register=False)
    from napari_invrec.core.training import loops

    sources = []
    real = loops.train_denoiser
    monkeypatch.setattr(loops, "train_denoiser",
                        lambda model, source, **kw: sources.append(source) or real(
                            model, source, **kw))
    prepare_training(spec, arrays=list(clean_atoms)).loop.close()
    assert isinstance(sources[0], AugmentedPatches) and sources[0].spec == "arrays:layer+aug"
    for data, task in (("arrays:layer+aug", "noise2self"), ("measurements:m+aug", "unrolled")):
        with pytest.raises(InputError, match=r"drop '\+aug'"):
            prepare_training(dataclasses.replace(spec, data=data, task=task),
                             arrays=list(clean_atoms) if task == "noise2self" else None)
    assert not any(tmp_path.iterdir())
