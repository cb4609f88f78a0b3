r"""Few-step posterior sampling by range-null-space decomposition (DDNM).

Wang, Yu & Zhang, "Zero-shot image restoration using denoising diffusion null-space model",
ICLR 2023, in the variance-exploding form of :mod:`.diffusion`. Each step denoises,
:math:`\hat x_0 = D(x_t, \sigma_t)`, replaces the part of :math:`\hat x_0` the measurement
sees by the measurement,

.. math::

    \hat x_0' = A^+ y + (I - A^+ A)\,\hat x_0,

(only where the measurement is less noisy than the next level), and steps to the next level
from :math:`\hat x_0'` (:func:`~.diffusion_steps.ddnm_update`). The correction costs no
network evaluation. What limits a short schedule is how fast the denoiser fills the null
space (each step gains about as much as the last, whatever the level); over-relaxing the
null-space prediction between steps (``relax`` :math:`\omega`),

.. math::

    (I - A^+A)\,\hat x_{0,k}' = (I - A^+A)\big(\hat x_{0,k-1}' + \omega\,(\hat x_{0,k} -
    \hat x_{0,k-1}')\big),

carries that progress further per network evaluation. ``steps`` network evaluations per
sample, the ``n_samples`` chains as one batch.

Few levels need a good start. By default the chains start from a plug-and-play estimate
(``init="estimate"``, :func:`~.diffusion_steps.start_chains`): ``estimate_iters`` DPIR
iterations with the score model on one chain per measurement, which cost :math:`1/N` of a
level each, then ``steps`` levels from ``sigma_max`` (8 iterations and 10 levels from 0.1;
on ``mri`` 120 iterations, 5 levels from 0.05, since a k-space mask's aliasing needs a long
estimate). On the allowed tuning draws (phantoms 100-101, 256 px, 8 samples, two threads)
this took 17-19 s at 8x MRI for 41.7 / 37.2 dB where ``ddrm`` took 100 s for 42.4 / 36.4 dB
and the measurement start with 20 levels 21 s for 31.2 / 30.7 dB; at 4x 47.6 dB (``ddrm``
47.0) and under blur sigma 3 33.2 dB in 5 s (``diffpir`` 32.1 dB in 24 s). At 128 px
(phantoms and atoms 100-101) against the measurement start with 20 levels: 4x MRI +2.9 dB,
blur +1.1, super-resolution +0.4, 50 % inpainting -0.2 on average.

:math:`A^+` is exact in the spectral basis of :func:`~..operators.svd.spectral_svd`
(:data:`~..operators.svd.SVD_FAMILIES`): the k-space mask for MRI, the pixel mask for
inpainting, the Fourier transfer function for blur (truncated where :math:`|K|` falls below
:data:`RCOND` of its maximum, and per frequency only where :math:`\sigma_y/|K|` is below the
next level: a level-dependent truncated inverse filter), the aliasing blocks for
super-resolution. Operators without such a basis are refused, naming the samplers that
support them.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

from ..errors import InputError
from ..operators.svd import SVD_FAMILIES, spectral_svd
from ..params import param, redefault
from ..state import IterState
from .diffusion import DiffusionParams, _setup, estimate_steps
from .diffusion_steps import SampleBatch, ddnm_update, start_chains, white_noise
from .registry import register_method

Tensor = torch.Tensor

__all__ = ["DDNMParams", "ddnm", "RCOND"]

#: singular values below this fraction of the largest are treated as unmeasured (the
#: numerical null space, as in the blur operator's truncated pseudo-inverse)
RCOND = 1e-3


@dataclass
class DDNMParams(DiffusionParams):
    r"""Range-null-space sampling (DDNM): few levels, data-consistent predictions."""

    # defaults measured on allowed tuning draws (atoms and phantoms draw 100, 128 px, 8
    # samples; never the benchmark's), from the measurement start: eta 1 beat 0.85 and 0.5 at
    # 10 levels (4x MRI: -3.3 and -5.1 dB on phantoms, -2.2 / -3.8 on atoms); relax 1.8 beat 1
    # on every MRI case (4x phantoms +3.4 dB at 10 levels, 8x phantoms +1.8 at 20) and tied on
    # blur (-0.3 to +0.2). From the estimate (phantoms 100-101, 256 px): sigma_max 0.05 and
    # 0.1 within 0.4 dB of each other at 5-8 levels; the estimate's length decides 8x MRI
    # (100 / 150 iterations: 41.5 / 44.0 dB on draw 100), the time budget sets 120

    steps: int = redefault(DiffusionParams, "steps", 10)
    sigma_max: float = redefault(DiffusionParams, "sigma_max", 0.1)
    init: str = redefault(DiffusionParams, "init", "estimate")
    estimate_iters: int = redefault(DiffusionParams, "estimate_iters", 8)
    eta: float = param(1.0, "eta: fresh-noise share of each step (1 = fresh noise only, "
                       "0 = deterministic)", min=0.0, max=1.0, step=0.05)
    relax: float = param(1.8, "omega: over-relaxation of the null-space prediction between "
                         "steps (1 = plain DDNM)", min=1.0, max=2.0, step=0.1)


def noise_levels(svd: Any, noise_sigma: float) -> Tensor:
    r""":math:`\tau_i = \sigma_y / s_i`: the noise std of each measured spectral coordinate
    (0 for noiseless data), :math:`\infty` where :math:`s_i \le` :data:`RCOND`
    :math:`\max s` (unmeasured)."""
    sv = svd.s
    measured = sv > RCOND * float(sv.max())
    return torch.where(measured, noise_sigma / torch.where(measured, sv, 1.0),
                       torch.full_like(sv, math.inf))


#: a k-space mask's aliasing needs a longer estimate (as DPIR's iterations on MRI), and from a
#: good estimate a few levels at lower noise suffice
DDNM_OPERATOR_DEFAULTS = {"mri": {"estimate_iters": 120, "steps": 5, "sigma_max": 0.05}}


@register_method("ddnm", DDNMParams, operators=SVD_FAMILIES, stochastic=True,
                 operator_defaults=DDNM_OPERATOR_DEFAULTS)
@torch.no_grad()
def ddnm(y: Tensor, op: Any, p: DDNMParams, *, x0: Tensor | None = None,
         generator: torch.Generator | None = None) -> Iterator[IterState]:
    r"""DDNM (Wang, Yu & Zhang, ICLR 2023): range-null-space correction, few levels.

    In the basis :math:`\bar x = V^H x` of :func:`~..operators.svd.spectral_svd`, with
    :math:`\bar y = \Sigma^{-1} U^H y` on the measured coordinates, each level denoises,
    :math:`\hat x_0 = D(x, \sigma)`, over-relaxes the null-space coordinates from the last
    prediction, :math:`\bar x_{0,i} \leftarrow \bar x_{0,i}' + \omega(\bar x_{0,i} -
    \bar x_{0,i}')` (the previous step's), and :func:`~.diffusion_steps.ddnm_update` sets the
    measured coordinates to :math:`\bar y` where the measurement noise :math:`\tau_i =
    \sigma_y / s_i` is below the next level (:math:`\hat x_0' = A^+ y + (I - A^+ A)\hat x_0`)
    and steps to the next level with the fresh-noise share :math:`\eta`. The yielded
    ``x0_hat`` is the corrected :math:`\hat x_0'`; with noiseless data every prediction and
    every sample satisfies :math:`A x = y`. With :math:`\omega = 1` and :math:`\eta` the
    ancestral share it samples a Gaussian posterior exactly as the levels grow;
    :math:`\eta = \omega = 1` is ``ddrm`` with :math:`\eta = \eta_b = 1`.

    Raises
    ------
    InputError
        For an operator without a spectral decomposition (CT, compressed sensing, multi-coil
        MRI: use ``diffpir`` or ``dps``), ``eta`` outside [0, 1], ``relax`` outside [1, 2]
        or a missing score model.
    """
    name = getattr(op, "name", type(op).__name__)
    if name not in SVD_FAMILIES:
        raise InputError(f"ddnm needs an exact pseudo-inverse in a spectral basis, which "
                         f"operator {name!r} lacks; ddnm supports {', '.join(SVD_FAMILIES)} "
                         "(use diffpir or dps instead)")
    eta, relax = float(p.eta), float(p.relax)
    if not 0 <= eta <= 1:
        raise InputError(f"ddnm eta must lie in [0, 1], got {eta}")
    if not 1 <= relax <= 2:
        raise InputError(f"ddnm relax must lie in [1, 2], got {relax}")
    den, y, sched, n = _setup(y, op, p, x0, "ddnm")
    svd = spectral_svd(op)
    tau = noise_levels(svd, float(p.noise_sigma))
    yb = svd.observed(y).repeat_interleave(n, dim=0)
    batch = SampleBatch(y, op, n, "ddnm", sched, lead=estimate_steps(p))
    x = yield from start_chains(y, op, p, den, batch, x0, generator)
    null = torch.isinf(tau)
    state, prev = None, None
    for k, s, s_next in batch.steps():
        x0b = svd.Vh(den(x, s))
        if prev is not None and relax != 1.0:
            x0b = torch.where(null, prev + relax * (x0b - prev), x0b)
        noise = svd.Vh(white_noise(x, generator))
        xb, x0b = ddnm_update(svd.Vh(x), x0b, yb, tau, s, s_next, eta, noise)
        prev = x0b
        x = svd.V(xb).to(x.dtype)
        state = batch.state(k, x, svd.V(x0b).to(x.dtype))
        yield state
    return state
