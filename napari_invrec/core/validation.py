"""Checks on user-supplied arrays, with messages that say what to change."""

from __future__ import annotations

from typing import Any

import numpy as np

from .errors import InputError


def check_image_array(a: Any, name: str = "image", *, complex_ok: bool = False,
                      rescale_integers: bool = False, ndim: int = 2) -> np.ndarray:
    """Return ``a`` as a float32 (or complex64) array of ``ndim`` dimensions, or raise.

    Parameters
    ----------
    a
        Array-like (numpy, dask block already computed, list).
    name
        How to call it in messages (e.g. the layer name).
    complex_ok
        Accept complex input (k-space, complex MRI images).
    rescale_integers
        Convert integer images to float by dividing by the dtype's maximum instead of raising.
    ndim
        Expected number of dimensions.

    Raises
    ------
    InputError
        Empty, RGB, wrong number of dimensions, integer (unless ``rescale_integers``),
        complex (unless ``complex_ok``), boolean, or non-finite values.
    """
    arr = np.asarray(a)
    if arr.size == 0:
        raise InputError(f"{name} is empty (shape {arr.shape}); load or draw an image first")
    if arr.ndim == ndim + 1 and arr.shape[-1] in (3, 4) and ndim == 2:
        raise InputError(f"{name} looks like an RGB(A) image, shape {arr.shape}; convert it to "
                         "a single channel (e.g. skimage.color.rgb2gray) before reconstructing")
    if arr.ndim != ndim:
        raise InputError(f"{name} must be {ndim}-D, got shape {arr.shape}; pick one plane "
                         "(or pass a dask stack to reconstruct plane by plane)")
    if arr.dtype == bool:
        raise InputError(f"{name} is boolean; a mask belongs in the operator's mask, not as "
                         "the image")
    if np.issubdtype(arr.dtype, np.integer):
        if not rescale_integers:
            raise InputError(
                f"{name} has integer dtype {arr.dtype}; convert it to float with a known scale "
                f"(e.g. data.astype('float32') / {np.iinfo(arr.dtype).max}) or enable "
                "'rescale integers', so that noise levels and weights mean what they say")
        arr = arr.astype(np.float32) / float(np.iinfo(arr.dtype).max)
    if np.iscomplexobj(arr):
        if not complex_ok:
            raise InputError(f"{name} is complex but this operator works on real images; "
                             "use its magnitude or pick a complex operator (mri)")
        arr = arr.astype(np.complex64, copy=False)
    else:
        arr = arr.astype(np.float32, copy=False)
    if not np.all(np.isfinite(arr)):
        bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
        raise InputError(f"{name} contains {bad} NaN/inf value(s); fill or crop them "
                         "(e.g. np.nan_to_num) before reconstructing")
    return arr


def check_mask_array(m: Any, shape: tuple[int, int], name: str = "mask") -> np.ndarray:
    """Return ``m`` as a float32 0/1 mask of ``shape`` (nonzero = measured), or raise."""
    arr = np.asarray(m)
    if arr.size == 0:
        raise InputError(f"{name} is empty; draw the region to keep first")
    if arr.shape != tuple(shape):
        raise InputError(f"{name} has shape {arr.shape} but the image is {tuple(shape)}; "
                         "draw the mask on a layer of the image's size")
    if not np.all(np.isfinite(arr.astype(np.float64, copy=False))):
        raise InputError(f"{name} contains NaN/inf values")
    out = (arr != 0).astype(np.float32)
    if out.sum() == 0:
        raise InputError(f"{name} keeps no pixel; mark the pixels that were measured")
    return out
