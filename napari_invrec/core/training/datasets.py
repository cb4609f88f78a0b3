r"""Sources of training patches: synthetic generators, bundled images, arrays and folders.

A :class:`PatchSource` draws ``n`` random single-channel patches of size ``p`` as a float32
tensor ``(n, 1, p, p)`` with values in :math:`[0, 1]`. All randomness comes from the
``numpy.random.Generator`` passed to :meth:`PatchSource.sample`, so the same generator state
always gives the same patches (the training loops seed one generator per step, which makes runs
reproducible and resumable). Every patch is augmented by a random element of the dihedral group
:math:`D_4` (a transpose-flip and one of four rotations by :math:`k \cdot 90^\circ`). A spec
ending in ``+aug`` (:class:`AugmentedPatches`) also varies the pixel size, contrast, gamma,
polarity and sharpness of every patch.

Data rules: shipped models may be trained only on the project's synthetic generators
(:mod:`napari_invrec.core.data`) and the scikit-image images in :data:`ALLOWED_SKIMAGE_IMAGES`
(bundled with scikit-image; nothing is downloaded).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data.phantoms import random_atoms, random_ellipses
from ..errors import InputError

__all__ = ["ALLOWED_SKIMAGE_IMAGES", "PatchSource", "SyntheticPatches", "ImagePatches",
           "ArrayPatches", "FolderPatches", "GeneralPatches", "AugmentedPatches", "make_source",
           "load_skimage", "to_gray01", "augment"]

ALLOWED_SKIMAGE_IMAGES: tuple[str, ...] = (
    "astronaut", "camera", "coffee", "chelsea", "rocket", "coins", "page", "text", "grass",
    "gravel", "hubble_deep_field", "immunohistochemistry",
)
"""The scikit-image sample images (bundled, no download) that training may use."""

FOLDER_SUFFIXES = (".tif", ".tiff", ".png", ".npy")


# ---------------------------------------------------------------- helpers
def to_gray01(img: Any) -> np.ndarray:
    r"""A 2-D float32 image in :math:`[0, 1]`.

    Colour ``(H, W, 3|4)`` becomes luminance :math:`0.2125 R + 0.7154 G + 0.0721 B` (alpha
    dropped); integer images are divided by their dtype's maximum; float images are rescaled
    by :math:`(x - \min) / (\max - \min)` unless already inside :math:`[0, 1]`.

    Raises
    ------
    InputError
        If the array is not 2-D (or 2-D colour), or holds NaN/inf.
    """
    a = np.asarray(img)
    if a.ndim == 3 and a.shape[-1] in (3, 4):
        info_max = np.iinfo(a.dtype).max if np.issubdtype(a.dtype, np.integer) else None
        rgb = a[..., :3].astype(np.float64)
        if info_max is not None:
            rgb = rgb / info_max
        a = rgb @ np.array([0.2125, 0.7154, 0.0721])
    elif a.ndim != 2:
        raise InputError(f"a training image must be 2-D (or 2-D colour), got shape {a.shape}; "
                         "split stacks into 2-D images")
    if np.issubdtype(a.dtype, np.integer):
        a = a.astype(np.float64) / np.iinfo(a.dtype).max
    a = a.astype(np.float64)
    if not np.all(np.isfinite(a)):
        raise InputError("a training image holds NaN or inf values; clean it first")
    lo, hi = float(a.min()), float(a.max())
    if lo < 0.0 or hi > 1.0:
        a = (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)
    return np.clip(a, 0.0, 1.0).astype(np.float32)


def load_skimage(name: str) -> np.ndarray:
    """One of :data:`ALLOWED_SKIMAGE_IMAGES` as a grayscale float32 image in :math:`[0, 1]`.

    Raises
    ------
    InputError
        For any name not in the allowed list.
    """
    if name not in ALLOWED_SKIMAGE_IMAGES:
        raise InputError(f"scikit-image image {name!r} is not allowed for training; choose "
                         f"from {', '.join(ALLOWED_SKIMAGE_IMAGES)}")
    from skimage import data

    return to_gray01(getattr(data, name)())


def _as_float2d(img: Any) -> np.ndarray:
    a = np.asarray(img, dtype=np.float32)
    if a.ndim != 2:
        raise InputError(f"a training image must be 2-D, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise InputError("a training image holds NaN or inf values; clean it first")
    return a


def augment(patch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    r"""Apply a random element of :math:`D_4` (optional transpose, then ``rot90`` by k)."""
    if rng.random() < 0.5:
        patch = patch.T
    return np.rot90(patch, int(rng.integers(4)))


def _crop(img: np.ndarray, p: int, rng: np.random.Generator) -> np.ndarray:
    h, w = img.shape
    r = int(rng.integers(h - p + 1))
    c = int(rng.integers(w - p + 1))
    return img[r:r + p, c:c + p]


def _check_patch(p: Any) -> int:
    if isinstance(p, bool) or not isinstance(p, (int, np.integer)) or p < 4:
        raise InputError(f"patch size must be an integer >= 4, got {p!r}")
    return int(p)


# ---------------------------------------------------------------- sources
class PatchSource:
    """Base class: random ``(n, 1, p, p)`` float32 patches in :math:`[0, 1]`.

    Subclasses implement :meth:`_one` (one un-augmented ``(p, p)`` patch).
    """

    spec: str = "?"

    def _one(self, p: int, rng: np.random.Generator) -> np.ndarray:
        raise NotImplementedError

    def largest_patch(self) -> int | None:
        """The largest patch side this source can cut (``None``: no limit)."""
        return None

    def sample(self, n: int, p: int, rng: np.random.Generator,
               device: torch.device | str | None = None) -> torch.Tensor:
        """Draw ``n`` augmented patches of size ``p`` using ``rng``.

        Returns
        -------
        torch.Tensor
            float32 ``(n, 1, p, p)`` on ``device`` (CPU if ``None``), in :math:`[0, 1]`
            except for ``ArrayPatches(..., normalize=False)``.
        """
        p = _check_patch(p)
        out = np.stack([augment(self._one(p, rng), rng) for _ in range(int(n))])
        t = torch.from_numpy(np.ascontiguousarray(out, dtype=np.float32))[:, None]
        return t.to(device) if device is not None else t

    def patches(self, n: int, p: int, seed: int = 0) -> torch.Tensor:
        """:meth:`sample` with a fresh generator seeded by ``seed`` (deterministic)."""
        return self.sample(n, p, np.random.default_rng(seed))


class SyntheticPatches(PatchSource):
    """Patches from the project's random generators: ``atoms``, ``phantoms`` or ``mixed``.

    Each patch is a freshly generated image: atoms with a random hexagonal/square lattice,
    spacing, rotation, column width, vacancy and dopant rates (:func:`..data.atoms`), or a
    random ellipse phantom; ``mixed`` picks either with probability 1/2.

    Parameters
    ----------
    kind
        ``"atoms"``, ``"phantoms"`` or ``"mixed"``.
    seed
        Seed of :meth:`PatchSource.patches` when no generator is given (kept for provenance).
    """

    KINDS = ("atoms", "phantoms", "mixed")

    def __init__(self, kind: str = "mixed", seed: int = 0) -> None:
        if kind not in self.KINDS:
            raise InputError(f"synthetic kind must be one of {self.KINDS}, got {kind!r}")
        self.kind, self.seed, self.spec = kind, int(seed), kind

    def _one(self, p: int, rng: np.random.Generator) -> np.ndarray:
        kind = self.kind
        if kind == "mixed":
            kind = "atoms" if rng.random() < 0.5 else "phantoms"
        return random_atoms(max(p, 8), rng)[:p, :p] if kind == "atoms" \
            else random_ellipses(p, rng)

    def patches(self, n: int, p: int, seed: int | None = None) -> torch.Tensor:
        return super().patches(n, p, self.seed if seed is None else seed)


class ArrayPatches(PatchSource):
    """Random crops of the user's own 2-D images (e.g. napari layers).

    Each image is converted by :func:`to_gray01` (``normalize=True``) or only cast to float32
    (``normalize=False``, e.g. noisy data whose intensities must stay as they are); a 3-D array
    that is not colour is taken as a stack of 2-D images. An image is picked with probability
    proportional to its area.
    """

    def __init__(self, arrays: Sequence[Any] | np.ndarray, spec: str = "arrays",
                 normalize: bool = True) -> None:
        items = [arrays] if isinstance(arrays, (np.ndarray, torch.Tensor)) else list(arrays)
        conv = to_gray01 if normalize else _as_float2d
        imgs = []
        for a in items:
            a = a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)
            a = np.squeeze(a) if a.ndim > 3 else a
            if a.ndim == 3 and (a.shape[-1] not in (3, 4) or not normalize):
                imgs.extend(conv(s) for s in a)
            else:
                imgs.append(conv(a))
        if not imgs:
            raise InputError("no training images given")
        self.images = imgs
        self.spec = spec
        area = np.array([i.size for i in imgs], dtype=np.float64)
        self._prob = area / area.sum()

    def largest_patch(self) -> int | None:
        return min(min(i.shape) for i in self.images)

    def _one(self, p: int, rng: np.random.Generator) -> np.ndarray:
        img = self.images[int(rng.choice(len(self.images), p=self._prob))]
        if min(img.shape) < p:
            raise InputError(f"patch size {p} is larger than an image of shape {img.shape}; "
                             "use a smaller --patch")
        return _crop(img, p, rng)


class ImagePatches(ArrayPatches):
    """Random crops of scikit-image sample images from :data:`ALLOWED_SKIMAGE_IMAGES`."""

    def __init__(self, names: Sequence[str] = ALLOWED_SKIMAGE_IMAGES) -> None:
        names = [names] if isinstance(names, str) else list(names)
        super().__init__([load_skimage(n) for n in names], spec="skimage:" + ",".join(names))
        self.names = names


class GeneralPatches(PatchSource):
    """Patches of every domain the project knows: ``general``.

    With probability 1/2 a crop of an allowed scikit-image photograph
    (:class:`ImagePatches`), else a fresh synthetic image (:class:`SyntheticPatches`
    ``"mixed"``: atoms or ellipse phantoms, 1/4 each); for a denoiser meant to serve any
    image a user brings.
    """

    spec = "general"

    def __init__(self, seed: int = 0) -> None:
        self.natural = ImagePatches(ALLOWED_SKIMAGE_IMAGES)
        self.synthetic = SyntheticPatches("mixed", seed)
        self.seed = int(seed)

    def _one(self, p: int, rng: np.random.Generator) -> np.ndarray:
        src = self.natural if rng.random() < 0.5 else self.synthetic
        return src._one(p, rng)

    def largest_patch(self) -> int | None:
        return self.natural.largest_patch()


class AugmentedPatches(PatchSource):
    r"""Patches of ``base`` with their pixel size, intensities and sharpness varied (``+aug``).

    Each patch is drawn from ``base`` at a size :math:`q = \mathrm{round}(p\,s)` with a scale
    :math:`s` log-uniform in :math:`[1/2, 2]` and resized to :math:`p` (anti-aliased when it
    shrinks), so that a network sees structures at many pixel sizes; then, each with
    probability 1/2 (1/8 for the inversion, 1/5 for the blur) and in this order:

    * gamma :math:`x \mapsto x^{\gamma}`, :math:`\gamma` log-uniform in :math:`[1/2, 2]`;
    * contrast :math:`x \mapsto a x + b`, :math:`a \sim U[0.3, 1]`, :math:`b \sim U[0, 1-a]`;
    * polarity :math:`x \mapsto 1 - x`;
    * Gaussian blur of std :math:`U[0.3, 1.5]` px.

    Every step maps :math:`[0, 1]` into itself, so the patches stay in :math:`[0, 1]`.
    """

    def __init__(self, base: PatchSource) -> None:
        if isinstance(base, AugmentedPatches):
            raise InputError("a training data spec takes '+aug' once")
        self.base = base
        self.spec = f"{base.spec}+aug"
        self.seed = getattr(base, "seed", 0)

    def largest_patch(self) -> int | None:
        return self.base.largest_patch()

    def _one(self, p: int, rng: np.random.Generator) -> np.ndarray:
        from torch.nn.functional import interpolate

        q = max(4, int(round(p * float(np.exp(rng.uniform(np.log(0.5), np.log(2.0)))))))
        q = min(q, max(p, self.base.largest_patch() or q))
        patch = np.asarray(self.base._one(q, rng), dtype=np.float32)
        if q != p:
            t = torch.from_numpy(np.ascontiguousarray(patch))[None, None]
            patch = interpolate(t, size=(p, p), mode="bilinear", align_corners=False,
                                  antialias=q > p)[0, 0].clamp(0.0, 1.0).numpy()
        if rng.random() < 0.5:
            patch = np.power(np.clip(patch, 0.0, 1.0),
                             float(np.exp(rng.uniform(np.log(0.5), np.log(2.0)))))
        if rng.random() < 0.5:
            a = rng.uniform(0.3, 1.0)
            patch = a * patch + rng.uniform(0.0, 1.0 - a)
        if rng.random() < 0.125:
            patch = 1.0 - patch
        if rng.random() < 0.2:
            from scipy.ndimage import gaussian_filter

            patch = gaussian_filter(patch, rng.uniform(0.3, 1.5), mode="reflect")
        return np.clip(patch, 0.0, 1.0).astype(np.float32)

    def patches(self, n: int, p: int, seed: int | None = None) -> torch.Tensor:
        return super().patches(n, p, self.seed if seed is None else seed)


def _read_image(path: Path) -> np.ndarray:
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            return np.load(path)
        if suffix in (".tif", ".tiff"):
            import tifffile

            return tifffile.imread(path)
        from skimage.io import imread

        return imread(path)
    except Exception as e:  # noqa: BLE001 - any reader failure is a bad file for the user
        raise InputError(f"cannot read training image {str(path)!r}: {e}") from e


class FolderPatches(ArrayPatches):
    """Random crops of every ``.tif``/``.tiff``/``.png``/``.npy`` image in a folder (sorted)."""

    def __init__(self, path: str | Path) -> None:
        folder = Path(path)
        if not folder.is_dir():
            raise InputError(f"training folder {str(folder)!r} does not exist")
        files = sorted(f for f in folder.iterdir() if f.suffix.lower() in FOLDER_SUFFIXES)
        if not files:
            raise InputError(f"training folder {str(folder)!r} holds no "
                             f"{'/'.join(FOLDER_SUFFIXES)} images")
        super().__init__([_read_image(f) for f in files], spec=f"folder:{folder}")
        self.files = files


def make_source(spec: str, seed: int = 0) -> PatchSource:
    """Parse a data spec into a :class:`PatchSource`.

    ``"atoms"``, ``"phantoms"``, ``"mixed"`` (synthetic), ``"natural"`` (all allowed
    scikit-image images), ``"general"`` (:class:`GeneralPatches`: natural and synthetic),
    ``"skimage:camera,coins"`` or ``"folder:/path"``; any of them followed by ``+aug``
    (:class:`AugmentedPatches`: pixel size, contrast, gamma, polarity and blur varied).

    Raises
    ------
    InputError
        For an unknown spec or a disallowed scikit-image name.
    """
    s = spec.strip()
    if s.endswith("+aug"):
        return AugmentedPatches(make_source(s[:-len("+aug")], seed))
    if s in SyntheticPatches.KINDS:
        return SyntheticPatches(s, seed)
    if s == "natural":
        return ImagePatches(ALLOWED_SKIMAGE_IMAGES)
    if s == "general":
        return GeneralPatches(seed)
    if s.startswith("skimage:"):
        names = [n.strip() for n in s[len("skimage:"):].split(",") if n.strip()]
        if not names:
            raise InputError("skimage: needs image names, e.g. skimage:camera,coins")
        return ImagePatches(names)
    if s.startswith("folder:"):
        return FolderPatches(s[len("folder:"):])
    raise InputError(f"unknown training data {spec!r}; use atoms, phantoms, mixed, natural, "
                     "general, skimage:NAME[,NAME...] or folder:PATH, each optionally followed "
                     "by +aug")
