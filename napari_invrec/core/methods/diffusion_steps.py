r"""Building blocks of the diffusion samplers in :mod:`.diffusion`.

Variance-exploding (VE) model: :math:`x_\sigma = x_0 + \sigma n`, :math:`n \sim \mathcal N(0,
I)` (complex images: circular noise with :math:`E|n_j|^2 = 1`). A denoiser
:math:`D(x, \sigma)`, the MMSE estimate :math:`E[x_0 \mid x_\sigma = x]`, gives the score by
Tweedie's formula

.. math::

    \nabla \log p_\sigma(x) = \frac{D(x, \sigma) - x}{\sigma^2}.

Here: the noise schedules, the start :math:`x_T`, white noise, and :class:`SampleBatch`, which
turns the ``B * N`` batch of chains (image-major: the ``N`` samples of image ``b`` are rows
``b N .. b N + N - 1``) into the :class:`~..state.IterState` every sampler yields.
"""

from __future__ import annotations

import math
from collections.abc import Generator, Iterator
from typing import Any

import torch

from ..errors import InputError
from ..linalg import bnorm
from ..state import IterState
from .classical import check_finite, relative_residual
from .pnp import DPIRParams, dpir_schedule, hqs_iterates
from .starts import blank_image, data_start

Tensor = torch.Tensor

__all__ = ["sigma_schedule", "insert_level", "white_noise", "start_state", "start_chains",
           "SampleBatch", "ve_step", "langevin_step", "ddrm_update", "ddnm_update"]

SCHEDULES = ("geometric", "karras")
INITS = ("measurement", "noise", "estimate")
#: the data-range centre used by ``init="noise"``
CENTRE = 0.5
#: ``init="estimate"`` runs DPIR at its defaults (first strength, prior weight, CG iterations)
_DPIR = DPIRParams()


def sigma_schedule(sigma_max: float, sigma_min: float, steps: int, kind: str = "geometric",
                   rho: float = 7.0) -> list[float]:
    r"""Decreasing noise levels :math:`\sigma_0 = \sigma_{\max} > \dots > \sigma_{K-1} =
    \sigma_{\min}` (``steps`` :math:`= K`); the samplers add a last step to :math:`\sigma = 0`.

    ``"geometric"``: :math:`\sigma_i = \sigma_{\max}(\sigma_{\min}/\sigma_{\max})^{i/(K-1)}`;
    ``"karras"`` (Karras et al. 2022): :math:`\sigma_i = \big(\sigma_{\max}^{1/\rho} +
    \tfrac{i}{K-1}(\sigma_{\min}^{1/\rho} - \sigma_{\max}^{1/\rho})\big)^\rho`, denser at low
    noise for larger :math:`\rho`.

    Raises
    ------
    InputError
        Unless :math:`0 < \sigma_{\min} < \sigma_{\max}`, ``steps >= 1``, :math:`\rho > 0`.
    """
    hi, lo, k = float(sigma_max), float(sigma_min), int(steps)
    if not (0 < lo < hi and math.isfinite(hi)):
        raise InputError(f"diffusion needs 0 < sigma_min < sigma_max, got sigma_min={lo}, "
                         f"sigma_max={hi}")
    if k < 1:
        raise InputError(f"steps must be >= 1, got {steps}")
    if k == 1:
        return [hi]
    if kind == "geometric":
        return [hi * (lo / hi) ** (i / (k - 1)) for i in range(k)]
    if kind == "karras":
        if not rho > 0:
            raise InputError(f"karras rho must be > 0, got {rho}")
        a, b = hi ** (1 / rho), lo ** (1 / rho)
        return [(a + i / (k - 1) * (b - a)) ** rho for i in range(k)]
    raise InputError(f"unknown schedule {kind!r}; choose one of {SCHEDULES}")


def insert_level(sched: list[float], level: float) -> list[float]:
    """Replace the level nearest to ``level`` (in log scale) by ``level`` when it lies strictly
    inside the schedule, so that a sampler passes through it exactly; order is kept."""
    if not sched or not sched[-1] < level < sched[0]:
        return list(sched)
    i = min(range(len(sched)), key=lambda j: abs(math.log(sched[j] / level)))
    out = list(sched)
    out[i] = level
    return out


