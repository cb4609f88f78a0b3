"""Training machinery: patch sources, loops (generators), checkpoints/resume, the train CLI.

Uses tiny conv nets defined here, so nothing depends on the shipped architectures.
"""


import numpy as np
import pytest
import torch
from torch import nn

from napari_invrec.core.data import atoms
from napari_invrec.core.errors import InputError
from napari_invrec.core.training import (
    ALLOWED_SKIMAGE_IMAGES,
    ArrayPatches,
    FolderPatches,
    ImagePatches,
    SyntheticPatches,
    load_checkpoint,
    make_source,
    train_denoiser,
    train_end_to_end,
    train_noise2self,
)
from napari_invrec.core.training.loops import blind_spot_input, blind_spot_predict

pytestmark = pytest.mark.usefixtures("one_thread")


class Tiny(nn.Module):
    """Two 3x3 convolutions; ``residual`` adds the input (x + g(x))."""

    def __init__(self, cin: int = 1, width: int = 16, residual: bool = True) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(cin, width, 3, padding=1)
        self.c2 = nn.Conv2d(width, 1, 3, padding=1)
        self.residual = residual
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        g = self.c2(torch.relu(self.c1(x)))
        return x + g if self.residual else g


class TinyCond(Tiny):
    """Noise-conditional: the sigma map is a second input channel."""

    def __init__(self) -> None:
        super().__init__(cin=2)

    def forward(self, x, sigma):
        self.calls += 1
        s = sigma.expand(x.shape[0], 1, *x.shape[-2:])
        return x + self.c2(torch.relu(self.c1(torch.cat([x, s], 1))))


def _model(cls=TinyCond, **kw):
    torch.manual_seed(0)
    return cls(**kw)


def _psnr(a, b):
    return 10 * np.log10(1.0 / np.mean((np.asarray(a) - np.asarray(b)) ** 2))


# ---------------------------------------------------------------- datasets
@pytest.mark.parametrize("spec", ["atoms", "phantoms", "mixed", "general", "skimage:camera,coffee"])
def test_patches_shape_range_determinism(spec):
    src = make_source(spec)
    a = src.sample(6, 24, np.random.default_rng(3))
    b = src.sample(6, 24, np.random.default_rng(3))
    c = src.sample(6, 24, np.random.default_rng(4))
    assert a.shape == (6, 1, 24, 24) and a.dtype == torch.float32
    assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0
    assert torch.equal(a, b) and not torch.equal(a, c)
    # variety: the patches are not flat on average and not copies of one another
    assert float(a.flatten(1).std(1).mean()) > 0.03
    assert float((a[0] - a[1]).abs().max()) > 0.05


def test_natural_uses_every_allowed_image_and_gray():
    src = make_source("natural")
    assert isinstance(src, ImagePatches) and src.names == list(ALLOWED_SKIMAGE_IMAGES)
    assert all(im.ndim == 2 and im.dtype == np.float32 and 0 <= im.min() <= im.max() <= 1
               for im in src.images)
    # colour astronaut became luminance, not one channel
    from skimage import data

    rgb = data.astronaut().astype(np.float64) / 255
    lum = rgb @ np.array([0.2125, 0.7154, 0.0721])
    np.testing.assert_allclose(src.images[0], lum, atol=1e-5)


@pytest.mark.parametrize("spec", ["skimage:brain", "skimage:camera,horse", "imagenet"])
def test_disallowed_or_unknown_data_is_refused(spec):
    with pytest.raises(InputError, match="not allowed|unknown training data"):
        make_source(spec)


def test_augmentation_covers_the_dihedral_group():
    img = np.arange(64, dtype=np.float32).reshape(8, 8) / 64
    src = ArrayPatches([img])
    rng = np.random.default_rng(0)
    seen = {tuple(src.sample(1, 8, rng)[0, 0].flatten().tolist()) for _ in range(200)}
    assert len(seen) == 8  # all 8 flips/rotations of an asymmetric image, nothing else


