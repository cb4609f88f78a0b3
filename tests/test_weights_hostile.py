"""Hostile user weights manifests: files outside the folder, missing digests, huge
architecture kwargs, malformed manifests (the registry refuses each, saying what to change)."""

from __future__ import annotations

import json
import os
import time

import pytest
import torch

from napari_invrec.core.errors import InputError
from napari_invrec.core.models import DnCNN
from napari_invrec.core.models import registry as reg


@pytest.fixture
def user(tmp_path, monkeypatch):
    """An empty user weights folder for this test only."""
    folder = tmp_path / "user"
    folder.mkdir()
    monkeypatch.setenv("NAPARI_INVREC_WEIGHTS", str(folder))
    return folder


def _weights(path, name="tiny"):
    """A tiny DnCNN saved at ``path``; its manifest entry (``file`` absolute, ``sha256`` set)."""
    torch.manual_seed(0)
    return reg.save_model(DnCNN(width=4, depth=2), path, {"name": name})


def _write(folder, *entries):
    """Write the user manifest holding ``entries`` (dicts or anything else, as given)."""
    rows = [reg.entry_dict(e) if isinstance(e, reg.WeightsEntry) else e for e in entries]
    (folder / "manifest.json").write_text(json.dumps({"weights": rows}))


def _refused(call, match):
    """Run ``call``; it must raise a one-line InputError matching ``match``."""
    with pytest.raises(InputError, match=match) as info:
        call()
    assert "\n" not in str(info.value)
    return str(info.value)


def _smallest_shipped():
    shipped = reg.read_manifest(reg.WEIGHTS_DIR / "manifest.json")
    return min(shipped, key=lambda n: os.path.getsize(shipped[n].file))


# ------------------------------------------------------------------ 1. files outside the folder
@pytest.mark.parametrize("how", ["dotdot", "absolute", "symlink"])
def test_user_entry_whose_file_lies_outside_its_folder_is_refused(user, tmp_path, how):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    entry = _weights(outside / "w.pt", name="sneaky")
    if how == "dotdot":
        entry.file = "../elsewhere/w.pt"
    elif how == "symlink":
        (user / "link.pt").symlink_to(outside / "w.pt")
        entry.file = "link.pt"
    _write(user, entry)
    assert "sneaky" not in reg.read_manifest()
    msg = _refused(lambda: reg.load_model("sneaky"), r"'sneaky'.*outside its folder")
    assert str(user.resolve()) in msg  # says where the file has to go
    assert any("sneaky" in p for p in reg.manifest_problems())


def test_refused_entry_is_named_by_load_operator_network(user, tmp_path):
    entry = _weights(tmp_path / "w.pt", name="op-net")
    entry.task, entry.operator = "denoiser", {"operator": "blur"}
    _write(user, entry)
    _refused(lambda: reg.load_operator_network("op-net", task="denoiser", architecture="dncnn",
                                               operator="blur"), r"'op-net'.*outside")


def test_register_weights_copies_a_file_from_outside_into_the_folder(user, tmp_path):
    out = tmp_path / "runs" / "w.pt"
    entry = _weights(out, name="mine")
    (tmp_path / "runs" / "w.pt.json").write_text('{"command": "napari-invrec train ..."}')
    reg.register_weights(entry)
    (row,) = json.loads((user / "manifest.json").read_text())["weights"]
    assert "/" not in row["file"] and (user / row["file"]).is_file()
    assert reg.sha256_file(user / row["file"]) == entry.sha256 == row["sha256"]
    assert (user / (row["file"] + ".json")).is_file()  # the training record travels along
    out.unlink()  # the registered network no longer depends on the original file
    assert type(reg.load_model("mine")) is DnCNN


def test_register_weights_keeps_a_hostile_name_inside_the_folder(user, tmp_path):
    entry = _weights(tmp_path / "w.pt", name="../../evil")
    reg.register_weights(entry)
    (row,) = json.loads((user / "manifest.json").read_text())["weights"]
    assert (user / row["file"]).resolve().parent == user.resolve()
    assert not (tmp_path / "evil.pt").exists() and type(reg.load_model("../../evil")) is DnCNN


def test_register_weights_refuses_a_file_changed_since_it_was_saved(user, tmp_path):
    entry = _weights(tmp_path / "w.pt")
    torch.save({"other": torch.zeros(1)}, tmp_path / "w.pt")
    _refused(lambda: reg.register_weights(entry), "changed since")
    assert not (user / "manifest.json").exists()