def white_noise(like: Tensor, generator: torch.Generator | None) -> Tensor:
    """:math:`n \\sim \\mathcal N(0, I)` shaped like ``like``; complex: circular with
    :math:`E|n_j|^2 = 1` (real and imaginary parts of std :math:`1/\\sqrt2`)."""
    dev = generator.device if generator is not None else like.device
    if like.is_complex():
        z = torch.randn((*like.shape, 2), generator=generator, device=dev,
                        dtype=like.real.dtype).to(like.device)
        return torch.view_as_complex(z) / math.sqrt(2.0)
    return torch.randn(like.shape, generator=generator, device=dev,
                       dtype=like.dtype).to(like.device)


def start_state(y: Tensor, op: Any, init: str, sigma_max: float, n: int,
                x0: Tensor | None, generator: torch.Generator | None) -> Tensor:
    r"""The ``B * N`` chains at the first level :math:`\sigma_{\max}`.

    ``"noise"``: :math:`x_T = c + \sigma_{\max} n`, :math:`c = 0.5` (the middle of the data
    range; needs :math:`\sigma_{\max}` several times the data's spread). ``"measurement"``:
    :math:`x_T = x_{\mathrm{start}} + \sigma_{\max} n` with :math:`x_{\mathrm{start}}` the
    data-consistent image of :func:`~.starts.data_start` (or ``x0``): the
    "come-closer-diffuses-faster" start (Chung, Sim & Ye, CVPR 2022), which starts the
    reverse process part way, so that a denoiser trained up to :math:`\sigma = 0.25` serves as
    the score model and far fewer steps are needed.
    """
    if init not in INITS:
        raise InputError(f"unknown init {init!r}; choose one of {INITS}")
    if x0 is not None:
        base = x0
    elif init == "estimate":
        raise InputError("init='estimate' starts from the plug-and-play estimate: run the "
                         "sampler through start_chains")
    elif init == "measurement":
        base = data_start(y, op)
    else:
        base = blank_image(y, op, CENTRE)
    base = base.repeat_interleave(n, dim=0)
    return base + sigma_max * white_noise(base, generator)


def start_chains(y: Tensor, op: Any, p: Any, den: Any, batch: SampleBatch,
                 x0: Tensor | None, generator: torch.Generator | None
                 ) -> Generator[IterState, None, Tensor]:
    r"""The ``B * N`` chains at the first level ``p.sigma_max``, as :func:`start_state`; with
    ``p.init == "estimate"`` the chains start from a plug-and-play estimate instead, computed
    once per measurement and yielded as the run's first ``p.estimate_iters`` steps.

    The estimate is DPIR (:func:`~.pnp.hqs_iterates`) with the sampler's score model ``den``,
    from the smooth data-consistent start (or ``x0``), over the geometric strengths from
    DPIR's default ``sigma_max`` down to :math:`\max(\sigma_y, \sigma_{\min})`. The chains
    then diffuse from :math:`x_T = \hat x_{\mathrm{PnP}} + \sigma_{\max} n`: the
    "come-closer-diffuses-faster" start of Chung, Sim & Ye (CVPR 2022) with a better first
    estimate, so that a few levels suffice. One chain costs :math:`1/N` of the ``N`` chains
    per network call, so the estimate's iterations are cheap next to the levels. The samples
    then share the estimate: their spread shows the posterior around it at the scales noise of
    std :math:`\sigma_{\max}` reaches, not the spread between distant modes.

    Raises
    ------
    InputError
        ``init="estimate"`` with a non-linear operator (use ``measurement``).
    """
    if p.init != "estimate":
        return start_state(y, op, p.init, batch.levels[0], batch.n, x0, generator)
    if not getattr(op, "linear", True):
        raise InputError(f"init='estimate' needs a linear operator; {op.name} is not: use "
                         "init='measurement'")
    floor = max(float(p.noise_sigma), float(p.sigma_min))
    sched = dpir_schedule(_DPIR.sigma_max, floor, int(p.estimate_iters))
    z = x0 if x0 is not None else data_start(y, op)
    steps = hqs_iterates(y, op, den, sched, _DPIR.lam, floor, z, _DPIR.cg_iters, batch.name)
    for k, (z_k, sk, _) in enumerate(steps, start=1):
        z = z_k
        yield batch.lead_state(k, z, sk)
    return start_state(y, op, "measurement", batch.levels[0], batch.n, z, generator)


