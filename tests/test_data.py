"""Synthetic generators, napari sample-data functions and the bundled sample files."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from napari_invrec.core.data import SAMPLE_IMAGES, atoms, atoms_with_truth, camera, shepp_logan
from napari_invrec.core.errors import InputError

REPO = Path(__file__).resolve().parents[1]
SAMPLE_DIR = REPO / "sample_data"


# ---------------------------------------------------------------------------- generators
@pytest.mark.parametrize("name", sorted(SAMPLE_IMAGES))
@pytest.mark.parametrize("n", [33, 64])
def test_generator_shape_dtype_range(name, n):
    x = SAMPLE_IMAGES[name](n)
    assert x.shape == (n, n) and x.dtype == np.float32
    assert np.all(np.isfinite(x))
    assert x.min() >= 0.0 and x.max() <= 1.0
    assert x.max() - x.min() > 0.5  # uses the range, not a flat image


@pytest.mark.parametrize("name", sorted(SAMPLE_IMAGES))
def test_generators_are_deterministic(name):
    np.testing.assert_array_equal(SAMPLE_IMAGES[name](48), SAMPLE_IMAGES[name](48))


def test_shepp_logan_matches_scikit_image_reference():
    # skimage bundles a 400 px rendering of the same modified (Toft) phantom: an independent
    # check of the ellipse table, the intensities and the orientation (rows top = +y).
    from skimage.data import shepp_logan_phantom

    ref = shepp_logan_phantom()
    ours = shepp_logan(ref.shape[0]).astype(np.float64)
    diff = np.abs(ours - ref)
    assert diff.mean() < 1e-3
    assert (diff > 0.05).mean() < 2e-3  # at most a few edge pixels disagree
    assert np.abs(ours[::-1] - ref).mean() > 10 * diff.mean()  # an upside-down one would fail
    assert np.abs(ours[:, ::-1] - ref).mean() > 10 * diff.mean()
    np.testing.assert_allclose(np.unique(np.round(ours, 3)), [0, 0.1, 0.2, 0.3, 0.4, 1.0])


def test_atoms_seed_changes_image_and_lattice_choice_matters():
    a0 = atoms(64, seed=0)
    assert not np.allclose(a0, atoms(64, seed=1), atol=0.05)
    assert not np.allclose(a0, atoms(64, seed=0, lattice="square"), atol=0.05)
    np.testing.assert_array_equal(a0, atoms_with_truth(64, seed=0)[0])


@pytest.mark.parametrize("lattice", ["hexagonal", "square"])
def test_atoms_vacancy_count_and_spacing(lattice):
    rate, spacing = 0.2, 6.0
    img, truth = atoms_with_truth(96, spacing=spacing, lattice=lattice, vacancy_rate=rate,
                                  seed=3)
    n_sites = truth["n_sites"]
    cell = spacing ** 2 * (np.sqrt(3) / 2 if lattice == "hexagonal" else 1.0)
    assert abs(n_sites - 96 ** 2 / cell) < 0.1 * n_sites  # sites fill the field of view
    n_vac = len(truth["vacancies"])
    assert abs(n_vac - rate * n_sites) < 4 * np.sqrt(n_sites * rate * (1 - rate))
    assert len(truth["positions"]) + n_vac == n_sites
    # nearest-neighbour distance of all sites is the lattice period
    sites = np.concatenate([truth["positions"], truth["vacancies"]])
    d = np.linalg.norm(sites[:, None] - sites[None], axis=-1)
    np.fill_diagonal(d, np.inf)
    np.testing.assert_allclose(np.median(d.min(axis=1)), spacing, rtol=0.01)
    assert truth["positions"].min() >= 0 and truth["positions"].max() <= 95


def test_atoms_vacancies_dark_dopants_bright():
    img, truth = atoms_with_truth(96, vacancy_rate=0.1, dopant_rate=0.15, dopant_contrast=2.0,
                                  seed=5)

    def at(rc):
        r, c = np.round(rc).astype(int).T
        return img[r, c]

    dop = {tuple(p) for p in np.round(truth["dopants"], 6)}
    host = np.array([p for p in truth["positions"] if tuple(np.round(p, 6)) not in dop])
    assert len(truth["dopants"]) >= 5 and len(truth["vacancies"]) >= 5
    assert at(truth["vacancies"]).mean() < 0.4 * at(host).mean()
    ratio = at(truth["dopants"]).mean() / at(host).mean()
    assert 1.6 < ratio < 2.2  # dopant_contrast 2, minus sub-pixel sampling and background
    np.testing.assert_allclose(truth["amplitudes"].max() / truth["amplitudes"].min(), 2.0)


def test_atoms_without_defects():
    _, truth = atoms_with_truth(48, vacancy_rate=0.0, dopant_rate=0.0)
    assert len(truth["vacancies"]) == 0 and len(truth["dopants"]) == 0


@pytest.mark.parametrize("kwargs", [
    {"lattice": "cubic"}, {"vacancy_rate": 1.5}, {"dopant_rate": -0.1}, {"spacing": 0.5},
    {"atom_sigma": 0.0}, {"n": 4},
])
def test_atoms_bad_input(kwargs):
    kw = {"n": 32, **kwargs}
    with pytest.raises(InputError):
        atoms_with_truth(kw.pop("n"), **kw)


def test_bad_size():
    for fn in (shepp_logan, camera):
        with pytest.raises(InputError):
            fn(2)


def test_camera_preserves_mean_of_original():
    from skimage.data import camera as sk_camera

    assert abs(camera(64).mean() - sk_camera().mean() / 255.0) < 0.01


# ---------------------------------------------------------------------------- sample data
def test_importing_sample_data_does_not_import_torch():
    code = ("import sys, napari_invrec, napari_invrec._sample_data, napari_invrec.core.data; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


@pytest.mark.parametrize("fn_name, gt_fn", [
    ("phantom", shepp_logan), ("atoms_sample", atoms), ("camera_sample", camera),
])
def test_ground_truth_samples(fn_name, gt_fn):
    from napari_invrec import _sample_data

    layers = getattr(_sample_data, fn_name)()
    assert len(layers) == 1
    data, kwargs, ltype = layers[0]
    assert ltype == "image" and kwargs["colormap"] == "gray"
    assert kwargs["name"] == fn_name.replace("_sample", "")
    np.testing.assert_array_equal(data, gt_fn(_sample_data.SAMPLE_SIZE))


@pytest.mark.parametrize("fn_name, operator, sigma", [
    ("phantom_mri", "mri", 0.01), ("atoms_blur", "blur", 0.02), ("camera_inpaint", "inpaint", 0.01),
])
def test_measurement_samples(fn_name, operator, sigma):
    import torch

    from napari_invrec import _sample_data
    from napari_invrec.core.operators.registry import operator_from_spec
    from napari_invrec.engine.layers import invrec_meta, measurement_from_layer

    layers = getattr(_sample_data, fn_name)()
    assert [t[2] for t in layers] == ["image", "image"]
    (gt, gt_kw, _), (ydisp, y_kw, _) = layers
    meta = invrec_meta(y_kw["metadata"])
    assert meta["kind"] == "measurement"
    assert meta["operator"]["operator"] == operator
    assert meta["ground_truth"] == gt_kw["name"] != y_kw["name"]
    assert meta["noise"]["sigma"] == sigma
    assert gt.shape == ydisp.shape == (256, 256) and ydisp.dtype == np.float32
    # the measurement is A(ground truth) + noise of the recorded level, for the recorded operator
    op = operator_from_spec(meta["operator"], meta["arrays"])
    y = np.asarray(measurement_from_layer(ydisp, y_kw["metadata"]))
    assert np.iscomplexobj(y) == (operator == "mri")
    clean = op.A(torch.from_numpy(gt)[None, None])[0, 0].numpy()
    resid = y - clean
    sampled = np.abs(clean) > 0 if operator != "blur" else np.ones(y.shape, bool)
    assert np.all(resid[~sampled] == 0)
    np.testing.assert_allclose(np.std(resid[sampled]), sigma, rtol=0.1)


# ---------------------------------------------------------------------------- bundled files
def _load_script():
    spec = importlib.util.spec_from_file_location(
        "make_sample_data", REPO / "scripts" / "make_sample_data.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _read(path: Path) -> np.ndarray:
    if path.suffix == ".tif":
        import tifffile

        return tifffile.imread(path)
    return np.load(path)


def test_bundled_sample_files_match_script(tmp_path):
    paths = _load_script().write(tmp_path)
    names = sorted(p.name for p in paths)
    assert names == sorted(["atoms_blurred.tif", "atoms_kernel.tif", "atoms_clean.tif",
                            "phantom_kspace.npy", "phantom_kspace_mask.npy",
                            "phantom_clean.npy"])
    readme = (SAMPLE_DIR / "README.md").read_text()
    total = 0
    for name in names:
        bundled = SAMPLE_DIR / name
        assert bundled.exists(), f"{name} missing: run python scripts/make_sample_data.py"
        assert f"`{name}`" in readme
        total += bundled.stat().st_size
        a, b = _read(bundled), _read(tmp_path / name)
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6, err_msg=name)
    assert total < 1_000_000


def test_bundled_sample_files_are_consistent():
    from napari_invrec.core.operators.blur import BlurParams, blur_kernel

    clean = _read(SAMPLE_DIR / "atoms_clean.tif")
    assert clean.shape == (128, 128) and clean.dtype == np.float32
    kernel = _read(SAMPLE_DIR / "atoms_kernel.tif")
    np.testing.assert_allclose(kernel, blur_kernel(BlurParams(sigma=2.0), (128, 128)),
                               atol=1e-7)
    blurred = _read(SAMPLE_DIR / "atoms_blurred.tif")
    # periodic convolution of the ground truth with the stored kernel, plus noise of std 0.02
    h = kernel.shape[0] // 2
    big = np.zeros((128, 128))
    big[np.ix_(np.arange(-h, h + 1) % 128, np.arange(-h, h + 1) % 128)] = kernel
    conv = np.real(np.fft.ifft2(np.fft.fft2(clean) * np.fft.fft2(big)))
    np.testing.assert_allclose(np.std(blurred - conv), 0.02, rtol=0.05)

    k = _read(SAMPLE_DIR / "phantom_kspace.npy")
    mask = _read(SAMPLE_DIR / "phantom_kspace_mask.npy")
    truth = _read(SAMPLE_DIR / "phantom_clean.npy")
    assert k.dtype == np.complex64 and k.shape == mask.shape == truth.shape == (128, 128)
    assert set(np.unique(mask)) == {0.0, 1.0}
    assert abs(mask.mean() - 0.25) < 0.02  # 4x acceleration
    assert np.all(k[mask == 0] == 0)
    full = np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(truth), norm="ortho"))
    np.testing.assert_allclose(np.std(k[mask == 1] - full[mask == 1]), 0.01, rtol=0.05)


@pytest.mark.parametrize("kind", ["atoms", "phantoms"])
def test_fresh_draws_are_deterministic_distinct_and_unlike_training_draws(kind):
    from napari_invrec.core.data import fresh_draw
    from napari_invrec.core.training.datasets import SyntheticPatches

    a, b = fresh_draw(kind, 64, 0), fresh_draw(kind, 64, 1)
    assert a.shape == (64, 64) and a.dtype == np.float32
    assert 0.0 <= a.min() and a.max() <= 1.0
    np.testing.assert_array_equal(a, fresh_draw(kind, 64, 0))
    assert np.abs(a - b).mean() > 0.01
    # the first training steps of seeds 0..3 draw other images
    for seed in range(4):
        t = SyntheticPatches(kind).sample(1, 64, np.random.default_rng([seed, 0, 0]))
        assert np.abs(t.numpy()[0, 0] - a).mean() > 0.01


def test_fresh_draw_bad_input():
    from napari_invrec.core.data import fresh_draw

    with pytest.raises(InputError, match="unknown generator"):
        fresh_draw("cats")
    with pytest.raises(InputError, match="index"):
        fresh_draw("atoms", 32, -1)
