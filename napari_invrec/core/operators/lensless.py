r"""Lensless (diffuser) imaging: a large caustic PSF, then the finite sensor.

A mask-based lensless camera (DiffuserCam, Antipa et al., Optica 2018) replaces the lens by a
thin diffuser: a point of the scene casts a large caustic pattern on the sensor, and the
sensor records the sum of these shifted patterns over the part that lands on it. With the
scene :math:`x` and the sensor both :math:`H \times W` and a PSF :math:`k` of the same size,

.. math::

    A x = C\,\mathcal F^{-1}\big(K \odot \mathcal F\,P x\big), \qquad
    A^H y = P^H\,\mathcal F^{-1}\big(\overline K \odot \mathcal F\,C^H y\big),

where :math:`P` zero-pads the scene to the centre of a :math:`2H \times 2W` grid, the
circular convolution by :math:`K = \mathcal F k` on that grid is the *linear* convolution (the
grid holds the scene plus the PSF's spread), and :math:`C = P^H` crops the sensor window back.
Light a scene point sends past the sensor's edge is lost, so, unlike a blur, :math:`A` is not
diagonal in any Fourier basis (the data steps of the splitting methods use CG) and the border
of the scene is seen through part of the PSF only.

The crop makes :math:`A` severely ill-conditioned (CG on the normal equations, even in float64,
does not bring the range residual to 1e-4 in 2000 iterations), so the pseudo-inverse is the
regularised one, with :math:`\rho = (\tau \|A\|)^2` and :math:`\tau` =
:attr:`Lensless.pinv_rcond`:

.. math::

    A^+_\tau y = (A^H A + \rho I)^{-1} A^H y \quad (:attr:`Lensless.pinv_iters` CG
    iterations),

whose range residual :math:`\|A A^+_\tau A x - A x\|` is at most
:math:`\tfrac{\tau}{2}\|A\|\,\|x\|`: singular values below about :math:`\tau\|A\|` form
the numerical null space.

PSFs: ``caustic`` (default), a simulated diffuser (:func:`caustic_psf`): rays through a random
smooth thin phase surface :math:`h` land at :math:`r + d\,\nabla h(r)` and their density is the
caustic (sharp bright curves that spread over the aperture); or ``custom``, a measured PSF
(2-D, at most the scene's size; normalised to sum 1). :math:`\|A\|_2 \le \max|K| = 1` for a
non-negative PSF of sum 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from scipy import ndimage

from ..errors import InputError
from ..linalg import conjugate_gradient
from ..params import param
from .base import LinearOperator
from .blur import periodic_embed
from .registry import register_operator

Tensor = torch.Tensor
PSFS = ("caustic", "custom")


@dataclass
class LenslessParams:
    """Diffuser PSF of a lensless camera (scene and sensor of the same size)."""

    psf: str = param("caustic", "point-spread function: a simulated diffuser caustic or a "
                     "measured PSF", choices=PSFS)
    aperture: float = param(0.7, "diameter of the diffuser's aperture, as a fraction of the "
                            "sensor (the caustic's extent)", min=0.1, max=1.0, step=0.05,
                            when={"psf": "caustic"})
    feature: float = param(0.03, "size of the diffuser's bumps, as a fraction of the sensor",
                           min=0.01, max=0.5, step=0.01, when={"psf": "caustic"})
    strength: float = param(0.03, "ray deflection: how far the diffuser bends light, as a "
                            "fraction of the sensor (sharper caustics when larger)", min=0.0,
                            max=0.5, step=0.01, when={"psf": "caustic"})
    seed: int = param(0, "seed of the diffuser surface", min=0, max=2**31 - 1,
                      when={"psf": "caustic"})
    kernel_array: Any = param(None, "measured PSF (2-D, at most the scene's size; normalised "
                              "to sum 1)", gui=False, when={"psf": "custom"})


def caustic_psf(shape: tuple[int, int], *, aperture: float = 0.7, feature: float = 0.03,
                strength: float = 0.03, seed: int = 0, rays: int = 3) -> np.ndarray:
    r"""A simulated diffuser caustic of ``shape`` (float64, sum 1, centred).

    A height map :math:`h` (white noise drawn from ``seed``, smoothed periodically by a
    Gaussian of std ``feature`` times the shorter side) bends a ray entering at :math:`r`
    inside a circular aperture (diameter ``aperture`` times the shorter side) to
    :math:`r + d\,\nabla h(r) / \mathrm{rms}|\nabla h|`, :math:`d` = ``strength`` times the
    shorter side; ``rays`` x ``rays`` rays per pixel are splatted bilinearly and the density
    smoothed by a Gaussian of 0.6 px. Deterministic for the same arguments (numpy only).
    """
    h, w = (int(v) for v in shape)
    n = min(h, w)
    rng = np.random.default_rng([int(seed), 17])
    s = int(rays)
    sig = max(float(feature) * n * s, 0.5)  # periodic Gaussian smoothing, done in Fourier
    fy, fx = np.fft.fftfreq(h * s)[:, None], np.fft.rfftfreq(w * s)[None, :]
    surface = np.fft.irfft2(np.fft.rfft2(rng.standard_normal((h * s, w * s)))
                            * np.exp(-2 * math.pi ** 2 * sig ** 2 * (fy ** 2 + fx ** 2)),
                            s=(h * s, w * s))
    gy, gx = np.gradient(surface)
    rms = math.sqrt(float(np.mean(gy ** 2 + gx ** 2))) or 1.0
    d = float(strength) * n
    yy, xx = np.meshgrid((np.arange(h * s) + 0.5) / s - 0.5, (np.arange(w * s) + 0.5) / s - 0.5,
                         indexing="ij")
    cy, cx = (h - 1) / 2, (w - 1) / 2
    inside = (yy - cy) ** 2 + (xx - cx) ** 2 <= (float(aperture) * n / 2) ** 2
    ty = (yy + d * gy / rms)[inside]
    tx = (xx + d * gx / rms)[inside]
    y0, x0 = np.floor(ty).astype(int), np.floor(tx).astype(int)
    ry, rx = ty - y0, tx - x0
    out = np.zeros(h * w)
    for dy, wy in ((0, 1 - ry), (1, ry)):
        for dx, wx in ((0, 1 - rx), (1, rx)):
            r, c = y0 + dy, x0 + dx
            ok = (r >= 0) & (r < h) & (c >= 0) & (c < w)
            out += np.bincount((r * w + c)[ok], weights=(wy * wx)[ok], minlength=h * w)
    out = ndimage.gaussian_filter(out.reshape(h, w), 0.6, mode="constant")
    total = out.sum()
    if not total > 0:
        raise InputError("the diffuser sends no light onto the PSF grid; lower strength")
    return out / total


def lensless_psf(p: LenslessParams, shape: tuple[int, int]) -> np.ndarray:
    """The PSF of ``p`` for a scene of ``shape`` (float64, sum 1).

    Raises
    ------
    InputError
        An unknown PSF kind, or a custom PSF that is missing, not 2-D, larger than the scene,
        not finite, negative in sum or zero.
    """
    if p.psf == "caustic":
        for name in ("aperture", "feature", "strength"):
            v = float(getattr(p, name))
            if not (math.isfinite(v) and v >= 0) or (name != "strength" and v == 0):
                raise InputError(f"lensless {name} must be > 0, got {v}")
        return caustic_psf(shape, aperture=p.aperture, feature=p.feature, strength=p.strength,
                           seed=p.seed)
    if p.psf != "custom":
        raise InputError(f"lensless psf must be one of {PSFS}, got {p.psf!r}")
    if p.kernel_array is None:
        raise InputError("a custom lensless PSF needs kernel_array (a measured 2-D PSF; in the "
                         "GUI: an Image layer in 'kernel from layer')")
    k = np.asarray(p.kernel_array, dtype=np.float64)
    if k.ndim != 2 or k.shape[0] > shape[0] or k.shape[1] > shape[1]:
        raise InputError(f"the PSF must be 2-D and at most the scene's size {shape}, got shape "
                         f"{k.shape}")
    if not np.isfinite(k).all() or not k.sum() > 0:
        raise InputError("the PSF must be finite with a positive sum")
    return k / k.sum()


@register_operator
class Lensless(LinearOperator):
    r"""Lensless (diffuser) camera: linear convolution with a large PSF, cropped by the sensor.

    See the module docstring for the maths.

    Attributes
    ----------
    pinv_rcond
        :math:`\tau` of the regularised pseudo-inverse :meth:`A_pinv`.
    transfer_function
        Buffer, complex64 ``(2H, W + 1)``: :math:`K`, the PSF's ``rfft2`` on the padded grid.
    """

    name = "lensless"
    Params = LenslessParams
    pinv_rcond: ClassVar[float] = 1e-2
    pinv_iters: ClassVar[int] = 300

    def __init__(self, shape: tuple[int, int], params: LenslessParams | None = None, *,
                 device: torch.device | str | None = None) -> None:
        super().__init__(shape, params, device=device)
        h, w = self.shape
        self.padded = (2 * h, 2 * w)
        self._origin = (h // 2, w // 2)  # top-left corner of the scene on the padded grid
        k = lensless_psf(self.params, (h, w))
        self._psf = k.astype(np.float32)
        kf = np.fft.rfft2(periodic_embed(k, self.padded))
        self.register_buffer("transfer_function",
                             torch.from_numpy(kf.astype(np.complex64)).to(self.device),
                             persistent=False)

    def _pad(self, x: Tensor) -> Tensor:
        """:math:`P`: the scene at the centre of the zero padded grid."""
        (h, w), (r, c) = self.shape, self._origin
        g = x.new_zeros((*x.shape[:-2], *self.padded))
        g[..., r:r + h, c:c + w] = x
        return g

    def _crop(self, g: Tensor) -> Tensor:
        """:math:`C = P^H`: the sensor window."""
        (h, w), (r, c) = self.shape, self._origin
        return g[..., r:r + h, c:c + w]

    def _convolve(self, g: Tensor, f: Tensor) -> Tensor:
        return torch.fft.irfft2(torch.fft.rfft2(g) * f, s=self.padded)

    def A(self, x: Tensor) -> Tensor:  # noqa: N802
        """Sensor image :math:`C\\,\\mathcal F^{-1}(K \\odot \\mathcal F P x)`."""
        self.check_image(x)
        return self._crop(self._convolve(self._pad(self.as_image(x)), self.transfer_function))

    def A_adjoint(self, y: Tensor) -> Tensor:  # noqa: N802
        """:math:`P^H \\mathcal F^{-1}(\\overline K \\odot \\mathcal F C^H y)` (real image)."""
        self.check_measurement(y)
        return self._crop(self._convolve(self._pad(self.as_measurement(y)),
                                         torch.conj(self.transfer_function)))

    def A_pinv(self, y: Tensor) -> Tensor:  # noqa: N802
        """Regularised pseudo-inverse :math:`(A^H A + (\tau\\|A\\|)^2 I)^{-1} A^H y` by CG (see
        the module docstring)."""
        rho = (self.pinv_rcond * self.norm()) ** 2
        return conjugate_gradient(lambda v: self.AtA(v) + rho * v, self.A_adjoint(y),
                                  tol=1e-7, maxiter=self.pinv_iters)

    def psf_image(self) -> np.ndarray:
        """The PSF as a float32 ``(H, W)`` array (sum 1, centre at ``(H // 2, W // 2)``)."""
        return self._psf.copy()

    def measurement_views(self, y: Tensor) -> dict[str, Tensor]:
        """``psf``: the diffuser's PSF (what one point of the scene casts on the sensor)."""
        return {"psf": torch.from_numpy(self._psf).to(y.device)}
