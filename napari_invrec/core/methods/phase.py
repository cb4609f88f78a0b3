r"""Classical phase retrieval: error reduction, hybrid input-output and Wirtinger flow.

The measurement is :math:`y = |G E x|^2` (see :mod:`..operators.phase`): :math:`E` embeds the
image in the object domain (zero-padding in oversampled mode), :math:`G` propagates an object
:math:`g` to :math:`K` far fields with :math:`G^H G = K I`. With amplitudes
:math:`a = \sqrt{\max(y, 0)}` the two projections of the alternating methods are

.. math::

    P_M(g) = \tfrac1K G^H\!\left(a \odot \frac{G g}{|G g|}\right), \qquad
    P_C(g) = \begin{cases} g & \text{none} \\ 1_S\, g & \text{support} \\
    1_S \max(\mathrm{Re}\, g, 0) & \text{nonneg-real,} \end{cases}

where :math:`S` is the support (the un-padded image box; the whole image in coded mode, where
``support`` is therefore no constraint). The default ``nonneg-real`` suits the real,
non-negative sample images and is far stronger (see ``tests/test_phase.py``); choose
``support`` for complex objects.
:math:`P_M` is the exact projection onto the measured magnitudes for :math:`K = 1`; for
:math:`K > 1` it is the projection in the lifted field space followed by the least-squares
return :math:`G^+ = G^H / K`, which keeps the error reduction monotone.

* ``gerchberg-saxton`` (error reduction, Fienup 1982): :math:`g_{k+1} = P_C P_M g_k`. The
  Fourier error :math:`\|\,|G g_k| - a\,\|` never increases.
* ``hio`` (Fienup's hybrid input-output): with :math:`g' = P_M g_k`,
  :math:`g_{k+1} = g'` where :math:`g'` satisfies the object constraint and
  :math:`g_k - \beta g'` elsewhere; the last ``er_iters`` steps are error reduction. The
  estimate shown at each step is :math:`E^H P_C g'`.
* ``wirtinger-flow`` (Candès, Li & Soltanolkotabi 2015): spectral initialisation then gradient
  descent on :math:`f(z) = \tfrac1{2m}\sum_r (|a_r^H z|^2 - y_r)^2` (see
  :func:`wirtinger_flow`).

Every method yields each iteration with the metric ``residual``
:math:`\|A(x) - y\| / \|y\|`; the alternating methods add ``fourier_error``
:math:`\|\,|G E x| - a\,\| / \|a\|` and Wirtinger flow ``objective`` :math:`f(z)`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

from ..errors import InputError
from ..operators.phase_start import default_generator, spectral_init, sq_norms
from ..params import param
from ..state import IterState
from .classical import check_finite, prepare, relative_residual
from .registry import register_method

Tensor = torch.Tensor
CONSTRAINTS = ("support", "nonneg-real", "none")

__all__ = ["gerchberg_saxton", "hio", "wirtinger_flow", "random_phase_start",
           "spectral_init", "GerchbergSaxtonParams", "HIOParams", "WirtingerFlowParams"]


# ---------------------------------------------------------------------- shared pieces
def _check_op(op: Any, method: str) -> None:
    if not hasattr(op, "propagate") or not hasattr(op, "fourier"):
        raise InputError(f"{method} needs the phase operator, got {op.name!r}")


def _check_constraint(op: Any, constraint: str, method: str) -> None:
    if constraint not in CONSTRAINTS:
        raise InputError(f"{method}: constraint must be one of {CONSTRAINTS}, got "
                         f"{constraint!r}")
    if constraint == "none" and op.object_shape != op.shape:
        raise InputError(f"{method}: with oversampled data an unconstrained object fits any "
                         "Fourier phase; use constraint 'support' or 'nonneg-real'")


def _constrain(g: Tensor, support: Tensor, constraint: str) -> Tensor:
    """:math:`P_C(g)`: the object-domain constraint (see the module docstring)."""
    if constraint == "none":
        return g
    if constraint == "support":
        return g * support
    return (g.real.clamp_min(0) * support).to(g.dtype)


def _unit(z: Tensor) -> Tensor:
    """:math:`z / |z|`, with 1 where :math:`z = 0` (any phase is a nearest point there)."""
    mag = z.abs()
    return torch.where(mag > 0, z / mag.clamp_min(1e-30), torch.ones_like(z))


def _amplitudes(y: Tensor, op: Any) -> Tensor:
    r""":math:`\sqrt{\max(y, 0)}` in the fields layout ``(B, C, K, H', W')``."""
    return op.as_fields(y).clamp_min(0).sqrt()


def _fourier_error(z: Tensor, amp: Tensor) -> float:
    r"""Mean over the batch of :math:`\|\,|z| - a\,\| / \|a\|`."""
    num = (z.abs() - amp).flatten(1).norm(dim=1)
    den = amp.flatten(1).norm(dim=1).clamp_min(1e-30)
    return float((num / den).mean())


def random_phase_start(y: Tensor, op: Any, constraint: str,
                       generator: torch.Generator | None = None) -> Tensor:
    r"""Object-domain start :math:`P_C\,G^H(a \odot e^{i\theta}) / K`, :math:`\theta` uniform.

    ``y`` is a prepared ``(B, C, *measurement_shape)`` measurement; returns
    ``(B, C, H', W')`` complex64.
    """
    amp = _amplitudes(y, op)
    g = default_generator(y, generator)
    theta = 2 * math.pi * torch.rand(amp.shape, generator=g, device=g.device).to(amp.device)
    g0 = op.backpropagate(torch.polar(amp, theta)) / op.gram
    return _constrain(g0, op.support, constraint)


def _start(y: Tensor, op: Any, x0: Tensor | None, constraint: str,
           generator: torch.Generator | None) -> Tensor:
    if x0 is not None:
        return _constrain(op.embed(x0), op.support, constraint)
    return random_phase_start(y, op, constraint, generator)


def _magnitude_project(g: Tensor, amp: Tensor, op: Any) -> Tensor:
    """:math:`P_M(g)` (see the module docstring)."""
    return op.backpropagate(amp * _unit(op.propagate(g))) / op.gram


def _state(step: int, total: int, x: Tensor, y: Tensor, z: Tensor, amp: Tensor,
           op: Any) -> IterState:
    """IterState with residual and Fourier error computed from the fields ``z = G E x``."""
    ax = op.as_measurement_layout(z.real.square() + z.imag.square())
    metrics = {"residual": relative_residual(ax, y), "fourier_error": _fourier_error(z, amp)}
    return IterState(step, total, x, {}, metrics)


# ---------------------------------------------------------------------- error reduction
@dataclass
class GerchbergSaxtonParams:
    """Error reduction: alternate the Fourier-magnitude and object projections."""

    iters: int = param(200, "iterations", min=1, max=100000)
    constraint: str = param("nonneg-real", "object constraint: real non-negative inside the "
                            "support (un-padded box), complex inside it, or none (coded only)",
                            choices=CONSTRAINTS)


@register_method("gerchberg-saxton", GerchbergSaxtonParams, operators=("phase",))
@torch.no_grad()
def gerchberg_saxton(y: Tensor, op: Any, p: GerchbergSaxtonParams, *,
                     x0: Tensor | None = None, generator: torch.Generator | None = None
                     ) -> Iterator[IterState]:
    r"""Gerchberg-Saxton / error reduction :math:`g_{k+1} = P_C P_M g_k`.

    Starts from ``x0`` or from random Fourier phases (:func:`random_phase_start`); the Fourier
    error :math:`\|\,|G g_k| - a\,\|` is non-increasing (both steps are projections).
    """
    y, x0 = prepare(y, op, x0)
    _check_op(op, "gerchberg-saxton")
    _check_constraint(op, p.constraint, "gerchberg-saxton")
    amp = _amplitudes(y, op)
    g = _start(y, op, x0, p.constraint, generator)
    z = op.propagate(g)
    state = None
    for k in range(1, p.iters + 1):
        g = _constrain(op.backpropagate(amp * _unit(z)) / op.gram, op.support, p.constraint)
        check_finite(g, "gerchberg-saxton", k, "check the measurement scale")
        z = op.propagate(g)  # g = E E^H g: the fields of the estimate
        state = _state(k, p.iters, op.crop(g), y, z, amp, op)
        yield state
    return state


# ---------------------------------------------------------------------- HIO
@dataclass
class HIOParams:
    """Fienup's hybrid input-output, finished by a few error-reduction steps."""

    iters: int = param(300, "iterations in all (HIO, then error reduction)", min=1, max=100000)
    beta: float = param(0.9, "feedback beta: g - beta P_M g where the constraint fails",
                        min=0.0, max=2.0, step=0.05)
    er_iters: int = param(20, "final error-reduction iterations (included in iters; all of "
                          "them if iters is smaller)", min=0, max=100000)
    constraint: str = param("nonneg-real", "object constraint: real non-negative inside the "
                            "support (un-padded box), complex inside it, or none (coded only)",
                            choices=CONSTRAINTS)


