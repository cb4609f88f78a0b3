r"""Synthetic ground-truth images (numpy only): Shepp-Logan, STEM-like atoms, the camera man.

Every generator returns a float32 array of shape ``(n, n)`` with values in :math:`[0, 1]` and is
deterministic: the same arguments (and seed) always give the same image.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..errors import InputError

__all__ = ["shepp_logan", "atoms", "atoms_with_truth", "camera", "random_ellipses",
           "random_atoms", "SAMPLE_IMAGES"]

# Modified Shepp-Logan table (Toft's intensities, the ones MATLAB's ``phantom`` uses): intensity
# A, semi-axes a, b, centre (x0, y0) in [-1, 1]^2 with y pointing up, and rotation phi (degrees,
# counter-clockwise).
_TOFT_ELLIPSES = np.array([
    # A      a       b       x0     y0      phi
    [1.0,  0.6900, 0.9200, 0.00,  0.0000,   0.0],
    [-0.8, 0.6624, 0.8740, 0.00, -0.0184,   0.0],
    [-0.2, 0.1100, 0.3100, 0.22,  0.0000, -18.0],
    [-0.2, 0.1600, 0.4100, -0.22, 0.0000,  18.0],
    [0.1,  0.2100, 0.2500, 0.00,  0.3500,   0.0],
    [0.1,  0.0460, 0.0460, 0.00,  0.1000,   0.0],
    [0.1,  0.0460, 0.0460, 0.00, -0.1000,   0.0],
    [0.1,  0.0460, 0.0230, -0.08, -0.6050,  0.0],
    [0.1,  0.0230, 0.0230, 0.00, -0.6060,   0.0],
    [0.1,  0.0230, 0.0460, 0.06, -0.6050,   0.0],
])


def _check_size(n: Any, minimum: int = 8) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < minimum:
        raise InputError(f"image size n must be an integer >= {minimum}, got {n!r}")
    return int(n)


def _rescale01(img: np.ndarray) -> np.ndarray:
    lo, hi = float(img.min()), float(img.max())
    out = (img - lo) / (hi - lo) if hi > lo else np.zeros_like(img)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def shepp_logan(n: int = 128) -> np.ndarray:
    r"""The modified Shepp-Logan head phantom, rescaled to :math:`[0, 1]`.

    A sum of ten ellipses :math:`E_k` with intensities :math:`A_k` (Toft's modified values, which
    make the inner structures visible):

    .. math::

        x(u, v) = \sum_k A_k \, \mathbb 1\!\left[
            \frac{u_k'^2}{a_k^2} + \frac{v_k'^2}{b_k^2} \le 1 \right],
        \quad
        \begin{pmatrix} u_k' \\ v_k' \end{pmatrix} = R(-\varphi_k)
        \begin{pmatrix} u - u_k \\ v - v_k \end{pmatrix},

    on the square :math:`[-1, 1]^2` sampled at ``n`` pixel centres per axis (row 0 at
    :math:`v = 1`). It models a piecewise-constant tomographic/MRI slice with sharp edges.

    Parameters
    ----------
    n
        Image size (pixels per side).

    Returns
    -------
    numpy.ndarray
        float32 array ``(n, n)`` with values in :math:`[0, 1]`.
    """
    n = _check_size(n)
    ax = (np.arange(n) - (n - 1) / 2.0) / ((n - 1) / 2.0)
    u, v = np.meshgrid(ax, ax[::-1])  # columns = u (left to right), rows = v (top = +1)
    img = np.zeros((n, n), dtype=np.float64)
    for amp, a, b, u0, v0, phi in _TOFT_ELLIPSES:
        c, s = np.cos(np.deg2rad(phi)), np.sin(np.deg2rad(phi))
        du, dv = u - u0, v - v0
        up = du * c + dv * s
        vp = -du * s + dv * c
        img[(up / a) ** 2 + (vp / b) ** 2 <= 1.0] += amp
    return _rescale01(img)


def _lattice_sites(n: int, spacing: float, lattice: str, angle: float,
                   offset: np.ndarray, margin: float) -> np.ndarray:
    """(row, col) lattice sites within ``[-margin, n - 1 + margin]^2``."""
    if lattice == "hexagonal":
        a1, a2 = np.array([spacing, 0.0]), np.array([0.5, np.sqrt(3) / 2]) * spacing
    else:
        a1, a2 = np.array([spacing, 0.0]), np.array([0.0, spacing])
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    half = int(np.ceil(0.75 * n / (0.8 * spacing))) + 2
    i, j = np.meshgrid(np.arange(-half, half + 1), np.arange(-half, half + 1), indexing="ij")
    xy = i.reshape(-1, 1) * a1 + j.reshape(-1, 1) * a2  # (col, row) offsets from the centre
    xy = xy @ rot.T + offset + (n - 1) / 2.0
    rc = xy[:, ::-1]
    keep = np.all((rc >= -margin) & (rc <= n - 1 + margin), axis=1)
    return rc[keep]


def _gaussian_sum(n: int, rc: np.ndarray, amp: np.ndarray, sigma: float) -> np.ndarray:
    r"""Render :math:`\sum_i a_i \exp(-|p - p_i|^2 / 2\sigma^2)` (separable, one matmul)."""
    grid = np.arange(n, dtype=np.float64)
    gr = np.exp(-((grid[None, :] - rc[:, :1]) ** 2) / (2 * sigma ** 2))  # (K, n) rows
    gc = np.exp(-((grid[None, :] - rc[:, 1:]) ** 2) / (2 * sigma ** 2))  # (K, n) cols
    return (gr * amp[:, None]).T @ gc


def _smooth_background(n: int, rng: np.random.Generator, level: float) -> np.ndarray:
    """A small non-negative low-frequency background (a few random long-wave cosines)."""
    grid = np.arange(n, dtype=np.float64) / n
    r, c = np.meshgrid(grid, grid, indexing="ij")
    bg = np.zeros((n, n))
    for _ in range(3):
        fr, fc = rng.uniform(-1.5, 1.5, size=2)
        ph = rng.uniform(0, 2 * np.pi)
        bg += 1.0 + np.cos(2 * np.pi * (fr * r + fc * c) + ph)
    return level * bg / 6.0


def atoms_with_truth(
    n: int = 128,
    *,
    spacing: float = 8.0,
    lattice: str = "hexagonal",
    atom_sigma: float = 1.2,
    vacancy_rate: float = 0.05,
    dopant_rate: float = 0.03,
    dopant_contrast: float = 1.8,
    background: float = 0.05,
    seed: int = 0,
) -> tuple[np.ndarray, dict]:
    r"""A STEM HAADF-like image of atomic columns, with the positions that made it.

    Atomic columns sit on a ``hexagonal`` or ``square`` lattice of period ``spacing`` pixels,
    rotated by an angle :math:`\theta \sim U(-12^\circ, 12^\circ)` and shifted by a random
    sub-cell offset, both drawn from ``seed``. Each site is independently empty (vacancy) with
    probability ``vacancy_rate``; each occupied site is a brighter dopant (heavier atom, higher
    :math:`Z`-contrast) with probability ``dopant_rate``. The image is

    .. math::

        x(p) = \frac{1}{Z} \Big( \sum_{i \in \text{occupied}} a_i
               \exp\!\big(-\|p - p_i\|^2 / 2\sigma^2\big) + b(p) \Big),

    with :math:`a_i = 1` for host atoms and ``dopant_contrast`` for dopants, a smooth
    non-negative background :math:`b` of amplitude ``background``, and :math:`Z` the maximum,
    so that :math:`x \in [0, 1]`.

    Parameters
    ----------
    n
        Image size (pixels per side).
    spacing
        Lattice period in pixels (nearest-neighbour distance).
    lattice
        ``"hexagonal"`` or ``"square"``.
    atom_sigma
        Standard deviation :math:`\sigma` of one atomic column (pixels).
    vacancy_rate, dopant_rate
        Probabilities of a vacancy per site and of a dopant per occupied site.
    dopant_contrast
        Peak intensity of a dopant relative to a host atom.
    background
        Amplitude of the smooth background (relative to a host atom peak).
    seed
        Random seed (lattice angle, offset, vacancies, dopants, background).

    Returns
    -------
    image : numpy.ndarray
        float32 ``(n, n)`` in :math:`[0, 1]`.
    truth : dict
        ``positions`` ``(K, 2)`` (row, col) of every atom whose centre lies inside the image,
        ``amplitudes`` ``(K,)`` their peak intensities in image units, ``vacancies`` ``(V, 2)``
        and ``dopants`` ``(D, 2)`` (row, col) inside the image, ``n_sites`` (lattice sites inside
        the image), ``angle_deg`` (lattice rotation), ``scale`` (the :math:`1/Z` applied).
    """
    n = _check_size(n)
    if lattice not in ("hexagonal", "square"):
        raise InputError(f"lattice must be 'hexagonal' or 'square', got {lattice!r}")
    if not 1.0 <= spacing <= n:
        raise InputError(f"spacing must be between 1 and the image size {n} px, got {spacing}")
    if not 0.0 < atom_sigma <= spacing:
        raise InputError(f"atom_sigma must be in (0, spacing={spacing}], got {atom_sigma}")
    for name, rate in (("vacancy_rate", vacancy_rate), ("dopant_rate", dopant_rate)):
        if not 0.0 <= rate <= 1.0:
            raise InputError(f"{name} must be a probability in [0, 1], got {rate}")
    if dopant_contrast <= 0 or background < 0:
        raise InputError("dopant_contrast must be > 0 and background >= 0, got "
                         f"{dopant_contrast} and {background}")

    rng = np.random.default_rng(seed)
    angle = rng.uniform(-12.0, 12.0)
    offset = rng.uniform(0.0, spacing, size=2)
    margin = 4.0 * atom_sigma
    rc = _lattice_sites(n, float(spacing), lattice, np.deg2rad(angle), offset, margin)
    vacant = rng.random(len(rc)) < vacancy_rate
    dopant = (rng.random(len(rc)) < dopant_rate) & ~vacant
    amp = np.where(dopant, float(dopant_contrast), 1.0)
    occupied = ~vacant
    img = _gaussian_sum(n, rc[occupied], amp[occupied], float(atom_sigma))
    img += _smooth_background(n, rng, float(background))
    scale = 1.0 / float(img.max()) if img.max() > 0 else 1.0
    img = np.clip(img * scale, 0.0, 1.0).astype(np.float32)

    inside = np.all((rc >= 0) & (rc <= n - 1), axis=1)
    truth = {
        "positions": rc[inside & occupied],
        "amplitudes": amp[inside & occupied] * scale,
        "vacancies": rc[inside & vacant],
        "dopants": rc[inside & dopant],
        "n_sites": int(inside.sum()),
        "angle_deg": float(angle),
        "scale": scale,
    }
    return img, truth


def atoms(n: int = 128, *, spacing: float = 8.0, lattice: str = "hexagonal",
          atom_sigma: float = 1.2, vacancy_rate: float = 0.05, dopant_rate: float = 0.03,
          dopant_contrast: float = 1.8, seed: int = 0) -> np.ndarray:
    """STEM HAADF-like atomic-lattice image; see :func:`atoms_with_truth` for the model."""
    img, _ = atoms_with_truth(n, spacing=spacing, lattice=lattice, atom_sigma=atom_sigma,
                              vacancy_rate=vacancy_rate, dopant_rate=dopant_rate,
                              dopant_contrast=dopant_contrast, seed=seed)
    return img


def random_ellipses(p: int, rng: np.random.Generator) -> np.ndarray:
    r"""A random ``(p, p)`` Shepp-Logan-like phantom drawn with ``rng``: a sum of 3-12 random
    ellipses on :math:`[-1,1]^2` (the ``phantoms`` training generator).

    .. math::

        x(u) = \sum_k A_k \, \mathbb 1[\|D_k^{-1} R(-\varphi_k)(u - c_k)\| \le 1],
        \quad A_k \sim U(-0.5, 1),\ \text{semi-axes } \sim U(0.05, 0.8),

    rescaled to :math:`[0, 1]`; a large outer ellipse with positive intensity comes first, as
    in a head phantom.
    """
    ax = (np.arange(p) - (p - 1) / 2.0) / ((p - 1) / 2.0)
    u, v = np.meshgrid(ax, ax)
    img = np.zeros((p, p))
    k = int(rng.integers(3, 13))
    for i in range(k):
        if i == 0:
            amp, a, b = 1.0, rng.uniform(0.6, 0.95), rng.uniform(0.6, 0.95)
            u0, v0 = rng.uniform(-0.1, 0.1, size=2)
        else:
            amp = rng.uniform(-0.5, 1.0)
            a, b = rng.uniform(0.05, 0.6, size=2)
            u0, v0 = rng.uniform(-0.7, 0.7, size=2)
        phi = rng.uniform(0, np.pi)
        c, s = np.cos(phi), np.sin(phi)
        du, dv = u - u0, v - v0
        up, vp = du * c + dv * s, -du * s + dv * c
        img[(up / a) ** 2 + (vp / b) ** 2 <= 1.0] += amp
    lo, hi = img.min(), img.max()
    return ((img - lo) / (hi - lo) if hi > lo else img).astype(np.float32)


def random_atoms(p: int, rng: np.random.Generator) -> np.ndarray:
    """A random ``(p, p)`` atoms image drawn with ``rng`` (the ``atoms`` training generator):
    random lattice, spacing, column width, vacancies and dopants (:func:`atoms`)."""
    spacing = float(rng.uniform(4.0, min(16.0, p / 2)))
    return atoms(p, spacing=spacing, lattice=str(rng.choice(["hexagonal", "square"])),
                 atom_sigma=float(rng.uniform(0.12, 0.3) * spacing),
                 vacancy_rate=float(rng.uniform(0.0, 0.15)),
                 dopant_rate=float(rng.uniform(0.0, 0.1)),
                 dopant_contrast=float(rng.uniform(1.2, 2.5)),
                 seed=int(rng.integers(2**31 - 1)))


def camera(n: int = 128) -> np.ndarray:
    """The classic 512 px "camera man" photograph (bundled with scikit-image), resized.

    A natural image with textures and edges; downsampled to ``(n, n)`` with Gaussian
    anti-aliasing and scaled from uint8 to :math:`[0, 1]`.

    Parameters
    ----------
    n
        Image size (pixels per side).

    Returns
    -------
    numpy.ndarray
        float32 ``(n, n)`` in :math:`[0, 1]`.
    """
    from skimage import data
    from skimage.transform import resize

    n = _check_size(n)
    img = data.camera().astype(np.float64) / 255.0
    out = resize(img, (n, n), order=1, anti_aliasing=True, preserve_range=True)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


SAMPLE_IMAGES: dict[str, Callable[[int], np.ndarray]] = {
    "shepp-logan": shepp_logan,
    "atoms": atoms,
    "camera": camera,
}
"""Name -> generator ``f(n)`` of an ``(n, n)`` float32 ground-truth image in :math:`[0, 1]`."""
