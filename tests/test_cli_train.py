"""``napari-invrec train`` on the shared training engine (tiny networks, a few steps)."""

from __future__ import annotations

import json
import shlex

import numpy as np
import pytest
import torch

from napari_invrec import cli
from napari_invrec.core.data import atoms
from napari_invrec.core.models.registry import read_manifest, user_weights_dir, weights_names

pytestmark = pytest.mark.usefixtures("one_thread")


def test_train_denoiser_writes_weights_sidecar_and_registers(tmp_path, capsys):
    out = tmp_path / "t.pt"
    argv = ["train", "--task", "denoiser", "--arch", "dncnn", "--arch-kwargs", '{"width": 4}',
            "--data", "atoms", "--steps", "5", "--patch", "24", "--batch", "4", "--name",
            "cli-t", "--out", str(out), "--device", "cpu", "--val-every", "5"]
    assert cli.main(argv) == 0
    text = capsys.readouterr().out
    assert "step 5/5" in text and "registered as 'cli-t'" in text
    side = json.loads((tmp_path / "t.pt.json").read_text())
    assert side["command"] == "napari-invrec " + shlex.join(argv)
    assert side["spec"]["arch_kwargs"] == {"width": 4} and side["spec"]["steps"] == 5
    assert np.isfinite(side["metrics"]["final_loss"])
    entry = read_manifest()["cli-t"]
    assert entry.task == "denoiser" and entry.architecture == "dncnn"
    assert entry.train_command == side["command"]
    blob = torch.load(out, weights_only=True)
    assert blob["architecture"] == "dncnn" and blob["kwargs"]["width"] == 4
    # resuming the finished run has nothing to do: one clear error line, exit 2
    assert cli.main(argv + ["--resume", str(out) + ".ckpt"]) == 2
    err = capsys.readouterr().err.strip()
    assert "nothing to train" in err and len(err.splitlines()) == 1


def test_train_noise2self_from_an_image_file_without_registering(tmp_path, capsys):
    rng = np.random.default_rng(0)
    noisy = (atoms(48) + 0.1 * rng.standard_normal((48, 48))).astype(np.float32)
    np.save(tmp_path / "noisy.npy", noisy)
    out = tmp_path / "n2s.pt"
    argv = ["train", "--task", "noise2self", "--arch", "drunet", "--arch-kwargs",
            '{"width": 4, "scales": 2, "blocks": 1}', "--data", f"file:{tmp_path}/noisy.npy",
            "--steps", "3", "--patch", "16", "--batch", "2", "--out", str(out),
            "--no-register", "--quiet", "--device", "cpu"]
    assert cli.main(argv) == 0
    assert capsys.readouterr().out == ""
    assert out.is_file() and "n2s" not in read_manifest()
    side = json.loads((tmp_path / "n2s.pt.json").read_text())
    assert side["spec"]["data"] == "arrays:noisy.npy" and side["data_sigma"] > 0


def test_train_end_to_end_records_the_operator(tmp_path, capsys):
    argv = ["train", "--task", "end-to-end", "--arch", "unet", "--arch-kwargs",
            '{"width": 4, "scales": 2}', "--data", "phantoms", "--steps", "3", "--patch",
            "16", "--batch", "2", "--operator", "blur", "--op-params", '{"sigma": 1.5}',
            "--init", "adjoint", "--name", "cli-e2e", "--device", "cpu", "--quiet"]
    assert cli.main(argv) == 0
    entry = read_manifest()["cli-e2e"]
    assert entry.task == "end-to-end"
    assert "cli-e2e" in weights_names(task="end-to-end", operator="blur")
    # no --out: the weights go to the user weights folder
    assert (user_weights_dir() / "cli-e2e.pt").is_file()
    from napari_invrec.core.methods import end_to_end
    from napari_invrec.core.operators import make_operator

    assert end_to_end.trained_init(entry) == "adjoint"
    # the unet method runs the registered network (stage 1: the adjoint it was trained on)
    op = make_operator("blur", (24, 24), sigma=1.5)
    y = op.A(torch.rand(1, 1, 24, 24))
    states = list(end_to_end.unet(y, op, end_to_end.UNetParams(weights="cli-e2e")))
    assert len(states) == 2
    torch.testing.assert_close(states[0].x, op.A_adjoint(y))


@pytest.mark.parametrize("extra, match", [
    (["--arch", "no-such-net"], "unknown architecture"),
    (["--data", "skimage:brain"], "not allowed"),
    (["--arch-kwargs", "{width: 4"], "--arch-kwargs is not valid JSON"),
    (["--arch-kwargs", '{"nope": 1}'], "bad arch_kwargs"),
    (["--task", "end-to-end"], "needs --operator"),
    (["--task", "end-to-end", "--operator", "nope"], "unknown operator"),
    (["--task", "end-to-end", "--operator", "blur", "--op-params", "[1]"], "JSON object"),
    (["--task", "end-to-end", "--operator", "blur", "--op-params", '{"sigma": -1}'],
     "sigma"),
    (["--steps", "0"], "steps"),
    (["--sigma-dist", "log-uniform"], "needs sigma_min > 0"),
    (["--name", "bad name!"], "weights name"),
    (["--out", "/no/such/folder/m.pt"], "does not exist"),
    (["--data", "file:/no/such.npy"], "does not exist"),
])
def test_train_bad_arguments_exit_2_with_one_line(extra, match, tmp_path, capsys):
    argv = ["train", "--arch", "dncnn", "--arch-kwargs", '{"width": 4}', "--data", "atoms",
            "--steps", "2", "--patch", "16", "--batch", "2", "--device", "cpu", "--name", "x",
            "--out", str(tmp_path / "m.pt"), *extra]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert match in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "m.pt").exists()


