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
    arr = _numeric(a, name)
    if arr.size == 0:
        raise InputError(f"{name} is empty (shape {arr.shape}); load or draw an image first")
    if arr.ndim == ndim + 1 and arr.shape[-1] in (3, 4) and ndim == 2:
        raise InputError(f"{name} looks like an RGB(A) image, shape {arr.shape}; convert it to "
                         "a single channel (e.g. skimage.color.rgb2gray) before reconstructing")
    if arr.ndim != ndim:
        hint = ("pick one plane (or pass a dask stack to reconstruct plane by plane)"
                if arr.ndim > ndim else "give an image of the operator's number of axes")
        raise InputError(f"{name} must be {ndim}-D, got shape {arr.shape}; {hint}")
    if arr.dtype == bool:
        raise InputError(f"{name} is boolean; a mask belongs in the operator's mask, not as "
                         "the image")
    if np.issubdtype(arr.dtype, np.integer):
        if not rescale_integers:
            raise InputError(
                f"{name} has integer dtype {arr.dtype}; convert it to float with a known scale "
                f"(e.g. data.astype('float32') / {np.iinfo(arr.dtype).max}) or enable "
                "'rescale integers', so that noise levels and weights mean what they say")
        return _finite(arr.astype(np.float32) / float(np.iinfo(arr.dtype).max), name)
    if np.iscomplexobj(arr):
        if not complex_ok:
            raise InputError(f"{name} is complex but this operator works on real images; "
                             "use its magnitude or pick a complex operator (mri)")
        return _finite(np.array(arr, dtype=np.complex64, order="C", copy=True), name)
    return _finite(np.array(arr, dtype=np.float32, order="C", copy=True), name)


#: largest magnitude accepted: squares summed over 1e8 pixels stay below float32's 3.4e38
MAX_MAGNITUDE = 1e15


def _numeric(a: Any, name: str) -> np.ndarray:
    """``a`` as a numpy array of a numeric (or boolean) dtype, or :class:`InputError`."""
    try:
        arr = np.asarray(a)
    except (TypeError, ValueError) as e:
        raise InputError(f"{name} cannot be read as an array ({e}); give a numeric array") from e
    if arr.dtype.kind not in "biufc":
        raise InputError(f"{name} has dtype {arr.dtype}, not numbers; give a float array")
    return arr


def _finite(arr: np.ndarray, name: str) -> np.ndarray:
    if not np.all(np.isfinite(arr)):
        bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
        raise InputError(f"{name} contains {bad} NaN/inf value(s); fill or crop them "
                         "(e.g. np.nan_to_num) before reconstructing")
    big = float(np.abs(arr).max()) if arr.size else 0.0
    if big > MAX_MAGNITUDE:
        raise InputError(f"{name} has values up to {big:.3g}, too large for float32 sums of "
                         "squares; rescale it (e.g. to [0, 1])")
    return arr


#: side of SSIM's Gaussian window (radius 5): a reference must be at least this large
SSIM_MIN_SIDE = 11


def check_reference(ref: Any, shape: tuple[int, ...], name: str = "reference") -> np.ndarray:
    r"""Return a ground-truth image as a real float32 copy (magnitude if complex), or raise.

    PSNR uses the reference's range :math:`\max - \min` and SSIM an 11-pixel window, so the
    reference must be a float image of the result's ``shape``, not constant, and at least
    :data:`SSIM_MIN_SIDE` pixels on each side; checked before a run starts so that no metric
    fails (or is silently ``nan``/``inf``) after it.

    Raises
    ------
    InputError
        Integer (a scale the metrics cannot know), wrong shape, too small, NaN/inf or constant.
    """
    arr = check_image_array(ref, name, complex_ok=True, ndim=len(shape))
    if np.iscomplexobj(arr):
        arr = np.abs(arr).astype(np.float32)
    if arr.shape != tuple(shape):
        raise InputError(f"{name} has shape {arr.shape} but the image is {tuple(shape)}; "
                         "pick the ground truth of this measurement")
    if min(arr.shape) < SSIM_MIN_SIDE:
        raise InputError(f"{name} is {arr.shape}; PSNR/SSIM need at least {SSIM_MIN_SIDE} px "
                         "on each side: run without a reference")
    if float(arr.max() - arr.min()) <= 0:
        raise InputError(f"{name} is constant ({float(arr.flat[0]):g}); PSNR and SSIM are "
                         "undefined for a constant image: pick a real ground truth")
    return arr


def check_mask_array(m: Any, shape: tuple[int, ...], name: str = "mask") -> np.ndarray:
    """Return ``m`` as a float32 0/1 mask of ``shape`` (nonzero = measured), or raise."""
    arr = _numeric(m, name)
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