def test_folder_and_array_sources(tmp_path):
    import tifffile

    np.save(tmp_path / "a.npy", np.linspace(0, 5, 40 * 40).reshape(40, 40))
    tifffile.imwrite(tmp_path / "b.tif", (np.random.default_rng(0).random((32, 48)) * 255)
                     .astype(np.uint8))
    (tmp_path / "notes.txt").write_text("ignored")
    src = make_source(f"folder:{tmp_path}")
    assert isinstance(src, FolderPatches) and [f.name for f in src.files] == ["a.npy", "b.tif"]
    p = src.sample(4, 16, np.random.default_rng(0))
    assert p.shape == (4, 1, 16, 16) and 0 <= float(p.min()) <= float(p.max()) <= 1
    with pytest.raises(InputError, match="larger than"):
        src.sample(1, 40, np.random.default_rng(0))
    with pytest.raises(InputError, match="does not exist"):
        FolderPatches(tmp_path / "nope")
    # a (N, H, W) stack is N images; raw mode keeps intensities
    stack = np.full((3, 20, 20), 7.0, np.float32)
    assert len(ArrayPatches(stack, normalize=False).images) == 3
    assert float(ArrayPatches(stack, normalize=False).patches(2, 8).max()) == 7.0


def test_synthetic_source_kinds():
    with pytest.raises(InputError, match="kind"):
        SyntheticPatches("faces")
    a = SyntheticPatches("atoms", seed=1).patches(4, 32)
    assert torch.equal(a, SyntheticPatches("atoms", seed=1).patches(4, 32))
    assert not torch.equal(a, SyntheticPatches("atoms", seed=2).patches(4, 32))


# ---------------------------------------------------------------- loops
def test_train_denoiser_learns_and_beats_noisy_input():
    model = _model()
    states = list(train_denoiser(model, make_source("mixed"), sigma_range=(0.05, 0.2),
                                 steps=100, batch=8, patch=16, lr=3e-3, val_every=50))
    losses = [s.loss for s in states]
    assert [s.step for s in states] == list(range(1, 101)) and states[-1].total == 100
    assert np.mean(losses[-10:]) < 0.8 * np.mean(losses[:10])
    last = states[-1]
    assert last.val_psnr > last.extras["noisy_psnr"] + 1.0
    assert states[-1].lr < states[0].lr  # cosine decay
    assert states[48].val_psnr is None and states[49].val_psnr is not None


def test_log_uniform_noise_levels_for_score_models():
    """A score model's levels span decades: log-uniform draws, geometric validation levels,
    weighted loss; it learns, and a zero lower level is refused."""
    with pytest.raises(InputError, match="sigma_min > 0"):
        train_denoiser(_model(), make_source("mixed"), sigma_range=(0.0, 1.0),
                       sigma_dist="log-uniform")
    with pytest.raises(InputError, match="sigma_dist"):
        train_denoiser(_model(), make_source("mixed"), sigma_dist="normal")
    states = list(train_denoiser(_model(), make_source("mixed"), sigma_range=(0.01, 1.0),
                                 sigma_dist="log-uniform", steps=100, batch=8, patch=16,
                                 lr=3e-3, val_every=50))
    last = states[-1]
    assert last.val_psnr > last.extras["noisy_psnr"] + 1.0
    losses = [s.loss for s in states]
    assert np.mean(losses[-10:]) < 0.8 * np.mean(losses[:10])
    # the weight (0.05 / (sigma + 0.05))^2 <= 1 keeps the loss on the scale of a plain MSE
    assert max(losses) < 1.0


def test_same_seed_same_losses_and_other_seed_differs():
    def run(seed):
        g = train_denoiser(_model(), make_source("phantoms"), steps=8, batch=4, patch=16,
                           seed=seed, val_every=4)
        return [s.loss for s in g]

    assert run(5) == run(5)
    assert run(5) != run(6)


