r"""Diffusion posterior samplers with a denoiser as the score model.

Variance-exploding diffusion :math:`x_\sigma = x_0 + \sigma n`; the score comes from a
denoiser by Tweedie, :math:`\nabla\log p_\sigma(x) = (D(x, \sigma) - x)/\sigma^2` (see
:mod:`.diffusion_steps`). Every sampler runs ``n_samples`` chains per measurement as one batch
through a decreasing schedule :math:`\sigma_0 = \sigma_{\max} > \dots > \sigma_{\min}` and a
last step to :math:`\sigma = 0`, and yields every step the mean over the chains of the
denoised prediction :math:`\hat x_0 = D(x_t, \sigma_t)`, with extras ``x_t`` (noisy state of
the first chain), ``x0_hat`` (its prediction), ``std`` and ``samples`` (all predictions).
The last step's predictions are the posterior samples.

* ``score-dc``: reverse-SDE steps plus data consistency (Chung & Ye, MedIA 2022);
* ``dps``: diffusion posterior sampling (Chung et al., ICLR 2023);
* ``ddrm``: denoising diffusion restoration models (Kawar et al., NeurIPS 2022), in the
  spectral basis of :mod:`~..operators.svd`;
* ``diffpir``: plug-and-play diffusion with a data proximal step (Zhu et al., CVPRW 2023).

``init="measurement"`` (default) starts at :math:`x_{\mathrm{start}} + \sigma_{\max} n` from
the smooth data-consistent image ("come closer, diffuse faster"), so denoisers trained up to
:math:`\sigma = 0.25` (the shipped DRUNets) suffice; ``init="noise"`` starts from pure noise
around 0.5 and needs :math:`\sigma_{\max}` several times the data's spread.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

from ..denoisers import DEFAULT_DENOISER, denoiser_names, get_denoiser
from ..errors import InputError
from ..linalg import is_projection, normal_solver
from ..operators.svd import SVD_FAMILIES, spectral_svd
from ..params import param, redefault
from ..state import IterState
from .classical import lipschitz, prepare
from .diffusion_steps import (
    INITS,
    SCHEDULES,
    SampleBatch,
    ddrm_update,
    insert_level,
    langevin_step,
    sigma_schedule,
    start_chains,
    ve_step,
    white_noise,
)
from .registry import register_method

Tensor = torch.Tensor

__all__ = ["score_dc", "dps", "ddrm", "diffpir", "ddrm_update", "estimate_steps",
           "ScoreDCParams", "DPSParams", "DDRMParams", "DiffPIRParams"]


@dataclass
class DiffusionParams:
    """Settings shared by the diffusion samplers."""

    denoiser: str = param(DEFAULT_DENOISER, "score model: a noise-conditional denoiser",
                          choices=denoiser_names, network=True)
    steps: int = param(50, "noise levels of the schedule (denoiser calls per sample)", min=1,
                       max=10000)
    sigma_max: float = param(0.25, "first noise level (init=noise: several times the data "
                             "spread, e.g. 1)", min=1e-4, max=100.0, step=0.05)
    sigma_min: float = param(0.005, "last noise level before the final denoising step",
                             min=1e-5, max=10.0, step=0.001)
    schedule: str = param("geometric", "noise schedule", choices=SCHEDULES)
    rho: float = param(7.0, "karras schedule exponent", min=0.1, max=100.0,
                       when={"schedule": "karras"})
    init: str = param("measurement", "start: measurement (smooth start + noise), noise (0.5 + "
                      "sigma_max n) or estimate (a plug-and-play estimate with the score "
                      "model + noise)", choices=INITS)
    estimate_iters: int = param(40, "iterations of the plug-and-play estimate, one chain per "
                                "measurement (DPIR with the score model)", min=1, max=10000,
                                when={"init": "estimate"})
    n_samples: int = param(4, "posterior samples per measurement (one batch)", min=1,
                           max=4096)
    noise_sigma: float = param(0.01, "std of the measurement noise", min=0.0, max=10.0,
                               step=0.005, noise=True)


def estimate_steps(p: DiffusionParams) -> int:
    """Steps the run spends on its shared start before the levels: ``p.estimate_iters`` with
    ``init="estimate"`` (:func:`~.diffusion_steps.start_chains`), else 0."""
    return int(p.estimate_iters) if p.init == "estimate" else 0


def _setup(y: Tensor, op: Any, p: DiffusionParams, x0: Tensor | None, name: str
           ) -> tuple[Any, Tensor, list[float], int]:
    """Denoiser (InputError when its weights are missing), checked measurement, schedule."""
    den = get_denoiser(p.denoiser)
    sched = sigma_schedule(p.sigma_max, p.sigma_min, p.steps, p.schedule, p.rho)
    n = int(p.n_samples)
    if n < 1:
        raise InputError(f"{name} n_samples must be >= 1, got {n}")
    if not (math.isfinite(float(p.noise_sigma)) and p.noise_sigma >= 0):
        raise InputError(f"{name} noise_sigma must be >= 0, got {p.noise_sigma}")
    y, x0 = prepare(y, op, x0)
    return den, y, sched, n


# ---------------------------------------------------------------------- score-dc
@dataclass
class ScoreDCParams(DiffusionParams):
    r"""Reverse-SDE sampling with a data-consistency step every level."""

    dc_weight: float = param(1.0, "data-consistency weight lambda (1 = full projection / "
                             "Landweber step)", min=0.0, max=2.0, step=0.1)
    corrector_steps: int = param(0, "annealed Langevin corrector steps per level", min=0,
                                 max=20)
    snr: float = param(0.16, "Langevin corrector signal-to-noise ratio", min=1e-4, max=1.0,
                       step=0.01)


@register_method("score-dc", ScoreDCParams, stochastic=True)
@torch.no_grad()
def score_dc(y: Tensor, op: Any, p: ScoreDCParams, *, x0: Tensor | None = None,
             generator: torch.Generator | None = None) -> Iterator[IterState]:
    r"""Score-based sampling with data consistency (Chung & Ye, "Score-based diffusion models
    for accelerated MRI", MedIA 2022).

    Each level: :math:`\hat x_0 = D(x, \sigma_i)`, an Euler-Maruyama step of the reverse VE
    SDE to :math:`\sigma_{i+1}` (:func:`~.diffusion_steps.ve_step`), optional Langevin
    corrector steps, then data consistency at the new level :math:`\sigma = \sigma_{i+1}`:

    * :math:`A^H A` a projection (denoise, inpaint, Cartesian MRI), noise-aware hard
      projection onto the measurement *seen at the current level*: the noisy measurement is
      the diffusion state at level :math:`\sigma_y` (``noise_sigma``) of the measured
      coordinates, so for :math:`\sigma \ge \sigma_y`

      .. math::

          x \leftarrow x + \lambda A^+\big(y + \sqrt{\sigma^2 - \sigma_y^2}\,A n - Ax\big),

      and below :math:`\sigma_y` the prior alone acts (the schedule passes through
      :math:`\sigma_y` exactly). With a Gaussian prior that factorises over measured and
      unmeasured coordinates and :math:`\lambda = 1` this samples the exact posterior as the
      step count grows;
    * otherwise a weighted Landweber step
      :math:`x \leftarrow x - \lambda\,\frac{\sigma^2}{\sigma^2 + \sigma_y^2}
      \frac{A^H(Ax - y)}{\|A\|^2}`, full strength at high noise and fading where the
      measurement noise dominates.
    """
    den, y, sched, n = _setup(y, op, p, x0, "score-dc")
    sig_y, lam = float(p.noise_sigma), float(p.dc_weight)
    proj = is_projection(op, op.A_adjoint(y))
    if proj and sig_y >= sched[0]:
        raise InputError(f"score-dc: noise_sigma ({sig_y}) must be below sigma_max "
                         f"({sched[0]}); raise sigma_max")
    if proj:
        sched = insert_level(sched, sig_y)
    step = None if proj else 1.0 / lipschitz(op, "score-dc")
    yy = y.repeat_interleave(n, dim=0)
    batch = SampleBatch(y, op, n, "score-dc", sched, lead=estimate_steps(p))
    x = yield from start_chains(y, op, p, den, batch, x0, generator)
    state = None
    for k, s, s_next in batch.steps():
        x0_hat = den(x, s)
        x = ve_step(x, x0_hat, s, s_next, generator)
        if s_next > 0:
            for _ in range(int(p.corrector_steps)):
                x = langevin_step(den, x, s_next, float(p.snr), generator)
        if proj and s_next >= sig_y:
            extra = math.sqrt(max(s_next * s_next - sig_y * sig_y, 0.0))
            target = yy + extra * op.A(white_noise(x, generator)) if extra > 0 else yy
            x = x + lam * op.A_pinv(target - op.A(x))
        elif not proj:
            w = lam * step * (s_next * s_next / (s_next * s_next + sig_y * sig_y)
                              if s_next > 0 or sig_y > 0 else 1.0)
            x = x - w * op.A_adjoint(op.A(x) - yy)
        state = batch.state(k, x, x0_hat)
        yield state
    return state


# ---------------------------------------------------------------------- DPS
@dataclass
class DPSParams(DiffusionParams):
    r"""Diffusion posterior sampling: the measurement loss's gradient through the denoiser."""

    # zeta 2 measured on allowed photographs and generator draws (never the benchmark's):
    # better than 1 in all six cases tried (4x MRI: phantoms +7.3 dB, atoms +2.5, camera +0.8,
    # coins +0.6; 8x MRI phantoms +1.7; blur atoms +2.3); 4 and 8 were worse on 4x MRI phantoms
    zeta: float = param(2.0, "step zeta on grad_x ||y - A x0_hat(x)||", min=0.0, max=100.0,
                        step=0.1)


def _grad_denoiser(den: Any) -> Any:
    """The denoiser's differentiable form (``NetworkDenoiser.differentiable``) or itself."""
    return getattr(den, "differentiable", den)


@register_method("dps", DPSParams, stochastic=True, nonlinear=("phase",))
@torch.no_grad()
def dps(y: Tensor, op: Any, p: DPSParams, *, x0: Tensor | None = None,
        generator: torch.Generator | None = None) -> Iterator[IterState]:
    r"""Diffusion posterior sampling (Chung, Kim, McCann, Klasky & Ye, ICLR 2023), VE form.

    .. math::

        \hat x_0 = D(x_i, \sigma_i), \qquad
        x_{i+1} = \mathrm{EM}(x_i, \hat x_0; \sigma_i \to \sigma_{i+1})
                  - \zeta\, \nabla_{x_i} \|y - A\hat x_0(x_i)\|,

    the gradient taken by autograd through the denoiser (per chain; the norm, not its square,
    as in the authors' code, i.e. their :math:`\zeta_i = \zeta/\|y - A\hat x_0\|`). Not an
    exact posterior sampler: the likelihood :math:`p(y \mid x_t)` is approximated by
    :math:`p(y \mid \hat x_0(x_t))`.

    Phase retrieval (``op.name == "phase"``, intensities :math:`|G E x|^2` of :math:`K`
    patterns): the gradient of the misfit sums over the patterns (:math:`G^H G = K I`), so the
    step is :math:`\zeta / K`, and one :math:`\zeta` serves any number of patterns. The start
    (``init="measurement"``) is then the magnitude of HIO (:func:`~.starts.data_start`).
    """
    den, y, sched, n = _setup(y, op, p, x0, "dps")
    dfn = _grad_denoiser(den)
    zeta = float(p.zeta) / (float(op.gram) if op.name == "phase" else 1.0)
    yy = y.repeat_interleave(n, dim=0)
    batch = SampleBatch(y, op, n, "dps", sched, lead=estimate_steps(p))
    x = yield from start_chains(y, op, p, den, batch, x0, generator)
    state = None
    for k, s, s_next in batch.steps():
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            x0_hat = dfn(xg, s)
            loss = batch.per_sample_norm(op.A(x0_hat) - yy).sum()
            (g,) = torch.autograd.grad(loss, xg)
        x0_hat = x0_hat.detach()
        x = ve_step(x, x0_hat, s, s_next, generator) - zeta * g
        state = batch.state(k, x, x0_hat, loss=float(loss) / x.shape[0])
        yield state
    return state


# ---------------------------------------------------------------------- DDRM
@dataclass
class DDRMParams(DiffusionParams):
    r"""Denoising diffusion restoration in the operator's spectral basis."""

    # defaults measured on allowed images and generator draws (never the benchmark's): 100
    # levels beat 50 on 4x/8x MRI (camera +1.4 dB, coins +1.3, ellipse phantoms up to +6) and
    # tied on blur; then eta 1 beat 0.85 (camera +1.0, coins +0.7, phantoms +0.6 at 4x and
    # +1.2 at 8x; one atoms draw -0.3)
    steps: int = redefault(DiffusionParams, "steps", 100)
    eta: float = param(1.0, "eta: fresh-noise share of the stochastic updates", min=0.0,
                       max=1.0, step=0.05)
    eta_b: float = param(1.0, "eta_b: weight of the measurement where it is less noisy "
                         "than the current level", min=0.0, max=1.0, step=0.05)


@register_method("ddrm", DDRMParams, operators=SVD_FAMILIES, stochastic=True)
@torch.no_grad()
def ddrm(y: Tensor, op: Any, p: DDRMParams, *, x0: Tensor | None = None,
         generator: torch.Generator | None = None) -> Iterator[IterState]:
    r"""DDRM (Kawar, Elad, Ermon & Song, NeurIPS 2022), variance-exploding form.

    In the basis :math:`\bar x = V^H x` of :func:`~..operators.svd.spectral_svd` the measured
    coordinates read :math:`\bar y_i = \bar x_i + \tau_i \bar n_i`, :math:`\tau_i = \sigma_y /
    s_i`; each step denoises, :math:`\hat x_0 = D(x, \sigma)`, and updates every coordinate by
    :func:`ddrm_update`: null-space coordinates by a DDIM step, measured ones towards
    :math:`\bar y` (below their noise level) or set to :math:`\bar y` plus the noise the level
    still lacks (above it). Spectral noise :math:`\epsilon = V^H n` for white image noise
    :math:`n`, so real images stay real.
    """
    den, y, sched, n = _setup(y, op, p, x0, "ddrm")
    svd = spectral_svd(op)
    sig_y = float(p.noise_sigma)
    eta, eta_b = float(p.eta), float(p.eta_b)
    if not (0 <= eta <= 1 and 0 <= eta_b <= 1):
        raise InputError(f"ddrm eta and eta_b must lie in [0, 1], got {eta}, {eta_b}")
    sv = svd.s
    tau = torch.where(sv > 0, sig_y / torch.where(sv > 0, sv, 1.0),
                      torch.full_like(sv, math.inf))
    yb = svd.observed(y).repeat_interleave(n, dim=0)
    batch = SampleBatch(y, op, n, "ddrm", sched, lead=estimate_steps(p))
    x = yield from start_chains(y, op, p, den, batch, x0, generator)
    state = None
    for k, s, s_next in batch.steps():
        x0_hat = den(x, s)
        noise = svd.Vh(white_noise(x, generator))
        xb = ddrm_update(svd.Vh(x), svd.Vh(x0_hat), yb, tau, s, s_next, eta, eta_b, noise)
        x = svd.V(xb).to(x.dtype)
        state = batch.state(k, x, x0_hat)
        yield state
    return state


# ---------------------------------------------------------------------- DiffPIR
@dataclass
class DiffPIRParams(DiffusionParams):
    r"""Plug-and-play diffusion: denoise, data proximal step, re-noise."""

    lam: float = param(7.0, "lambda: data-step weight rho_t = lam noise_sigma^2 / sigma_t^2",
                       min=1e-6, max=1e4, step=0.5)
    # zeta 1 measured on allowed photographs and generator draws (never the benchmark's):
    # better than 0.3 everywhere (4x MRI: camera +3.7 dB, coins +3.3, atoms +5.2 / +1.1,
    # 8x MRI phantoms +6.6 / +1.8; blur: equal to +1.2)
    zeta: float = param(1.0, "zeta: share of fresh noise when re-noising (0 = deterministic)",
                        min=0.0, max=1.0, step=0.05)
    cg_iters: int = param(20, "CG iterations of the data step (when no closed form)", min=1,
                          max=1000)


@register_method("diffpir", DiffPIRParams, stochastic=True)
@torch.no_grad()
def diffpir(y: Tensor, op: Any, p: DiffPIRParams, *, x0: Tensor | None = None,
            generator: torch.Generator | None = None) -> Iterator[IterState]:
    r"""DiffPIR (Zhu et al., "Denoising diffusion models for plug-and-play image
    restoration", CVPRW 2023), VE form.

    .. math::

        \hat x_0 &= D(x_t, \sigma_t), \\
        \hat x_0' &= \arg\min_x \tfrac12\|Ax - y\|^2 + \tfrac{\rho_t}2\|x - \hat x_0\|^2,
        \quad \rho_t = \max(\lambda\sigma_y^2/\sigma_t^2,\ 10^{-3}), \\
        x_{t-1} &= \hat x_0' + \sigma_{t-1}\big(\sqrt{1-\zeta}\,\hat\epsilon
                   + \sqrt\zeta\,\epsilon\big), \qquad
        \hat\epsilon = (x_t - \hat x_0')/\sigma_t,

    the data step by :func:`~napari_invrec.core.linalg.normal_solver` (closed form for blur,
    masks and MRI, else CG). The floor on :math:`\rho_t` keeps the closed forms well
    conditioned when :math:`\sigma_y = 0`.
    """
    den, y, sched, n = _setup(y, op, p, x0, "diffpir")
    lam, zeta = float(p.lam), float(p.zeta)
    if not 0 <= zeta <= 1:
        raise InputError(f"diffpir zeta must lie in [0, 1], got {zeta}")
    sig_y2 = float(p.noise_sigma) ** 2
    batch = SampleBatch(y, op, n, "diffpir", sched, lead=estimate_steps(p))
    x = yield from start_chains(y, op, p, den, batch, x0, generator)
    aty = op.A_adjoint(y).repeat_interleave(n, dim=0)
    solve = normal_solver(op, x, p.cg_iters)
    state = None
    for k, s, s_next in batch.steps():
        x0_hat = den(x, s)
        rho = max(lam * sig_y2 / (s * s), 1e-3)
        x0p = solve(aty + rho * x0_hat, rho, x0_hat)
        if s_next > 0:
            eps_hat = (x - x0p) / s
            x = x0p + s_next * (math.sqrt(1.0 - zeta) * eps_hat
                                + math.sqrt(zeta) * white_noise(x, generator))
        else:
            x = x0p
        state = batch.state(k, x, x0p, rho=rho)
        yield state
    return state
