r"""Plug-and-play methods: a denoiser :math:`D(\cdot, \sigma)` stands in for the prior.

For :math:`y = A x + n` with any linear :math:`A` (``operators=None``):

* ``pnp-pgd``: :math:`x \leftarrow D\big(x - \tau A^H(Ax - y), \sigma\big)`;
* ``pnp-admm``: :math:`x = (A^H A + \rho I)^{-1}(A^H y + \rho(z - u))`,
  :math:`z = D(x + u, \sigma)`, :math:`u \leftarrow u + x - z`;
* ``dpir``: half-quadratic splitting with a decreasing noise schedule (Zhang et al., "Plug-and-
  play image restoration with deep denoiser prior", TPAMI 2021);
* ``red``: regularisation by denoising (Romano, Elad, Milanfar, SIAM J. Imaging Sci. 2017),
  gradient steps on :math:`\tfrac12\|Ax - y\|^2 + \tfrac\lambda2 x^\top(x - D(x))`.

The ``denoiser`` parameter (default the shipped ``"drunet-general"``) names one of
:func:`~..denoisers.denoiser_names`: ``"tv"`` (the
TV proximal map :math:`\mathrm{prox}_{w\sigma^2\mathrm{TV}}`, :math:`w = 25`) and
``"gaussian"`` need no weights; a network denoiser (e.g. ``"drunet-general"``) needs its
shipped weights (``napari-invrec train ...``) and is an :class:`~..errors.InputError`
otherwise. With the TV denoiser ``pnp-pgd`` *is* proximal gradient (ISTA) on
:math:`\tfrac12\|Ax-y\|^2 + \lambda\mathrm{TV}(x)` with :math:`\lambda = w\sigma^2/\tau`, and
``pnp-admm`` is ADMM on the same problem with :math:`\lambda = \rho w\sigma^2`.

The :math:`x`-updates of ``pnp-admm`` and ``dpir`` solve
:math:`(A^H A + \rho I) x = b` in closed form where the operator offers it (a method
``op.solve_normal(b, rho)``, or :math:`A^H A` a projection, as for denoise, inpaint and
Cartesian MRI: :math:`x = Pb/(1 + \rho) + (b - Pb)/\rho` with :math:`P = A^H A`), else by
warm-started CG.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

from ..denoisers import DEFAULT_DENOISER, denoiser_names, get_denoiser
from ..errors import InputError
from ..linalg import bnorm, conjugate_gradient, is_projection, normal_solver
from ..params import param
from ..state import IterState
from ..tv import grad, grad_adjoint
from .classical import check_finite, lipschitz, prepare, rel_change, relative_residual
from .registry import register_method

Tensor = torch.Tensor

__all__ = ["pnp_pgd", "pnp_admm", "dpir", "red", "dpir_schedule", "hqs_iterates",
           "PnPPGDParams", "PnPADMMParams", "DPIRParams", "REDParams", "admm_balance"]

_DEN_DOC = "denoiser: a shipped or trained network, or tv / gaussian (no weights)"


def _denoiser(name: str) -> Any:
    """The denoiser ``name`` (the weights loader's clear InputError if it needs weights)."""
    return get_denoiser(name)




def smooth_start(y: Tensor, op: Any, mu: float = 0.05, iters: int = 50) -> Tensor:
    r"""Smooth data-consistent start :math:`\arg\min_x \|Ax - y\|^2 + \mu\|Dx\|^2`.

    :math:`D` is the forward-difference gradient (:func:`~.tv.grad`); solved by CG on
    :math:`(A^H A + \mu D^H D)x = A^H y` from :math:`A^H y`. Unlike :math:`A^H y` it fills what
    the measurement misses (unsampled pixels become harmonic interpolants, lost frequencies
    are damped smoothly), a better start for denoiser-driven methods.
    """
    aty = op.A_adjoint(y)
    return conjugate_gradient(lambda v: op.AtA(v) + mu * grad_adjoint(grad(v)), aty, aty,
                              tol=1e-5, maxiter=iters)


def start_image(y: Tensor, op: Any, init: str, x0: Tensor | None) -> Tensor:
    """The start of a plug-and-play method: ``x0`` if given, else ``A^H y`` (``"adjoint"``)
    or :func:`smooth_start` (``"smooth"``)."""
    if x0 is not None:
        return x0
    return smooth_start(y, op) if init == "smooth" else op.A_adjoint(y)


_INIT_DOC = "start: adjoint A^H y, or smooth (argmin ||Ax-y||^2 + 0.05 ||grad x||^2)"


def _denoiser_field() -> Any:
    return param(DEFAULT_DENOISER, _DEN_DOC, choices=denoiser_names, network=True)


def _strength_field(default: float) -> Any:
    return param(default, "denoiser strength sigma (noise std it removes)", min=1e-4, max=1.0,
                 step=0.005)


def _init_field() -> Any:
    return param("smooth", _INIT_DOC, choices=("smooth", "adjoint"))


def _positive(name: str, value: float) -> float:
    value = float(value)
    if not math.isfinite(value) or value <= 0:
        raise InputError(f"{name} must be > 0, got {value}")
    return value


# ---------------------------------------------------------------------- PnP-PGD
@dataclass
class PnPPGDParams:
    r"""Plug-and-play proximal gradient :math:`x \leftarrow D(x - \tau A^H(Ax-y), \sigma)`."""

    denoiser: str = _denoiser_field()
    sigma: float = _strength_field(0.02)
    tau_scale: float = param(1.0, "gradient step tau as a fraction of 1/||A||^2 (< 2)",
                             min=1e-3, max=1.99, step=0.1)
    iters: int = param(100, "iterations", min=1, max=100000)
    init: str = _init_field()


@register_method("pnp-pgd", PnPPGDParams, volumes=True)
@torch.no_grad()
def pnp_pgd(y: Tensor, op: Any, p: PnPPGDParams, *, x0: Tensor | None = None,
            generator: torch.Generator | None = None) -> Iterator[IterState]:
    r"""Plug-and-play proximal gradient descent.

    .. math::

        x_{k+1} = D\big(x_k - \tau A^H(A x_k - y),\ \sigma\big), \qquad
        \tau = s / \|A\|^2,

    started from :func:`start_image` (``init``; or ``x0``). With the TV denoiser this is ISTA on
    :math:`\tfrac12\|Ax - y\|^2 + (w\sigma^2/\tau)\,\mathrm{TV}(x)`.
    """
    den = _denoiser(p.denoiser)
    sigma = _positive("pnp-pgd sigma", p.sigma)
    y, x0 = prepare(y, op, x0)
    tau = _positive("pnp-pgd tau_scale", p.tau_scale) / lipschitz(op, "pnp-pgd")
    x = start_image(y, op, p.init, x0)
    ax = op.A(x)
    state = None
    for k in range(1, p.iters + 1):
        x_new = den(x - tau * op.A_adjoint(ax - y), sigma)
        check_finite(x_new, "pnp-pgd", k, "lower tau_scale (check op.norm()) or sigma")
        change = rel_change(x_new, x)
        x, ax = x_new, op.A(x_new)
        state = IterState(k, p.iters, x, {}, {"residual": relative_residual(ax, y),
                                              "rel_change": change})
        yield state
    return state


# ---------------------------------------------------------------------- PnP-ADMM
@dataclass
class PnPADMMParams:
    r"""Plug-and-play ADMM on the splitting :math:`x = z`."""

    denoiser: str = _denoiser_field()
    sigma: float = _strength_field(0.05)
    rho: float = param(0.1, "ADMM penalty rho (data step: (A^H A + rho I) x = ...)",
                       min=1e-6, max=1e6, step=0.1)
    iters: int = param(50, "iterations", min=1, max=100000)
    cg_iters: int = param(10, "CG iterations of each x-update (when no closed form)", min=1,
                          max=1000)
    init: str = _init_field()
    noise: float = param(0.0, "noise level of the measurement (std; 0 = unknown: strength "
                         "and rho as given); where A^H A is a projection (denoise, inpaint, "
                         "MRI) the strength rises to it and rho to (noise/strength)^2",
                         min=0.0, max=1.0, step=0.005, noise=True)


def admm_balance(sigma: float, rho: float, noise: float) -> tuple[float, float]:
    r"""The denoiser strength and ADMM penalty of ``pnp-admm`` for a measurement of noise
    std ``noise`` (0: unknown, the given pair) when :math:`A^H A` is a projection.

    ADMM on :math:`\tfrac12\|Ax - y\|^2 + \sigma_n^2 R(x)` with penalty :math:`\rho`
    applies the proximal map of :math:`(\sigma_n^2/\rho) R`, a denoiser of strength
    :math:`\sigma_d = \sigma_n/\sqrt\rho`. Where :math:`A^H A` is a projection (denoising,
    inpainting, Cartesian MRI) every measured coefficient is the truth plus noise of std
    :math:`\sigma_n`, and the given pair suits noise up to :math:`\sigma\sqrt\rho`; a
    noisier measurement would be under-regularised (at ``rho`` 0.1 the data step keeps 91 % of
    a noisy :math:`y`). So

    .. math::

        \sigma_d = \max(\sigma, \sigma_n), \qquad
        \rho = \max\big(\rho, (\sigma_n/\sigma_d)^2\big)

    (for denoising at high noise, :math:`\rho = 1`: the average of :math:`y` and the denoised
    image). Measured on allowed images at 128 px (noise 0.05): denoising +1.1 to +6.5 dB over the
    given pair, inpainting +0.4 to +1.8 dB; under blur (not a projection, left as given)
    DPIR's balance :math:`\rho = 0.23\,(\sigma_n/\sigma_d)^2` was 0.2 dB worse."""
    if noise <= 0:
        return sigma, rho
    strength = max(sigma, noise)
    return strength, max(rho, (noise / strength) ** 2)


@register_method("pnp-admm", PnPADMMParams, volumes=True)
@torch.no_grad()
def pnp_admm(y: Tensor, op: Any, p: PnPADMMParams, *, x0: Tensor | None = None,
             generator: torch.Generator | None = None) -> Iterator[IterState]:
    r"""Plug-and-play ADMM (scaled form).

    .. math::

        x_{k+1} &= (A^H A + \rho I)^{-1}\big(A^H y + \rho (z_k - u_k)\big), \\
        z_{k+1} &= D(x_{k+1} + u_k,\ \sigma), \qquad u_{k+1} = u_k + x_{k+1} - z_{k+1},

    started from :math:`z_0` = :func:`start_image` (``init``; or ``x0``), :math:`u_0 = 0`;
    yields :math:`z_k`. With a known noise level (``noise``) and :math:`A^H A` a projection,
    :math:`\sigma` and :math:`\rho` are balanced against it (:func:`admm_balance`).
    Metrics include the primal residual :math:`\|x - z\| / \|z\|`.
    """
    den = _denoiser(p.denoiser)
    y, x0 = prepare(y, op, x0)
    aty = op.A_adjoint(y)
    z = start_image(y, op, p.init, x0)
    sigma, rho = _positive("pnp-admm sigma", p.sigma), _positive("pnp-admm rho", p.rho)
    if p.noise > 0 and is_projection(op, z):
        sigma, rho = admm_balance(sigma, rho, float(p.noise))
    x, u = z, torch.zeros_like(z)
    solve = normal_solver(op, z, p.cg_iters)
    state = None
    for k in range(1, p.iters + 1):
        x = solve(aty + rho * (z - u), rho, x)
        z_new = den(x + u, sigma)
        check_finite(z_new, "pnp-admm", k, "raise rho or cg_iters; check the operator's "
                     "adjoint")
        u = u + x - z_new
        change = rel_change(z_new, z)
        z = z_new
        prim = float((bnorm(x - z) / bnorm(z).clamp_min(1e-12)).mean())
        state = IterState(k, p.iters, z, {}, {"residual": relative_residual(op.A(z), y),
                                              "rel_change": change, "primal_residual": prim})
        yield state
    return state


# ---------------------------------------------------------------------- DPIR
def dpir_schedule(sigma_max: float, sigma: float, iters: int) -> list[float]:
    r"""Geometric noise schedule :math:`\sigma_k = \sigma_{\max}
    (\sigma/\sigma_{\max})^{(k-1)/(K-1)}`, :math:`k = 1..K`: from ``sigma_max`` down to the
    noise level ``sigma`` (:math:`K = 1`: just ``sigma``). A noise level above ``sigma_max``
    (very noisy data, e.g. an estimated level filled in by the GUI) leaves nothing to anneal:
    the schedule stays at ``sigma``.

    Raises
    ------
    InputError
        A non-positive level.
    """
    sigma, sigma_max = float(sigma), max(float(sigma_max), float(sigma))
    if sigma <= 0:
        raise InputError(f"dpir needs a noise level sigma > 0, got sigma={sigma}")
    if iters <= 1:
        return [sigma]
    r = math.log(sigma / sigma_max) / (iters - 1)
    return [sigma_max * math.exp(r * k) for k in range(iters - 1)] + [sigma]


@dataclass
class DPIRParams:
    r"""Deep plug-and-play image restoration: HQS with a decreasing denoiser strength."""

    denoiser: str = _denoiser_field()
    sigma: float = param(0.02, "noise level of the measurement (std); the schedule ends there",
                         min=1e-4, max=1.0, step=0.005, noise=True)
    sigma_max: float = param(0.1, "first denoiser strength (the schedule starts there)",
                             min=1e-4, max=1.0, step=0.01)
    lam: float = param(0.23, "prior weight lambda: data penalty rho_k = lam sigma^2 / "
                       "sigma_k^2", min=1e-6, max=1e3, step=0.01)
    iters: int = param(8, "iterations (schedule length; 40 on MRI)", min=1, max=10000)
    cg_iters: int = param(20, "CG iterations of each data step (when no closed form)",
                          min=1, max=1000)
    init: str = _init_field()


#: DPIR's 8 iterations (Zhang et al.'s deblurring schedule) leave a k-space mask's aliasing
#: in place: on the allowed images (128 px, 4x, noise 0.01, against TV at its best weight per
#: image) 8 iterations were 1.9 dB below TV on average, 40 were 1.1 dB above (mri;
#: +1.9 -> +2.4 dB for mri-multicoil); 100 fell back to +0.4 (mri)
DPIR_OPERATOR_DEFAULTS = {"mri": {"iters": 40}, "mri-multicoil": {"iters": 40}}


@register_method("dpir", DPIRParams, volumes=True, operator_defaults=DPIR_OPERATOR_DEFAULTS)
@torch.no_grad()
def dpir(y: Tensor, op: Any, p: DPIRParams, *, x0: Tensor | None = None,
         generator: torch.Generator | None = None) -> Iterator[IterState]:
    r"""DPIR (Zhang et al., TPAMI 2021): half-quadratic splitting with a noise schedule.

    With :math:`\sigma_k` from :func:`dpir_schedule` and :math:`\rho_k = \lambda\sigma^2 /
    \sigma_k^2`,

    .. math::

        x_k &= \arg\min_x \tfrac12\|Ax - y\|^2 + \tfrac{\rho_k}2\|x - z_{k-1}\|^2
        = (A^H A + \rho_k I)^{-1}(A^H y + \rho_k z_{k-1}), \\
        z_k &= D(x_k, \sigma_k),

    from :math:`z_0` = :func:`start_image` (``init``; or ``x0``); yields :math:`z_k` with
    metric ``"sigma"``
    (:math:`\sigma_k`). The data step is closed-form where the operator allows (see the
    module docstring), else warm-started CG.
    """
    den = _denoiser(p.denoiser)
    sched = dpir_schedule(p.sigma_max, p.sigma, p.iters)
    y, x0 = prepare(y, op, x0)
    state = None
    steps = hqs_iterates(y, op, den, sched, p.lam, p.sigma, start_image(y, op, p.init, x0),
                         p.cg_iters)
    for k, (z, sk, rho) in enumerate(steps, start=1):
        state = IterState(k, len(sched), z, {}, {"residual": relative_residual(op.A(z), y),
                                                 "sigma": sk, "rho": rho})
        yield state
    return state


def hqs_iterates(y: Tensor, op: Any, den: Any, sched: list[float], lam: float, sigma: float,
                 z: Tensor, cg_iters: int, name: str = "dpir"
                 ) -> Iterator[tuple[Tensor, float, float]]:
    r"""DPIR's half-quadratic splitting from :math:`z_0` = ``z`` over the denoiser strengths
    ``sched``: :math:`x_k = (A^H A + \rho_k I)^{-1}(A^H y + \rho_k z_{k-1})`, :math:`z_k =
    D(x_k, \sigma_k)` with :math:`\rho_k = \lambda\sigma^2/\sigma_k^2`; yields
    :math:`(z_k, \sigma_k, \rho_k)`.

    Raises
    ------
    InputError
        ``lam`` not positive; a non-finite iterate (named after the method ``name``).
    """
    lam = _positive(f"{name} lam", lam)
    aty = op.A_adjoint(y)
    x = z
    solve = normal_solver(op, z, cg_iters)
    for k, sk in enumerate(sched, start=1):
        rho = lam * float(sigma) ** 2 / sk ** 2
        x = solve(aty + rho * z, rho, x)
        z = den(x, sk)
        check_finite(z, name, k, "raise lam or cg_iters; check the operator's adjoint")
        yield z, sk, rho


# ---------------------------------------------------------------------- RED
@dataclass
class REDParams:
    r"""Regularisation by denoising, gradient descent."""

    denoiser: str = _denoiser_field()
    sigma: float = _strength_field(0.05)
    lam: float = param(0.3, "RED weight lambda", min=0.0, max=1e3, step=0.1)
    step_scale: float = param(1.0, "step as a fraction of 1 / (||A||^2 + lam)", min=1e-3,
                              max=1.99, step=0.1)
    iters: int = param(100, "iterations", min=1, max=100000)
    init: str = _init_field()


@register_method("red", REDParams, volumes=True)
@torch.no_grad()
def red(y: Tensor, op: Any, p: REDParams, *, x0: Tensor | None = None,
        generator: torch.Generator | None = None) -> Iterator[IterState]:
    r"""Regularisation by denoising (RED, steepest descent).

    .. math::

        x_{k+1} = x_k - \mu\big(A^H(Ax_k - y) + \lambda (x_k - D(x_k, \sigma))\big),
        \qquad \mu = s / (\|A\|^2 + \lambda),

    the gradient of :math:`\tfrac12\|Ax - y\|^2 + \tfrac\lambda2 x^\top(x - D(x))` under
    RED's assumptions on :math:`D` (local homogeneity, symmetric Jacobian); for a
    non-expansive :math:`D` the step bound makes it stable. Started from
    :func:`start_image` (``init``).
    """
    den = _denoiser(p.denoiser)
    sigma = _positive("red sigma", p.sigma)
    lam = float(p.lam)
    if not math.isfinite(lam) or lam < 0:
        raise InputError(f"red lam must be >= 0, got {lam}")
    y, x0 = prepare(y, op, x0)
    mu = _positive("red step_scale", p.step_scale) / (lipschitz(op, "red") + lam)
    x = start_image(y, op, p.init, x0)
    ax = op.A(x)
    state = None
    for k in range(1, p.iters + 1):
        g = op.A_adjoint(ax - y) + lam * (x - den(x, sigma))
        x_new = x - mu * g
        check_finite(x_new, "red", k, "lower step_scale (check op.norm()) or lam")
        change = rel_change(x_new, x)
        x, ax = x_new, op.A(x_new)
        state = IterState(k, p.iters, x, {}, {"residual": relative_residual(ax, y),
                                              "rel_change": change})
        yield state
    return state