def ve_step(x: Tensor, x0: Tensor, sigma: float, sigma_next: float,
            generator: torch.Generator | None) -> Tensor:
    r"""One Euler-Maruyama step of the reverse VE SDE from :math:`\sigma` to
    :math:`\sigma' < \sigma` with the score :math:`(x_0 - x)/\sigma^2`:

    .. math::

        x' = x + (\sigma^2 - \sigma'^2)\,\frac{\hat x_0 - x}{\sigma^2}
             + \sqrt{\sigma^2 - \sigma'^2}\; n.

    At :math:`\sigma' = 0` it returns :math:`\hat x_0` (no noise).
    """
    if sigma_next <= 0:
        return x0
    d = sigma * sigma - sigma_next * sigma_next
    return x + (d / (sigma * sigma)) * (x0 - x) + math.sqrt(d) * white_noise(x, generator)


class SampleBatch:
    """Summaries of the ``B * N`` chains for the yielded :class:`~..state.IterState`.

    Parameters
    ----------
    y
        The measurement batch ``(B, ...)``.
    op
        The operator (for the residual metric).
    n
        Samples per measurement.
    name
        Method name (for :func:`~.classical.check_finite` messages).
    sched
        The decreasing noise levels; the chains step through them and then to 0.
    """

    def __init__(self, y: Tensor, op: Any, n: int, name: str, sched: list[float],
                 lead: int = 0) -> None:
        self.y, self.op, self.n, self.name = y, op, int(n), name
        self.b = int(y.shape[0])
        self.levels = [float(s) for s in sched] + [0.0]
        self.lead = int(lead)
        self.total = self.lead + len(self.levels) - 1

    def steps(self) -> Iterator[tuple[int, float, float]]:
        r"""``(k, sigma, sigma_next)`` for the steps :math:`k = 1..K`, the last to 0."""
        for k in range(1, len(self.levels)):
            yield k, self.levels[k - 1], self.levels[k]

    def _split(self, v: Tensor) -> Tensor:
        return v.reshape(self.b, self.n, *v.shape[1:])

    def state(self, k: int, x_t: Tensor, x0_hat: Tensor, **metrics: float) -> IterState:
        r"""IterState of step ``k`` with ``x`` the mean over samples of :math:`\hat x_0`
        (of the final chains :math:`x_t` at the last step, which reaches level 0), extras
        ``x_t``, ``x0_hat`` (first sample of each image), ``std``
        (:math:`\sqrt{E|\hat x_0 - \bar x|^2}` over samples) and ``samples`` (all ``B * N``
        current :math:`\hat x_0`)."""
        check_finite(x_t, self.name, k, "lower sigma_max or the step weights; check the "
                     "denoiser and noise_sigma")
        sigma = self.levels[k - 1]
        x0 = x_t if self.levels[k] == 0 else x0_hat
        s = self._split(x0)
        mean = s.mean(1)
        std = (s - mean.unsqueeze(1)).abs().square().mean(1).sqrt()
        met = {"residual": relative_residual(self.op.A(mean), self.y), "sigma": float(sigma)}
        met.update(metrics)
        return IterState(self.lead + k, self.total, mean,
                         {"x_t": self._split(x_t)[:, 0].clone(), "x0_hat": s[:, 0].clone(),
                          "std": std, "samples": x0}, met)

    def lead_state(self, k: int, z: Tensor, sigma: float) -> IterState:
        """IterState of step ``k`` of the shared start (``init="estimate"``): every chain is
        the estimate ``z`` ``(B, ...)`` (checked finite by :func:`~.pnp.hqs_iterates`), so
        the samples repeat it and their std is 0."""
        met = {"residual": relative_residual(self.op.A(z), self.y), "sigma": float(sigma)}
        return IterState(k, self.total, z, {"x_t": z.clone(), "x0_hat": z.clone(),
                                            "std": torch.zeros_like(z.real),
                                            "samples": z.repeat_interleave(self.n, dim=0)},
                         met)

    def per_sample_norm(self, r: Tensor) -> Tensor:
        """:math:`\\|r_j\\|` per chain, shape ``(B * N,)``."""
        return bnorm(r).reshape(-1)


