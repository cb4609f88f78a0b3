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
from ..params import param
from ..state import IterState
from .diffusion import DiffusionParams, _setup, _steps_param
from .diffusion_steps import SampleBatch, ddnm_update, start_state, white_noise
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
    # samples; never the benchmark's): eta 1 beat 0.85 and 0.5 at 10 levels (4x MRI: -3.3 and
    # -5.1 dB on phantoms, -2.2 / -3.8 on atoms); relax 1.8 beat 1 on every MRI case (4x
    # phantoms +3.4 dB at 10 levels, 8x phantoms +1.8 at 20) and tied on blur (-0.3 to +0.2);
    # 20 levels matched ddrm's 100 on 4x MRI (phantoms 41.8 vs 41.5 dB, atoms 37.2 vs 37.1)

    steps: int = _steps_param(20)
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


@register_method("ddnm", DDNMParams, operators=SVD_FAMILIES, stochastic=True)
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
    x = start_state(y, op, p.init, sched[0], n, x0, generator)
    batch = SampleBatch(y, op, n, "ddnm", sched)
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
