r"""Evaluation images that no shipped network was trained or tuned on.

Shipped weights are trained only on the synthetic generators' random draws and on the allowed
scikit-image images (:data:`~napari_invrec.core.training.datasets.ALLOWED_SKIMAGE_IMAGES`).
Tests of shipped weights and the learned-priors benchmark evaluate on images outside that set:

* ``shepp-logan``: the Shepp-Logan phantom (training phantoms are random ellipses);
* ``atoms``: an atomic lattice drawn with seed :data:`HELDOUT_SEED` (training atoms are drawn
  from per-step random generators, never from this seed);
* ``moon``, ``cell``, ``clock``, ``brick``: scikit-image photographs outside the allowed list
  (bundled with scikit-image, no download);
* :func:`fresh_draw`: draws of the training generators themselves (random atoms lattices,
  random ellipse phantoms) from a seed stream that training never uses (training step ``k``
  draws from ``default_rng([seed, 0, k])``, validation from ``default_rng([seed, 1])``).

Each is a centred square crop resized to ``(n, n)`` with anti-aliasing, float32 in
:math:`[0, 1]`.
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError
from .phantoms import atoms, random_atoms, random_ellipses, shepp_logan

__all__ = ["HELDOUT_IMAGES", "HELDOUT_SEED", "FRESH_KINDS", "heldout_image", "fresh_draw"]

HELDOUT_SEED = 90210
"""Seed of the held-out atoms image."""

_PHOTOS = ("moon", "cell", "clock", "brick")
HELDOUT_IMAGES: tuple[str, ...] = ("shepp-logan", "atoms") + _PHOTOS
"""Names accepted by :func:`heldout_image`."""

FRESH_KINDS = {"atoms": random_atoms, "phantoms": random_ellipses}
"""Generators of :func:`fresh_draw`."""


def _photo(name: str, n: int) -> np.ndarray:
    from skimage import data
    from skimage.transform import resize

    a = np.asarray(getattr(data, name)(), dtype=np.float64)
    if a.ndim == 3:
        a = a[..., :3] @ np.array([0.2125, 0.7154, 0.0721])
    lo, hi = float(a.min()), float(a.max())
    a = (a - lo) / (hi - lo)
    h, w = a.shape
    s = min(h, w)
    a = a[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]
    out = resize(a, (n, n), order=1, anti_aliasing=True, preserve_range=True)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def heldout_image(name: str, n: int = 128) -> np.ndarray:
    """The held-out evaluation image ``name`` as float32 ``(n, n)`` in :math:`[0, 1]`.

    Raises
    ------
    InputError
        For a name not in :data:`HELDOUT_IMAGES`.
    """
    if name == "shepp-logan":
        return shepp_logan(n)
    if name == "atoms":
        return atoms(n, seed=HELDOUT_SEED)
    if name in _PHOTOS:
        return _photo(name, int(n))
    raise InputError(f"unknown held-out image {name!r}; choose from "
                     f"{', '.join(HELDOUT_IMAGES)}")


def fresh_draw(kind: str, n: int = 128, index: int = 0) -> np.ndarray:
    """Draw ``index`` of the ``kind`` training generator (``"atoms"`` or ``"phantoms"``) at
    size ``(n, n)``, from ``default_rng([HELDOUT_SEED, 3, index])``: float32 in :math:`[0, 1]`,
    the same image for the same arguments.

    Raises
    ------
    InputError
        For an unknown ``kind`` or a negative ``index``.
    """
    if kind not in FRESH_KINDS:
        raise InputError(f"unknown generator {kind!r}; choose from {', '.join(FRESH_KINDS)}")
    if int(index) < 0:
        raise InputError(f"index must be >= 0, got {index}")
    rng = np.random.default_rng([HELDOUT_SEED, 3, int(index)])
    return FRESH_KINDS[kind](int(n), rng)