def _hio_update(g: Tensor, gp: Tensor, support: Tensor, constraint: str,
                beta: float) -> Tensor:
    """One HIO step from :math:`g` and :math:`g' = P_M g`."""
    if constraint == "none":
        return gp
    if constraint == "support":
        return torch.where(support, gp, g - beta * gp)
    gr = gp.real
    ok = support & (gr >= 0)
    return torch.where(ok, gr, g.real - beta * gr).to(g.dtype)


@register_method("hio", HIOParams, operators=("phase",))
@torch.no_grad()
def hio(y: Tensor, op: Any, p: HIOParams, *, x0: Tensor | None = None,
        generator: torch.Generator | None = None) -> Iterator[IterState]:
    r"""Hybrid input-output (Fienup 1982), then error reduction.

    .. math::

        g_{k+1}(n) = \begin{cases} g'(n) & n \in S,\ g'(n) \text{ satisfies the constraint}\\
        g_k(n) - \beta\, g'(n) & \text{otherwise,} \end{cases} \qquad g' = P_M g_k.

    With ``nonneg-real`` the iterate is kept real (:math:`g' \to \mathrm{Re}\, g'`); with
    ``none`` (coded data) HIO is error reduction. The yielded estimate is
    :math:`E^H P_C g'`.
    """
    y, x0 = prepare(y, op, x0)
    _check_op(op, "hio")
    _check_constraint(op, p.constraint, "hio")
    amp = _amplitudes(y, op)
    g = _start(y, op, x0, p.constraint, generator)
    state = None
    for k in range(1, p.iters + 1):
        gp = _magnitude_project(g, amp, op)
        est = _constrain(gp, op.support, p.constraint)
        if k <= p.iters - min(p.er_iters, p.iters):
            g = _hio_update(g, gp, op.support, p.constraint, float(p.beta))
        else:
            g = est
        check_finite(g, "hio", k, "lower beta or check the measurement scale")
        x = op.crop(est)
        state = _state(k, p.iters, x, y, op.propagate(op.embed(x)), amp, op)
        yield state
    return state