def test_resume_reproduces_uninterrupted_losses(tmp_path):
    src = make_source("mixed")
    kw = {"steps": 12, "batch": 4, "patch": 16, "lr": 2e-3, "seed": 3, "val_every": 5}
    full = [s.loss for s in train_denoiser(_model(), src, **kw)]
    ckpt = tmp_path / "run.ckpt"
    first = []
    for s in train_denoiser(_model(), src, checkpoint=ckpt, checkpoint_every=5, **kw):
        first.append(s.loss)
        if s.step == 7:
            break  # interrupted after step 7: the last checkpoint is at step 5
    assert load_checkpoint(ckpt)["step"] == 5
    torch.manual_seed(123)  # a differently initialised model: the checkpoint must overwrite it
    resumed = list(train_denoiser(TinyCond(), src, resume=ckpt, **kw))
    assert resumed[0].step == 6
    assert first[:5] + [s.loss for s in resumed] == full


def test_resume_from_another_task_is_refused(tmp_path):
    ckpt = tmp_path / "n2s.ckpt"
    noisy = np.random.default_rng(0).random((32, 32)).astype(np.float32)
    list(train_noise2self(_model(Tiny), noisy, steps=2, batch=2, patch=16, checkpoint=ckpt))
    with pytest.raises(InputError, match="noise2self"):
        train_denoiser(_model(Tiny), make_source("atoms"), steps=4, batch=2, patch=16,
                       resume=ckpt)


def test_close_stops_training():
    model = _model()
    gen = train_denoiser(model, make_source("atoms"), steps=50, batch=2, patch=16,
                         val_every=1000)
    for s in gen:
        if s.step == 3:
            break
    gen.close()
    calls = model.calls
    w = model.c1.weight.detach().clone()
    with pytest.raises(StopIteration):
        next(gen)
    assert calls == 3 and torch.equal(model.c1.weight, w)


def test_bad_arguments_raise_at_call():
    with pytest.raises(InputError, match="steps"):
        train_denoiser(_model(), make_source("atoms"), steps=0)
    with pytest.raises(InputError, match="sigma_range"):
        train_denoiser(_model(), make_source("atoms"), sigma_range=(0.2, 0.1))
    with pytest.raises(InputError, match="sigma"):
        train_noise2self(_model(), np.zeros((32, 32), np.float32), steps=2)  # conditional


def test_blind_spot_input_hides_the_masked_pixels():
    x = torch.rand(2, 1, 12, 12)
    j = torch.zeros_like(x, dtype=torch.bool)
    j[:, :, 5, 6] = True
    x2 = x.clone()
    x2[:, :, 5, 6] += 10.0  # changing a masked pixel must not change the blind-spot input
    a, b = blind_spot_input(x, j), blind_spot_input(x2, j)
    assert torch.equal(a, b)
    assert torch.equal(a[~j], x[~j])
    nb = x[0, 0, 4:7, 5:8]
    w = torch.tensor([[0.5, 1, 0.5], [1, 0, 1], [0.5, 1, 0.5]]) / 6
    assert torch.allclose(a[0, 0, 5, 6], (nb * w).sum())


def test_noise2self_denoises_atoms_without_clean_data():
    clean = atoms(64, seed=3)
    noisy = clean + 0.1 * np.random.default_rng(1).standard_normal(clean.shape).astype("f4")
    model = _model(Tiny)
    states = list(train_noise2self(model, noisy, steps=300, batch=8, patch=32, lr=3e-3,
                                   reference=clean, val_every=100))
    losses = [s.loss for s in states]
    assert np.mean(losses[-20:]) < 0.95 * np.mean(losses[:20])
    noisy_psnr = _psnr(noisy, clean)
    assert abs(states[-1].extras["noisy_psnr"] - noisy_psnr) < 1e-3
    with torch.no_grad():
        est = blind_spot_predict(model, torch.from_numpy(noisy)[None, None])[0, 0].numpy()
    assert _psnr(est, clean) > noisy_psnr + 4.0  # about +7.5 dB at this budget
    assert abs(states[-1].val_psnr - _psnr(est, clean)) < 1e-3


