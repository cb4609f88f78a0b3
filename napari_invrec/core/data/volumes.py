r"""Synthetic 3-D volumes: a fluorescence-like z-stack of cells, filaments and beads.

:func:`cells_volume` draws, on a ``(D, H, W)`` grid with values in [0, 1]:

* nuclei: ellipsoids :math:`\sum_a ((p_a - c_a) / r_a)^2 \le 1` with a smooth edge (one voxel
  wide) and a mild internal texture (a low-pass random field), brightness 0.3-0.7;
* filaments: random 3-D polygonal curves drawn as Gaussian tubes of width 0.8-1.2 voxels,
  brightness 0.5-1;
* beads: sub-resolution points (Gaussians of 0.7 voxels), brightness 0.6-1 (what a 3-D
  deconvolution sharpens most visibly along z).

The structures stay ``margin`` voxels away from every face, so that periodic (FFT) and
zero-padded convolution agree on the blurred volume and a deconvolution can be compared with
one that models the boundary otherwise (scikit-image's Richardson-Lucy).
"""

from __future__ import annotations

import numpy as np

__all__ = ["cells_volume"]


def _gauss_field(rng: np.random.Generator, shape: tuple[int, ...], sigma: float) -> np.ndarray:
    """Low-pass random field in [0, 1] (white noise filtered by a Gaussian in Fourier)."""
    f = np.fft.fftn(rng.standard_normal(shape))
    k2 = sum(np.fft.fftfreq(n)[(slice(None),) + (None,) * (len(shape) - 1 - a)] ** 2
             for a, n in enumerate(shape))
    g = np.real(np.fft.ifftn(f * np.exp(-2 * (np.pi * sigma) ** 2 * k2)))
    return (g - g.min()) / max(float(np.ptp(g)), 1e-12)


def cells_volume(shape: tuple[int, int, int] = (32, 128, 128), *, seed: int = 0,
                 nuclei: int | None = None, filaments: int | None = None,
                 beads: int | None = None, margin: int | None = None) -> np.ndarray:
    """A fluorescence-like volume ``(D, H, W)`` in [0, 1], float32 (module docstring).

    Parameters
    ----------
    shape
        ``(D, H, W)``, each at least 8.
    seed
        Seed of the random structures.
    nuclei, filaments, beads
        Numbers of each structure (default: scaled with the volume).
    margin
        Empty voxels kept along every face (default ``max(2, min(shape) // 8)``).
    """
    d, h, w = (int(n) for n in shape)
    if min(d, h, w) < 8:
        raise ValueError(f"cells_volume needs at least 8 voxels per axis, got {shape}")
    rng = np.random.default_rng(seed)
    m = max(2, min(d, h, w) // 8) if margin is None else int(margin)
    scale = (h * w) / 128 ** 2
    nuclei = max(1, round(6 * scale)) if nuclei is None else nuclei
    filaments = max(1, round(10 * scale)) if filaments is None else filaments
    beads = max(1, round(40 * scale)) if beads is None else beads
    z, y, x = np.meshgrid(np.arange(d), np.arange(h), np.arange(w), indexing="ij")
    pos = (z.astype(np.float32), y.astype(np.float32), x.astype(np.float32))
    lo = np.full(3, m + 2.0)  # centres keep most of each tail inside the margin
    hi = np.array([d - 3 - m, h - 3 - m, w - 3 - m], float)
    vol = np.zeros((d, h, w), np.float32)
    texture = _gauss_field(rng, (d, h, w), 2.0).astype(np.float32)
    for _ in range(nuclei):
        r = rng.uniform([0.18 * d, 0.06 * h, 0.06 * w], [0.3 * d, 0.12 * h, 0.12 * w])
        c = rng.uniform(lo + r, np.maximum(hi - r, lo + r + 1e-3))
        q = np.sqrt(sum(((p - ci) / ri) ** 2 for p, ci, ri in zip(pos, c, r)))
        edge = np.clip((1.0 - q) * min(r) + 0.5, 0.0, 1.0)  # one voxel wide
        vol = np.maximum(vol, edge * rng.uniform(0.3, 0.7) * (0.75 + 0.25 * texture))
    for _ in range(filaments):
        pts = [rng.uniform(lo, hi)]
        for _ in range(4):
            pts.append(np.clip(pts[-1] + rng.normal(0, [0.2 * d, 0.2 * h, 0.2 * w]), lo, hi))
        width, bright = rng.uniform(0.8, 1.2), rng.uniform(0.5, 1.0)
        for a, b in zip(pts[:-1], pts[1:]):
            n = int(np.ceil(np.linalg.norm(b - a) * 2)) + 1
            for t in np.linspace(0, 1, n):
                p = a + t * (b - a)
                sl = tuple(slice(max(0, int(pc) - 3), int(pc) + 4) for pc in p)
                dist2 = sum((pp[sl] - pc) ** 2 for pp, pc in zip(pos, p))
                vol[sl] = np.maximum(vol[sl], bright * np.exp(-dist2 / (2 * width ** 2)))
    for _ in range(beads):
        p = rng.uniform(lo, hi)
        sl = tuple(slice(max(0, int(pc) - 3), int(pc) + 4) for pc in p)
        dist2 = sum((pp[sl] - pc) ** 2 for pp, pc in zip(pos, p))
        vol[sl] = np.maximum(vol[sl], rng.uniform(0.6, 1.0) * np.exp(-dist2 / (2 * 0.7 ** 2)))
    inner = np.zeros_like(vol)
    inner[m:d - m, m:h - m, m:w - m] = 1.0  # cut the last tails: the faces stay exactly empty
    return (np.clip(vol, 0.0, 1.0) * inner).astype(np.float32)