def langevin_step(den: Any, x: Tensor, sigma: float, snr: float, gen: Any) -> Tensor:
    r"""Annealed Langevin corrector at level :math:`\sigma` (Song et al. 2021):
    :math:`x \leftarrow x + \epsilon\,s(x) + \sqrt{2\epsilon}\,z`, with
    :math:`\epsilon = 2 (r \|z\| / \|s(x)\|)^2`."""
    score = (den(x, sigma) - x) / (sigma * sigma)
    z = white_noise(x, gen)
    eps = 2.0 * (snr * z.flatten(1).norm(dim=1) / score.flatten(1).norm(dim=1)
                 .clamp_min(1e-12)) ** 2
    eps = eps.view(-1, *([1] * (x.dim() - 1)))
    return x + eps * score + (2.0 * eps).sqrt() * z


def ddrm_update(xb: Tensor, x0b: Tensor, yb: Tensor, tau: Tensor, s: float, s_next: float,
                eta: float, eta_b: float, noise: Tensor) -> Tensor:
    r"""One DDRM step in spectral coordinates from level :math:`\sigma` to :math:`\sigma'`.

    With :math:`\tau_i = \sigma_y / s_i` (:math:`\infty` where :math:`s_i = 0`) and
    :math:`q = \sigma'^2/\sigma^2`:

    .. math::

        \bar x'_i = \begin{cases}
          \bar x_{0,i} + \sqrt{1-\eta^2}\,\sigma' (\bar x_i - \bar x_{0,i})/\sigma
            + \eta\sigma' \epsilon_i & s_i = 0 \\
          \bar x_{0,i} + q\,(\bar x_i - \bar x_{0,i}) + \sigma'\sqrt{1 - q}\;\epsilon_i
            & \sigma' < \tau_i \\
          (1 - \eta_b)\bar x_{0,i} + \eta_b \bar y_i
            + \sqrt{\sigma'^2 - \eta_b^2\tau_i^2}\,\epsilon_i & \sigma' \ge \tau_i
        \end{cases}

    Departure from the paper: below their noise level (:math:`\sigma' < \tau_i`) measured
    coordinates take the ancestral step :math:`q(x_{\sigma'} \mid x_\sigma, \hat x_0)` of the
    VE process, the exact reverse transition, continuing from the state :math:`\bar x =
    \bar y` that the measurement fixes at level :math:`\tau_i`. The paper steps along
    :math:`(\bar y_i - \bar x_{0,i})/\tau_i` there, reusing the measurement noise as diffusion
    noise; with an MMSE denoiser and a dense schedule that collapses the spread of the
    samples (Gaussian-prior test, denoising: std 0.2 of the posterior's), and a DDIM step with
    :math:`\eta \ne \sqrt{1-q}` mixes towards the prior marginal and loses the measurement.
    """
    c = math.sqrt(max(1.0 - eta * eta, 0.0)) * s_next
    null = x0b + (c / s) * (xb - x0b) + eta * s_next * noise
    q = (s_next / s) ** 2
    below = x0b + q * (xb - x0b) + s_next * math.sqrt(1.0 - q) * noise
    var = (s_next * s_next - (eta_b * tau).square()).clamp_min(0.0)
    above = (1.0 - eta_b) * x0b + eta_b * yb + var.sqrt() * noise
    return torch.where(torch.isinf(tau), null, torch.where(s_next < tau, below, above))