def test_train_bad_task_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["train", "--task", "magic"])
    assert e.value.code == 2 and "invalid choice" in capsys.readouterr().err


def test_train_vae_writes_and_registers_weights(tmp_path, capsys):
    out = tmp_path / "v.pt"
    argv = ["train", "--task", "vae", "--arch", "vae", "--arch-kwargs",
            '{"width": 4, "latent_channels": 2}', "--data", "phantoms", "--steps", "4",
            "--patch", "16", "--batch", "2", "--beta", "0.01", "--name", "cli-vae", "--out",
            str(out), "--device", "cpu", "--val-every", "4"]
    assert cli.main(argv) == 0
    assert "registered as 'cli-vae'" in capsys.readouterr().out
    side = json.loads((tmp_path / "v.pt.json").read_text())
    assert side["spec"]["task"] == "vae" and side["spec"]["beta"] == 0.01
    assert "--beta 0.01" in side["command"]
    assert {"val_psnr", "const_psnr", "val_kl"} <= set(side["metrics"])
    entry = read_manifest()["cli-vae"]
    assert entry.task == "vae" and entry.architecture == "vae" and entry.operator is None
    assert "cli-vae" in weights_names(task="vae", architectures=("vae",))
    # a VAE task with another architecture is refused with one clear line
    assert cli.main(argv[:4] + ["dncnn"] + argv[5:]) == 2
    assert "--task vae --arch vae" in capsys.readouterr().err


def test_train_dirac_records_its_schedule_operator_and_refuses_others(tmp_path, capsys):
    out = tmp_path / "d.pt"
    argv = ["train", "--task", "dirac", "--arch", "dirac", "--arch-kwargs",
            '{"width": 4, "scales": 2}', "--data", "phantoms", "--steps", "3", "--patch", "16",
            "--batch", "2", "--operator", "inpaint", "--op-params", '{"keep": 0.5}',
            "--noise-sigma", "0.02", "--name", "cli-dirac", "--out", str(out), "--device",
            "cpu", "--val-every", "3"]
    assert cli.main(argv) == 0
    side = json.loads((tmp_path / "d.pt.json").read_text())
    assert side["spec"]["task"] == "dirac" and "--operator inpaint" in side["command"]
    assert {"val_psnr", "init_psnr"} <= set(side["metrics"])
    entry = read_manifest()["cli-dirac"]
    assert entry.task == "dirac" and entry.operator["operator"] == "inpaint"
    assert "cli-dirac" in weights_names(task="dirac", operator="inpaint")
    capsys.readouterr()
    # an operator without a degradation schedule, and another architecture: one line each
    mri = ["train", "--task", "dirac", "--arch", "dirac", "--data", "phantoms", "--steps", "2",
           "--patch", "16", "--batch", "2", "--operator", "mri", "--name", "x",
           "--no-register", "--out", str(tmp_path / "x.pt"), "--device", "cpu"]
    assert cli.main(mri) == 2
    assert "schedules for blur and inpaint" in capsys.readouterr().err
    assert cli.main(argv[:4] + ["unet"] + argv[5:]) == 2
    assert "--task dirac --arch dirac" in capsys.readouterr().err


def test_train_unrolled_from_a_file_of_kspace_measurements(tmp_path, capsys):
    """MRI k-space (complex .npy stack) and its sampling mask from files: a varnet learns by
    SSDU from them alone, the weights record the mask's operator; a mask that does not fit
    the measurements is one error line."""
    from napari_invrec.core.operators.noise import NoiseParams
    from napari_invrec.core.operators.registry import make_operator
    from napari_invrec.core.training.datasets import SyntheticPatches

    cols = np.zeros(32, np.float32)
    cols[[0, 3, 7, 12, 14, 15, 16, 17, 18, 22, 27]] = 1
    op = make_operator("mri", (32, 32), mask_array=cols)
    x = op.as_image(SyntheticPatches("phantoms").patches(3, 32, seed=1))
    y = op.measure(x, NoiseParams(model="gaussian", sigma=0.01),
                   torch.Generator().manual_seed(0))[:, 0].numpy()
    np.save(tmp_path / "k.npy", y)
    np.save(tmp_path / "cols.npy", cols)
    argv = ["train", "--task", "unrolled", "--supervision", "ssdu", "--arch", "varnet",
            "--arch-kwargs", '{"cascades": 2, "width": 4, "scales": 2}', "--operator", "mri",
            "--data", f"measurements:{tmp_path / 'k.npy'}", "--mask-array",
            str(tmp_path / "cols.npy"), "--steps", "2", "--batch", "2", "--device", "cpu",
            "--val-every", "2", "--name", "k-ssdu", "--out", str(tmp_path / "k.pt"),
            "--no-register", "--masks", "2", "--split-samples", "--split", "0.25"]
    assert cli.main(argv) == 0, capsys.readouterr().err
    side = json.loads((tmp_path / "k.pt.json").read_text())
    assert side["training"] == "unrolled" and side["supervision"] == "ssdu"
    assert side["split"] == 0.25 and "--split 0.25" in side["command"]
    assert "--masks 2" in side["command"] and "--split-samples" in side["command"]
    assert side["masks"] == 2 and side["split_lines"] is False
    assert side["operator"]["operator"] == "mri" and side["metrics"]["measurements"] == 3
    assert side["kwargs"]["complex_images"] is True and side["kwargs"]["final_dc"] is True
    assert cli.main([*argv[:-1], "1.5"]) == 2  # a held-out fraction must leave an input
    assert "split must be in (0, 1)" in capsys.readouterr().err
    np.save(tmp_path / "cols.npy", cols[:30])
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "(32,)" in err and len(err.splitlines()) == 1, err
