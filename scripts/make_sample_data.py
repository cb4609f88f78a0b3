"""Write the small bundled sample files in ``sample_data/`` (deterministic, < 1 MB in all).

Usage::

    python scripts/make_sample_data.py [--out DIR]

Files (all 128 x 128 unless said otherwise):

* ``atoms_clean.tif``: ground truth, ``atoms(128, seed=0)``, float32 in [0, 1].
* ``atoms_blurred.tif``: it blurred by a periodic Gaussian, sigma = 2 px, plus Gaussian noise
  of std 0.02 (noise seed 0), float32.
* ``atoms_kernel.tif``: that Gaussian kernel (17 x 17, sum 1), float32.
* ``phantom_clean.npy``: ``shepp_logan(128)``, float32 in [0, 1].
* ``phantom_kspace.npy``: its centred orthonormal k-space, 4x column undersampled (8 % centre,
  random pattern, seed 0) with complex Gaussian noise of std 0.01 (seed 0), zero on unsampled
  columns, complex64.
* ``phantom_kspace_mask.npy``: the sampling mask (128, 128), float32 0/1.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]

ATOMS = {"n": 128, "seed": 0}
BLUR = {"kernel": "gaussian", "sigma": 2.0}
BLUR_NOISE = {"model": "gaussian", "sigma": 0.02, "seed": 0}
PHANTOM_N = 128
MRI = {"acceleration": 4, "center_fraction": 0.08, "pattern": "random", "seed": 0}
MRI_NOISE = {"model": "gaussian", "sigma": 0.01, "seed": 0}


def build() -> dict[str, np.ndarray]:
    """The sample arrays, keyed by file name (computed on the CPU, deterministic)."""
    import torch

    from napari_invrec.core.data import atoms, shepp_logan
    from napari_invrec.core.operators import NoiseParams, make_operator

    x = atoms(ATOMS["n"], seed=ATOMS["seed"])
    blur = make_operator("blur", x.shape, **BLUR)
    yb = blur.measure(torch.from_numpy(x)[None, None], NoiseParams(**BLUR_NOISE))

    p = shepp_logan(PHANTOM_N)
    mri = make_operator("mri", p.shape, **MRI)
    yk = mri.measure(torch.from_numpy(p)[None, None], NoiseParams(**MRI_NOISE))

    return {
        "atoms_clean.tif": x.astype(np.float32),
        "atoms_blurred.tif": yb[0, 0].numpy().astype(np.float32),
        "atoms_kernel.tif": blur.kernel_image().astype(np.float32),
        "phantom_clean.npy": p.astype(np.float32),
        "phantom_kspace.npy": yk[0, 0].numpy().astype(np.complex64),
        "phantom_kspace_mask.npy": mri.mask.astype(np.float32),
    }


def write(out_dir: Path) -> list[Path]:
    """Write every sample file into ``out_dir`` (created if needed); return the paths."""
    import tifffile

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, arr in build().items():
        path = out_dir / name
        if name.endswith(".tif"):
            tifffile.imwrite(path, arr)
        else:
            np.save(path, arr)
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=REPO / "sample_data",
                    help="output folder (default: sample_data/ in the repository)")
    args = ap.parse_args(argv)
    for path in write(args.out):
        print(f"{path}  ({path.stat().st_size / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