# ---------------------------------------------------------------------- Wirtinger flow
@dataclass
class WirtingerFlowParams:
    """Wirtinger flow: spectral initialisation, then gradient descent on the intensity fit."""

    iters: int = param(500, "gradient iterations", min=1, max=100000)
    mu_max: float = param(0.4, "largest step mu_max (0.4 for coded patterns in the paper)",
                          min=1e-6, max=2.0, step=0.05)
    k0: float = param(330.0, "step warm-up: mu_k = min(1 - exp(-k / k0), mu_max)", min=1e-3,
                      max=1e6)
    power_iters: int = param(50, "power iterations of the spectral initialisation "
                             "(unused with a start image)", min=1, max=10000)
    truncation: float = param(9.0, "spectral init uses only intensities <= truncation x "
                              "mean(y) (0 = all, as in the WF paper)", min=0.0, max=1e6)


@register_method("wirtinger-flow", WirtingerFlowParams, operators=("phase",))
@torch.no_grad()
def wirtinger_flow(y: Tensor, op: Any, p: WirtingerFlowParams, *, x0: Tensor | None = None,
                   generator: torch.Generator | None = None) -> Iterator[IterState]:
    r"""Wirtinger flow (Candès, Li & Soltanolkotabi 2015).

    Minimises :math:`f(z) = \tfrac1{2m} \sum_r (|a_r^H z|^2 - y_r)^2` (rows :math:`a_r^H` of
    ``A`` = :meth:`~..operators.phase.Phase.fourier`, :math:`m` intensities per channel) by

    .. math::

        z_{k+1} = z_k - \frac{\mu_k\, c^2}{\|z_0\|^2} \nabla f(z_k), \quad
        \nabla f(z) = \tfrac1m A^H\big((|Az|^2 - y) \odot Az\big), \quad
        \mu_k = \min(1 - e^{-k/k_0}, \mu_{\max}),

    from the (truncated) :func:`spectral_init` (or ``x0``). :math:`c = m / K` rescales the
    rows to the paper's normalisation :math:`\tfrac1m \sum_r \tilde a_r \tilde a_r^H = I`
    (:math:`\tilde a_r = \sqrt c\, a_r`), under which the paper's step schedule applies
    unchanged. Metrics: ``residual`` and ``objective`` :math:`f(z)` (mean over the batch).

    The schedule assumes Gaussian-like measurement vectors. Natural images concentrate their
    spectrum (at 128 px one intensity can exceed :math:`K\,\mathrm{mean}(y)` a thousandfold),
    which raises the curvature far above the paper's estimate and made the plain schedule
    diverge within five steps. Each step therefore backtracks: the step is halved (and stays
    halved, ``step_damping``) until :math:`f` does not increase, so :math:`f` is monotone.

    Coded patterns: at 32-64 px, :math:`K = 6` noiseless patterns are recovered to float
    precision; with :math:`K = 4` the spectral start is too poor and WF stalls in a local
    minimum (as the paper's phase transition suggests); error reduction with the
    ``nonneg-real`` constraint still succeeds there for real images.
    """
    y, x0 = prepare(y, op, x0)
    _check_op(op, "wirtinger-flow")
    z = x0 if x0 is not None else spectral_init(y, op, p.power_iters, generator,
                                                 float(p.truncation))
    yf = op.as_fields(y)
    m = yf[0, 0].numel()
    c = m / op.gram
    z0n = sq_norms(z).clamp_min(1e-30)
    az = op.fourier(z)

    def objective_of(fields: Tensor) -> Tensor:
        res = fields.real.square() + fields.imag.square() - yf
        return res.square().flatten(1).sum(1) / (2 * m)

    obj = objective_of(az)
    damping = 1.0  # backtracking factor, kept across iterations
    state = None
    for k in range(1, p.iters + 1):
        mu = min(1.0 - math.exp(-k / float(p.k0)), float(p.mu_max))
        r = az.real.square() + az.imag.square() - yf
        grad = op.fourier_adjoint(r * az) / m
        for _ in range(60):
            z_new = z - (damping * mu * c * c) / z0n * grad
            az_new = op.fourier(z_new)
            obj_new = objective_of(az_new)
            if bool(torch.isfinite(obj_new).all()) and bool((obj_new <= obj).all()):
                break
            damping *= 0.5
        else:
            check_finite(z_new.new_full((1,), float("nan")), "wirtinger-flow", k,
                         "lower mu_max or raise k0")
        z, az, obj = z_new, az_new, obj_new
        check_finite(z, "wirtinger-flow", k, "lower mu_max or raise k0")
        r = az.real.square() + az.imag.square() - yf
        ax = op.as_measurement_layout(r + yf)
        state = IterState(k, p.iters, z, {}, {"residual": relative_residual(ax, y),
                                              "objective": float(obj.mean()),
                                              "step_damping": damping})
        yield state
    return state
