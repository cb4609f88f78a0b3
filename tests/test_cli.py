"""Command line: list, simulate -> reconstruct round trip with sidecars, clear errors."""

import json
import subprocess
import sys

import numpy as np
import pytest
import tifffile

from napari_invrec.cli import main
from napari_invrec.core.data import shepp_logan


@pytest.fixture()
def clean_tif(tmp_path):
    p = tmp_path / "x.tif"
    tifffile.imwrite(p, shepp_logan(48))
    return p


def test_list_names_operators_and_methods(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in ("blur", "mri", "tv-fista", "langevin-tv"):
        assert name in out
    assert main(["list", "--operator", "mri", "--json"]) == 0
    rec = json.loads(capsys.readouterr().out)
    assert all(v["operators"] is None or "mri" in v["operators"]
               for v in rec["methods"].values())


def test_simulate_then_reconstruct_with_sidecar(tmp_path, clean_tif, capsys):
    y_path = tmp_path / "y.tif"
    assert main(["simulate", "--operator", "blur", "--sigma", "2", "--input", str(clean_tif),
                 "--output", str(y_path), "--noise-sigma", "0.01", "--seed", "4"]) == 0
    side = json.loads((tmp_path / "y.tif.json").read_text())
    assert side["operator"]["params"]["sigma"] == 2.0 and side["noise"]["seed"] == 4
    out = tmp_path / "x_hat.tif"
    # operator comes from the sidecar: no --operator needed
    assert main(["reconstruct", "--method", "tv-fista", "--lam", "0.005", "--iters", "30",
                 "--input", str(y_path), "--output", str(out), "--reference",
                 str(clean_tif)]) == 0
    x_hat = tifffile.imread(out)
    prov = json.loads((tmp_path / "x_hat.tif.json").read_text())["provenance"]
    assert prov["params"]["lam"] == 0.005 and prov["operator"]["params"]["sigma"] == 2.0
    y = tifffile.imread(y_path)
    x = shepp_logan(48)
    assert np.linalg.norm(x_hat - x) < np.linalg.norm(y - x)
    # the command line runs the same engine as the API: identical result
    import napari_invrec as ir

    op = ir.make_operator("blur", x.shape, sigma=2.0)
    api = ir.reconstruct(y, op, "tv-fista", lam=0.005, iters=30)
    np.testing.assert_allclose(x_hat, api.x, atol=1e-5)


def test_prefixed_option_for_clashing_names(tmp_path, clean_tif):
    y_path = tmp_path / "k.npy"
    assert main(["simulate", "--operator", "inpaint", "--keep", "0.6", "--op-seed", "3",
                 "--input", str(clean_tif), "--output", str(y_path), "--quiet"]) == 0
    spec = json.loads((tmp_path / "k.npy.json").read_text())["operator"]
    assert spec["params"]["seed"] == 3 and spec["params"]["keep"] == 0.6


def test_mri_complex_needs_npy(tmp_path, clean_tif, capsys):
    assert main(["simulate", "--operator", "mri", "--input", str(clean_tif), "--output",
                 str(tmp_path / "k.tif")]) == 2
    assert "npy" in capsys.readouterr().err


@pytest.mark.parametrize("argv, match", [
    (["reconstruct", "--operator", "blur", "--method", "tv-fista", "--input", "missing.tif",
      "--output", "o.tif"], "does not exist"),
    (["reconstruct", "--operator", "warp", "--method", "tv-fista", "--input", "a", "--output",
      "b"], "unknown operator"),
    (["reconstruct", "--operator", "blur", "--method", "nope", "--input", "a", "--output",
      "b"], "unknown method"),
])
def test_errors_are_one_line_and_exit_2(argv, match, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert match in err and len(err.splitlines()) == 1


def test_nan_input_exit_2(tmp_path, capsys):
    bad = tmp_path / "bad.npy"
    a = np.zeros((32, 32), np.float32)
    a[3, 3] = np.nan
    np.save(bad, a)
    assert main(["reconstruct", "--operator", "denoise", "--method", "tv-fista", "--input",
                 str(bad), "--output", str(tmp_path / "o.tif")]) == 2
    assert "NaN" in capsys.readouterr().err


def test_console_script_help_explains_options():
    out = subprocess.run([sys.executable, "-m", "napari_invrec.cli", "reconstruct",
                          "--operator", "blur", "--method", "tv-fista", "--help"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0
    for opt in ("--sigma", "--lam", "--iters", "--kernel-array", "--reference"):
        assert opt in out.stdout


def test_real_sinogram_infers_the_image_size(tmp_path, capsys):
    import napari_invrec as ir

    x = shepp_logan(40)
    op = ir.make_operator("ct", x.shape, n_angles=36)
    np.save(tmp_path / "sino.npy", ir.simulate(x, op, sigma=0.002))  # no sidecar: real data
    out = tmp_path / "fbp.tif"
    assert main(["reconstruct", "--operator", "ct", "--n-angles", "36", "--method", "fbp",
                 "--input", str(tmp_path / "sino.npy"), "--output", str(out), "--quiet"]) == 0
    assert tifffile.imread(out).shape == x.shape
    assert main(["reconstruct", "--operator", "ct", "--n-angles", "20", "--method", "fbp",
                 "--input", str(tmp_path / "sino.npy"), "--output", str(out)]) == 2
    assert "n_angles" in capsys.readouterr().err


def test_multicoil_kspace_with_estimated_coil_maps(tmp_path):
    import napari_invrec as ir

    x = shepp_logan(40)
    op = ir.make_operator("mri-multicoil", x.shape, n_coils=4)
    np.save(tmp_path / "k.npy", ir.simulate(x, op, sigma=0.01))
    out = tmp_path / "x.npy"
    assert main(["reconstruct", "--operator", "mri-multicoil", "--coil-maps", "estimated",
                 "--method", "sense-cg", "--input", str(tmp_path / "k.npy"), "--output",
                 str(out), "--quiet"]) == 0
    assert np.load(out).shape == x.shape
    prov = json.loads((tmp_path / "x.npy.json").read_text())["provenance"]
    assert prov["operator"]["params"]["coil_maps_array"]["array_shape"] == [4, 40, 40]