# ------------------------------------------------------------------ 2. sha256 required
@pytest.mark.parametrize("digest", ["", "abc", "g" * 64])
def test_entry_without_a_valid_sha256_is_refused(user, digest):
    entry = _weights(user / "w.pt", name="nodigest")
    entry.sha256 = digest
    _write(user, entry)
    _refused(lambda: reg.load_model("nodigest"), r"'nodigest'.*sha256.*re-register")
    _refused(lambda: reg.load_model_file(user / "w.pt", entry=entry), "sha256.*re-register")


# ------------------------------------------------------------------ 3. architecture kwargs
class _NoRealBuild(DnCNN):
    """DnCNN that refuses to be built off the meta device (a real build would allocate)."""

    built: list = []

    def __init__(self, in_channels: int = 1, out_channels: int = 1, width: int = 32,
                 depth: int = 10) -> None:
        if torch.empty(0).device.type != "meta" and (width > 64 or depth > 64):
            _NoRealBuild.built.append((width, depth))
            raise MemoryError("a real build of this size would allocate")
        super().__init__(in_channels, out_channels, width, depth)


@pytest.mark.parametrize("kwargs, match", [
    ({"width": 100000, "depth": 3}, r"'width'.*integer in 0\.\.4096"),
    ({"width": 3000, "depth": 3}, r"81,\d{3},\d{3} parameters.*above the limit of 64,000,000"),
    ({"depth": 4096}, r"more than [\d,]+ parameter tensors"),
    ({"widht": 4}, r"unknown dncnn kwargs.*'widht'.*width"),
    ({"width": "4"}, r"'width'.*integer"),
    ({"width": True}, r"'width'.*integer"),
    ({"kernels": [9] * 1000}, r"unknown dncnn kwargs"),
])
def test_hostile_kwargs_are_refused_before_building(user, monkeypatch, kwargs, match):
    entry = _weights(user / "w.pt", name="big")
    entry.kwargs = kwargs
    _write(user, entry)
    monkeypatch.setitem(reg.ARCHITECTURES, "dncnn", _NoRealBuild)
    _NoRealBuild.built.clear()
    t0 = time.perf_counter()
    msg = _refused(lambda: reg.load_model("big"), match)
    assert time.perf_counter() - t0 < 1.0
    assert not _NoRealBuild.built and "'big'" in msg


def test_kwargs_check_is_fast_and_counts_parameters():
    t0 = time.perf_counter()
    n = reg.check_architecture_kwargs("drunet", {"width": 16, "scales": 4, "blocks": 2})
    assert time.perf_counter() - t0 < 0.5
    assert n == sum(p.numel() for p in reg.ARCHITECTURES["drunet"](width=16).parameters())


# ------------------------------------------------------------------ 4. malformed user manifests
@pytest.mark.parametrize("text", ["{not json", '{"weights": {}}', "[1, 2]",
                                  '{"weights": [{"architecture": "dncnn"}]}', "\xff\xfe"])
def test_malformed_user_manifest_keeps_the_shipped_networks(user, text):
    (user / "manifest.json").write_bytes(text.encode("latin-1"))
    shipped = reg.read_manifest(reg.WEIGHTS_DIR / "manifest.json")
    assert set(shipped) <= set(reg.read_manifest())
    assert set(reg.weights_names()) >= set(shipped)
    problems = reg.manifest_problems()
    assert problems and all("\n" not in p for p in problems)
    assert any(str(user / "manifest.json") in p for p in problems)
    assert not reg.load_model(_smallest_shipped()).training
    msg = _refused(lambda: reg.load_model("my-net"), "no network weights named 'my-net'")
    assert str(user / "manifest.json") in msg  # the user's problem is not silent


def test_malformed_entries_are_skipped_and_reported(user):
    good = _weights(user / "g.pt", name="good")
    _write(user, "not an entry", {"architecture": "dncnn", "file": "g.pt"}, good,
           dict(reg.entry_dict(good), name="typo", kwrags={}),
           dict(reg.entry_dict(good), name="badtype", kwargs=[1, 2]))
    assert set(reg.read_manifest(user / "manifest.json")) == {"good"}
    assert type(reg.load_model("good")) is DnCNN
    problems = " | ".join(reg.manifest_problems())
    assert "entry 1" in problems and "entry 2" in problems
    assert "'kwrags'" in problems and "'badtype'" in problems
    _refused(lambda: reg.load_model("typo"), "'typo'.*unknown field.*'kwrags'")


def test_user_entry_reusing_a_shipped_name_is_reported(user):
    name = _smallest_shipped()
    _write(user, _weights(user / "w.pt", name=name))
    assert reg.read_manifest()[name].file.startswith(str(reg.WEIGHTS_DIR.resolve()))
    assert any(name in p and "shipped" in p for p in reg.manifest_problems())
