"""napari sample-data contributions (npe2): ground truths and simulated measurements.

Each function returns a list of napari layer tuples ``(data, kwargs, "image")``. Measurement
layers follow :func:`napari_invrec.engine.layers.measurement_layer`, so the reconstruction widget
can invert them as they are and compare with the named ground-truth layer. torch is imported
only when a measurement is simulated.
"""

from __future__ import annotations

from typing import Any

import numpy as np

SAMPLE_SIZE = 256

__all__ = ["phantom", "atoms_sample", "camera_sample", "phantom_mri", "atoms_blur",
           "camera_inpaint", "cells_zstack", "SAMPLE_SIZE"]


def _truth_layer(img: np.ndarray, name: str, source: str) -> tuple:
    # No metadata["invrec"] here: a ground truth is a plain image to the plugin (it may also be
    # picked as the input of a denoising run); ``source`` records the generator call.
    meta = {"source": f"napari_invrec.core.data.{source}"}
    return (img, {"name": name, "colormap": "gray", "metadata": meta}, "image")


def _simulated_pair(img: np.ndarray, stem: str, source: str, label: str, operator: str,
                    noise: dict, **params: Any) -> list[tuple]:
    """Ground truth plus ``y = N(A x)`` for the operator ``operator`` with ``params``."""
    from .core.operators import make_operator

    gt_name = f"{stem} (ground truth)"
    op = make_operator(operator, img.shape, **params)
    return [_truth_layer(img, gt_name, source), _measurement(img, op, noise, gt_name, stem, label)]


def _measurement(img: np.ndarray, op: Any, noise: dict, gt_name: str, stem: str,
                 label: str) -> tuple:
    """The measurement layer ``y = N(A x)`` of ``img`` (as the Simulate dock makes it)."""
    import torch

    from .core.operators import NoiseParams
    from .engine.layers import measurement_layer

    nz = NoiseParams(**noise)
    y = op.measure(torch.from_numpy(np.ascontiguousarray(img))[None, None], nz)
    return measurement_layer(y[0, 0].detach().cpu().numpy(), op, nz, name=f"{stem} · {label}",
                             ground_truth=gt_name)


def phantom() -> list[tuple]:
    """Modified Shepp-Logan phantom, 256 px."""
    from .core.data import shepp_logan

    return [_truth_layer(shepp_logan(SAMPLE_SIZE), "phantom", "shepp_logan(256)")]


def atoms_sample() -> list[tuple]:
    """STEM-like atomic lattice with vacancies and dopants, 256 px."""
    from .core.data import atoms

    return [_truth_layer(atoms(SAMPLE_SIZE), "atoms", "atoms(256, seed=0)")]


def camera_sample() -> list[tuple]:
    """scikit-image's camera man, resized to 256 px."""
    from .core.data import camera

    return [_truth_layer(camera(SAMPLE_SIZE), "camera", "camera(256)")]


def phantom_mri() -> list[tuple]:
    """Shepp-Logan phantom and its 4x undersampled k-space (random lines, Gaussian noise)."""
    from .core.data import shepp_logan

    return _simulated_pair(
        shepp_logan(SAMPLE_SIZE), "phantom", "shepp_logan(256)", "mri R=4", "mri",
        {"model": "gaussian", "sigma": 0.01, "seed": 0},
        acceleration=4, center_fraction=0.08, pattern="random", seed=0)


def atoms_blur() -> list[tuple]:
    """Atomic lattice and its Gaussian blur (sigma 2 px) with Gaussian noise 0.02."""
    from .core.data import atoms

    return _simulated_pair(
        atoms(SAMPLE_SIZE), "atoms", "atoms(256, seed=0)", "blur sigma=2", "blur",
        {"model": "gaussian", "sigma": 0.02, "seed": 0}, kernel="gaussian", sigma=2.0)


def camera_inpaint() -> list[tuple]:
    """Camera man with 50 % of the pixels missing at random, Gaussian noise 0.01."""
    from .core.data import camera

    return _simulated_pair(
        camera(SAMPLE_SIZE), "camera", "camera(256)", "inpaint 50%", "inpaint",
        {"model": "gaussian", "sigma": 0.01, "seed": 0}, mask="random", keep=0.5, seed=0)


def cells_zstack() -> list[tuple]:
    """A fluorescence-like z-stack (32 x 128 x 128), its 3-D blur (Gaussian PSF, sigma 1.5
    in-plane and 3 along z) with Poisson noise, and the PSF as a layer (for 'kernel from
    layer')."""
    from .core.data import cells_volume
    from .core.operators import make_operator

    vol = cells_volume((32, 128, 128), seed=0)
    op = make_operator("blur", vol.shape, sigma=1.5, sigma_z=3.0)
    gt = "cells (ground truth)"
    meas = _measurement(vol, op, {"model": "poisson", "photons": 300.0, "seed": 0}, gt,
                        "cells", "3-D blur")
    psf = (op.kernel_image(), {"name": "cells PSF (3-D)", "colormap": "magma",
                               "metadata": {"source": "blur sigma=1.5 sigma_z=3"}}, "image")
    return [_truth_layer(vol, gt, "cells_volume((32, 128, 128), seed=0)"), meas, psf]
