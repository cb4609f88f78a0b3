"""Network architectures, padding, complex wrapper and the weights registry (no trained weights)."""

from __future__ import annotations

import json

import pytest
import torch

from napari_invrec.core.denoisers import NetworkDenoiser, get_denoiser
from napari_invrec.core.errors import InputError
from napari_invrec.core.models import (
    MCNN,
    DnCNN,
    DRUNet,
    UNet,
    apply_real_network,
    count_parameters,
    crop,
    entry_dict,
    load_model,
    load_model_file,
    pad_to_multiple,
    save_model,
)

torch.manual_seed(0)
SMALL = {"drunet": lambda: DRUNet(width=8, scales=3, blocks=1),
         "dncnn": lambda: DnCNN(width=8, depth=4),
         "unet": lambda: UNet(width=8, scales=3),
         "mcnn": lambda: MCNN(width=4, depth=2)}


def _call(model, x, sigma=0.1):
    return model(x, sigma) if model.noise_conditional else model(x)


@pytest.mark.parametrize("shape", [(33, 31), (64, 48)])
@pytest.mark.parametrize("arch", list(SMALL))
def test_output_shape_equals_input_for_any_size(arch, shape):
    model = SMALL[arch]().eval()
    x = torch.rand(2, 1, *shape)
    with torch.no_grad():
        out = _call(model, x)
    assert out.shape == x.shape and bool(torch.isfinite(out).all())


def test_default_parameter_counts(capsys):
    counts = {"drunet": count_parameters(DRUNet()), "dncnn": count_parameters(DnCNN()),
              "unet": count_parameters(UNet()), "mcnn": count_parameters(MCNN())}
    with capsys.disabled():
        print("\nparameter counts:", counts)
    assert 4e5 <= counts["drunet"] <= 1.2e6
    assert counts["dncnn"] < 2e5 and counts["mcnn"] < 2e5 and counts["unet"] < 1e6
    assert count_parameters(DRUNet(width=32)) > 3 * counts["drunet"]  # width scales it


def test_pad_and_crop_round_trip_and_tiny_images():
    x = torch.rand(1, 2, 5, 3)
    xp, size = pad_to_multiple(x, 8)  # too small to reflect: replicate
    assert xp.shape[-2:] == (8, 8) and torch.equal(crop(xp, size), x)
    y = torch.rand(1, 1, 33, 31)
    yp, size = pad_to_multiple(y, 8)
    assert yp.shape[-2:] == (40, 32) and torch.equal(crop(yp, size), y)
    assert pad_to_multiple(yp, 8)[0] is yp
    with torch.no_grad():
        assert DRUNet(width=4, scales=4, blocks=1)(x[:, :1], 0.1).shape == (1, 1, 5, 3)


@pytest.mark.parametrize("arch", ["drunet", "dncnn"])
def test_noise_level_input_changes_the_output(arch):
    model = SMALL[arch]().eval()
    x = torch.rand(1, 1, 32, 32)
    with torch.no_grad():
        a, b = model(x, 0.05), model(x, 0.3)
        both = model(torch.cat([x, x]), torch.tensor([0.05, 0.3]))
    assert float((a - b).abs().max()) > 1e-4
    assert torch.allclose(both[:1], a, atol=1e-5) and torch.allclose(both[1:], b, atol=1e-5)


def test_save_load_round_trip(tmp_path):
    model = SMALL["drunet"]()
    meta = {"name": "drunet-test", "train_command": "napari-invrec train drunet-test",
            "seed": 3, "data": "random", "figures": ["val.png"]}
    entry = save_model(model, tmp_path / "drunet-test.pt", meta)
    (tmp_path / "manifest.json").write_text(json.dumps({"weights": [entry_dict(entry)]}))
    loaded = load_model("drunet-test", manifest=tmp_path / "manifest.json")
    assert type(loaded) is DRUNet and not loaded.training
    assert loaded.config == model.config and entry.seed == 3 and len(entry.sha256) == 64
    x = torch.rand(1, 1, 33, 31)
    with torch.no_grad():
        assert torch.equal(loaded(x, 0.1), model.eval()(x, 0.1))
    assert type(load_model_file(tmp_path / "drunet-test.pt")) is DRUNet
    den = get_denoiser("drunet-test", manifest=tmp_path / "manifest.json")
    assert isinstance(den, NetworkDenoiser) and den(x, 0.1).shape == x.shape


def test_missing_corrupt_and_incompatible_weights_are_input_errors(tmp_path):
    with pytest.raises(InputError, match="napari-invrec train drunet-natural"):
        load_model("drunet-natural", manifest=tmp_path / "manifest.json")
    with pytest.raises(InputError, match="napari-invrec train drunet-natural"):
        get_denoiser("drunet-natural", manifest=tmp_path / "manifest.json")
    entry = save_model(SMALL["dncnn"](), tmp_path / "d.pt", {"name": "d"})
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"weights": [entry_dict(entry)]}))
    (tmp_path / "d.pt").rename(tmp_path / "gone.pt")
    with pytest.raises(InputError, match="missing.*napari-invrec train d"):
        load_model("d", manifest=manifest)
    (tmp_path / "gone.pt").rename(tmp_path / "d.pt")
    # incompatible: the file matches its digest, but the entry's kwargs no longer fit it
    bad = dict(entry_dict(entry), kwargs={"width": 16})
    manifest.write_text(json.dumps({"weights": [bad]}))
    with pytest.raises(InputError, match="incompatible.*napari-invrec train"):
        load_model("d", manifest=manifest)
    # corrupt: the file no longer matches the entry's digest
    manifest.write_text(json.dumps({"weights": [dict(entry_dict(entry), sha256="0" * 64)]}))
    with pytest.raises(InputError, match="sha256.*corrupt"):
        load_model("d", manifest=manifest)
    manifest.write_text("{not json")
    with pytest.raises(InputError, match="malformed"):
        load_model("d", manifest=manifest)


def test_complex_images_via_real_imaginary_channels():
    z = torch.randn(2, 1, 33, 31, dtype=torch.complex64)
    calls = []

    def swap(v):  # real network on (B, 2, H, W): swap the two channels
        calls.append(v.shape)
        return v.flip(1)

    out = apply_real_network(swap, z)
    assert calls == [(2, 2, 33, 31)] and out.is_complex()
    assert torch.equal(out, torch.complex(z.imag, z.real))
    two = DRUNet(in_channels=2, out_channels=2, width=4, scales=3, blocks=1)
    one = SMALL["dncnn"]()
    for net in (two, one):
        d = NetworkDenoiser(net)(z, 0.1)
        assert d.shape == z.shape and d.is_complex() and bool(torch.isfinite(d).all())
    # the one-channel network denoises real and imaginary parts as separate images
    with torch.no_grad():
        re = one(z.real, 0.1 / 2 ** 0.5)
    assert torch.allclose(NetworkDenoiser(one)(z, 0.1).real, re, atol=1e-6)
    with pytest.raises(InputError, match="noise-conditional"):
        NetworkDenoiser(UNet(width=4, scales=2))
