r"""Measurement noise models.

``y = N(A x)`` where ``N`` is one of

* ``none``: :math:`y = z`;
* ``gaussian``: :math:`y = z + \sigma n`, :math:`n \sim \mathcal N(0, I)`; for complex ``z``
  (k-space) the noise is circular complex Gaussian with :math:`E|n|^2 = \sigma^2`;
* ``poisson``: :math:`y = \mathrm{Poisson}(\alpha z) / \alpha` with photon count :math:`\alpha`
  (``z`` must be non-negative);
* ``poisson-gaussian``: Poisson as above, plus Gaussian read noise of std :math:`\sigma`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import InputError
from ..params import param

NOISE_MODELS = ("none", "gaussian", "poisson", "poisson-gaussian")


@dataclass
class NoiseParams:
    """How measurement noise is simulated."""

    model: str = param("gaussian", "noise model", choices=NOISE_MODELS)
    sigma: float = param(0.03, "Gaussian noise std (image intensities in [0, 1])",
                         min=0.0, max=10.0, step=0.005,
                         when={"model": ("gaussian", "poisson-gaussian")})
    photons: float = param(100.0, "Poisson photon count per unit intensity",
                           min=1e-3, max=1e9,
                           when={"model": ("poisson", "poisson-gaussian")})
    seed: int = param(0, "random seed of the noise (and of random masks)", min=0, max=2**31 - 1)


def add_noise(z: torch.Tensor, p: NoiseParams, generator: torch.Generator | None = None
              ) -> torch.Tensor:
    """Return a noisy copy of the clean measurement ``z`` following ``p``.

    Raises
    ------
    InputError
        For Poisson noise on complex or negative data, or an unknown model.
    """
    if p.model not in NOISE_MODELS:
        raise InputError(f"unknown noise model {p.model!r}; choose one of {NOISE_MODELS}")
    if generator is None:
        generator = torch.Generator(device=z.device).manual_seed(int(p.seed))
    if p.model == "none":
        return z.clone()
    y = z
    if p.model in ("poisson", "poisson-gaussian"):
        if z.is_complex():
            raise InputError("Poisson noise needs a real, non-negative measurement; "
                             "use Gaussian noise for k-space")
        if float(z.min()) < -1e-6:
            raise InputError("Poisson noise needs non-negative intensities; rescale the image "
                             "to [0, 1] first")
        rate = z.clamp_min(0) * p.photons
        y = torch.poisson(rate, generator=generator) / p.photons
    if p.model in ("gaussian", "poisson-gaussian") and p.sigma > 0:
        if z.is_complex():
            re = torch.randn(z.shape, generator=generator, device=z.device)
            im = torch.randn(z.shape, generator=generator, device=z.device)
            n = torch.complex(re, im).to(z.dtype) * (p.sigma / 2 ** 0.5)
        else:
            n = torch.randn(z.shape, generator=generator, device=z.device, dtype=z.dtype) * p.sigma
        y = y + n
    return y


def noise_std(p: NoiseParams, level: float = 1.0) -> float:
    """Effective per-sample noise std (Poisson approximated at intensity ``level``)."""
    var = 0.0
    if p.model in ("gaussian", "poisson-gaussian"):
        var += p.sigma ** 2
    if p.model in ("poisson", "poisson-gaussian"):
        var += level / p.photons
    return var ** 0.5