def test_noise2self_without_reference_reports_val_loss():
    noisy = np.random.default_rng(0).random((40, 40)).astype(np.float32)
    states = list(train_noise2self(_model(Tiny), noisy, steps=4, batch=2, patch=16,
                                   val_every=2))
    assert states[-1].val_psnr is None and np.isfinite(states[-1].extras["val_loss"])


def test_end_to_end_on_a_blur_operator_learns():
    from napari_invrec.core.operators import make_operator

    def factory(shape, device):
        return make_operator("blur", shape, device=device, sigma=1.5)

    model = _model(Tiny)
    states = list(train_end_to_end(model, make_source("phantoms"), factory, init="adjoint",
                                   noise_sigma=0.01, steps=60, batch=4, patch=16, lr=3e-3,
                                   val_every=30))
    losses = [s.loss for s in states]
    assert np.mean(losses[-10:]) < np.mean(losses[:10])
    assert states[-1].val_psnr > states[-1].extras["init_psnr"]


def test_general_source_mixes_domains(monkeypatch):
    """``general`` draws photographs about half of the time and synthetic images otherwise."""
    from napari_invrec.core.training.datasets import GeneralPatches

    src = make_source("general")
    assert isinstance(src, GeneralPatches)
    counts = {"natural": 0, "synthetic": 0}
    for key in counts:
        sub = getattr(src, key)
        orig = sub._one

        def counted(p, rng, _orig=orig, _key=key):
            counts[_key] += 1
            return _orig(p, rng)

        monkeypatch.setattr(sub, "_one", counted)
    a = src.sample(200, 24, np.random.default_rng(1))
    assert a.shape == (200, 1, 24, 24)
    assert counts["natural"] + counts["synthetic"] == 200
    assert 70 < counts["natural"] < 130


def test_augmented_source_varies_scale_and_intensity_within_unit_range():
    """``+aug`` cuts patches at sizes between p/2 and 2p (resized to p) and changes their
    intensities, staying in [0, 1] and reproducible from the generator's seed."""
    from napari_invrec.core.training.datasets import AugmentedPatches

    src = make_source("natural+aug")
    assert isinstance(src, AugmentedPatches) and src.spec.endswith("+aug")
    sizes = []
    orig = src.base._one

    def recorded(q, rng):
        sizes.append(q)
        return orig(q, rng)

    src.base._one = recorded
    a = src.sample(300, 32, np.random.default_rng(4))
    assert a.shape == (300, 1, 32, 32)
    assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0
    assert min(sizes) >= 16 and max(sizes) <= 64
    assert sum(q < 32 for q in sizes) > 100 and sum(q > 32 for q in sizes) > 100
    plain = make_source("natural").sample(300, 32, np.random.default_rng(4))
    # contrast a*x + b with a < 1 and gamma shrink or stretch the range of many patches
    spread = (a.amax((1, 2, 3)) - a.amin((1, 2, 3))).numpy()
    spread0 = (plain.amax((1, 2, 3)) - plain.amin((1, 2, 3))).numpy()
    assert np.mean(spread < 0.5) > np.mean(spread0 < 0.5) + 0.1
    b = make_source("natural+aug").sample(300, 32, np.random.default_rng(4))
    assert torch.equal(a, b)


def test_augmented_source_caps_the_crop_at_the_smallest_image_and_refuses_twice():
    src = make_source("skimage:text+aug")  # 172 x 448
    assert src.largest_patch() == 172
    assert src.sample(8, 150, np.random.default_rng(0)).shape == (8, 1, 150, 150)
    with pytest.raises(InputError, match=r"\+aug"):
        make_source("natural+aug+aug")