def ddnm_update(xb: Tensor, x0b: Tensor, yb: Tensor, tau: Tensor, s: float, s_next: float,
                eta: float, noise: Tensor) -> tuple[Tensor, Tensor]:
    r"""One range-null-space (DDNM) step in spectral coordinates from level :math:`\sigma` to
    :math:`\sigma'`; returns the new state and the corrected prediction :math:`\bar x_0'`.

    With :math:`\tau_i = \sigma_y / s_i` (:math:`\infty` where :math:`s_i = 0`, 0 for
    noiseless data), coordinate :math:`i` is *measured at this step* if :math:`\sigma' \ge
    \tau_i`. The prediction keeps the denoiser's null-space part and takes the measured part
    from the data,

    .. math::

        \bar x_{0,i}' = \begin{cases} \bar y_i & \sigma' \ge \tau_i \\
                                      \bar x_{0,i} & \text{otherwise,} \end{cases}

    i.e. :math:`\hat x_0' = A^+ y + (I - A^+ A)\hat x_0` (Wang, Yu & Zhang, ICLR 2023) with
    :math:`A^+` restricted to the coordinates whose measurement is less noisy than the next
    level. Every coordinate then steps towards its :math:`\bar x_{0,i}'` as a
    variance-exploding chain, with the fresh-noise share :math:`\eta` of :func:`ddrm_update`
    (``diffpir``'s :math:`\zeta = \eta^2`):

    .. math::

        \bar x_i' = \bar x_{0,i}' + \sqrt{1-\eta_i^2}\;\frac{\ell_i'}{\ell_i}
          (\bar x_i - \bar x_{0,i}') + \eta_i\,\ell_i'\,\epsilon_i,

    at the levels :math:`(\ell_i, \ell_i') = (\sigma, \sigma')` for the prior's coordinates
    and :math:`(\sqrt{\sigma^2 - \tau_i^2}, \sqrt{\sigma'^2 - \tau_i^2})` for the measured
    ones, whose measurement already carries noise :math:`\tau_i` (the measurement is the
    chain's state at level :math:`\tau_i`). :math:`\eta_i = \eta` (1: fresh noise only, 0:
    deterministic, :math:`\sqrt{1 - \ell'^2/\ell^2}`: the ancestral step
    :math:`q(x_{\sigma'} \mid x_\sigma, \hat x_0')`), except below their noise level, where
    coordinates take the ancestral step, as in :func:`ddrm_update`: their posterior spread is
    the noise drawn after the measurement, which is the same :math:`\bar y_i` in every chain
    (a deterministic step would map it to one value, fresh noise alone would forget it).

    Departure from the paper's noisy variant (DDNM+): it scales the correction by
    :math:`\lambda_i = \sigma'/\tau_i < 1` below the noise level and counts the measurement
    noise as diffusion noise; with an exact (Gaussian) denoiser that collapses the samples
    there (std 0 of the posterior's for denoising). Here a coordinate below its noise level is
    left to the prior's step from the state that carries its measurement.
    """
    finite = torch.isfinite(tau)
    above = finite & (s_next >= tau)
    tau2 = torch.where(finite, tau, torch.zeros_like(tau)).square()
    lvl = torch.where(above, (s * s - tau2).clamp_min(0.0).sqrt(), torch.full_like(tau, s))
    lvl_next = torch.where(above, (s_next * s_next - tau2).clamp_min(0.0).sqrt(),
                           torch.full_like(tau, s_next))
    pos = lvl > 0
    ratio = torch.where(pos, lvl_next / torch.where(pos, lvl, 1.0), torch.zeros_like(lvl))
    ancestral = (1.0 - ratio.square()).clamp_min(0.0).sqrt()
    share = torch.where(finite & ~above, ancestral, torch.full_like(tau, eta))
    c = (1.0 - share.square()).clamp_min(0.0).sqrt() * ratio
    x0c = torch.where(above, yb, x0b)
    return x0c + c * (xb - x0c) + share * lvl_next * noise, x0c
