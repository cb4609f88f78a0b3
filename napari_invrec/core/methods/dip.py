r"""Deep image prior (Ulyanov, Vedaldi, Lempitsky, CVPR 2018), for any linear operator.

The image is the output of an untrained U-Net with a fixed random input
:math:`z \sim U(0, 1)`, :math:`x = s\, f_\theta(z)` (output convolution initialised to zero,
so the fit starts from :math:`x = 0`), and only the weights :math:`\theta` are fitted,

.. math::

    \min_\theta \ \frac1m \big\| A\, s f_\theta(z + \eta_k) - y \big\|^2, \qquad
    \eta_k \sim \mathcal N(0, \sigma_z^2 I) \ \text{(input noise regularisation)},

by Adam. The network fits natural structure before noise, so the prior is the early stop.
:math:`s = \max|A^H y| / \|A\|^2` makes the fit independent of the data's scale. Two aids for
stopping, both from the DIP literature:

* the discrepancy principle: with the noise std :math:`\sigma` known, stop at the first step
  where :math:`\|Ax - y\|^2 \le m \sigma^2` (:math:`m` entries per measurement), i.e. metric
  ``discrepancy`` :math:`= \|Ax - y\| / (\sqrt m\,\sigma) \le 1`; metrics
  ``discrepancy_reached`` (0/1) and ``stop_step`` (that step, 0 before);
* an exponential moving average of the outputs, :math:`\bar x_k = \beta \bar x_{k-1} +
  (1 - \beta) x_k`, which damps the late fitting of noise; it is the yielded ``x`` when
  :math:`\beta > 0` (``extras["raw"]``: the current output).

Complex images (MRI) are two output channels, real and imaginary part. Every batch element
gets its own network (the networks share nothing; one Adam over all of them is the same as one
per network, Adam being elementwise). Weights and :math:`z` are drawn from ``generator``: the
same seed gives the same result (bit for bit on CPU).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..errors import InputError
from ..linalg import bnorm
from ..models.unet import UNet
from ..params import param
from ..state import IterState
from .classical import check_finite, prepare, relative_residual
from .registry import register_method

Tensor = torch.Tensor

__all__ = ["dip", "DIPParams", "dip_networks", "data_scale", "fit_untrained", "draw_seed",
           "draw_input", "check_fit_params"]


@dataclass
class DIPParams:
    r"""Deep image prior: fit :math:`x = s f_\theta(z)` to the data with Adam, stop early."""

    iters: int = param(1000, "Adam steps (the prior is stopping early: watch the discrepancy)",
                       min=1, max=100000)
    lr: float = param(0.002, "Adam learning rate (above ~0.005 the fit can stall)", min=1e-6,
                      max=1.0, step=0.001)
    width: int = param(16, "U-Net channels at the finest scale", min=2, max=256)
    scales: int = param(4, "U-Net scales", min=1, max=7)
    z_channels: int = param(8, "channels of the fixed random input z ~ U(0, 1)", min=1,
                            max=128)
    input_noise: float = param(0.03, "std of the noise added to z at every step (0: none); "
                               "regularises the fit", min=0.0, max=1.0, step=0.01)
    sigma: float = param(0.01, "noise std of the measurement for the discrepancy principle "
                         "(0 = unknown)", min=0.0, max=10.0, step=0.005, noise=True)
    ema: float = param(0.99, "exponential moving average weight of the outputs (0 = off); "
                       "the average is the result", min=0.0, max=0.9999, step=0.01)


def dip_networks(n: int, in_channels: int, out_channels: int, width: int, scales: int,
                 seed: int) -> nn.ModuleList:
    """``n`` fresh U-Nets initialised from ``seed`` (global RNG left untouched), their
    output convolution zero so that the fit starts from :math:`x = 0`."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        nets = nn.ModuleList(UNet(in_channels, out_channels, width=width, scales=scales,
                                  residual=False) for _ in range(n))
    for net in nets:
        nn.init.zeros_(net.out.weight)
        nn.init.zeros_(net.out.bias)
    return nets


def data_scale(op: Any, y: Tensor) -> Tensor:
    r"""Per-element scale :math:`s_b = \max|A^H y_b| / \|A\|^2` (1 where that is 0),
    shape ``(B, 1, 1, 1)``."""
    aty = op.A_adjoint(y).abs()
    s = aty.flatten(1).amax(1) / max(float(op.norm()) ** 2, 1e-12)
    s = torch.where(s > 0, s, torch.ones_like(s))
    return s.to(torch.float32).reshape(-1, 1, 1, 1)


def draw_seed(generator: torch.Generator | None) -> int:
    """A network seed drawn from ``generator`` (on its device)."""
    gdev = generator.device if generator is not None else torch.device("cpu")
    return int(torch.randint(0, 2**62, (1,), generator=generator, device=gdev))


def draw_input(generator: torch.Generator | None, shape: tuple[int, ...], device: Any
               ) -> Tensor:
    """The fixed network input :math:`z \\sim U(0, 1)` of ``shape``, from ``generator``."""
    gdev = generator.device if generator is not None else torch.device("cpu")
    return torch.rand(shape, generator=generator, device=gdev).to(device)


def check_fit_params(p: Any, method: str) -> None:
    """Check the fitting fields shared by the untrained-network methods."""
    for name in ("lr", "input_noise", "sigma", "ema"):
        v = float(getattr(p, name))
        if not math.isfinite(v) or v < 0 or (name == "lr" and v == 0):
            raise InputError(f"{method} {name} must be {'> 0' if name == 'lr' else '>= 0'}, "
                             f"got {v}")
    if p.ema >= 1:
        raise InputError(f"{method} ema must be < 1 (0 = off), got {p.ema}")
    if p.iters < 1:
        raise InputError(f"{method} iters must be >= 1")


@register_method("dip", DIPParams)
def dip(y: Tensor, op: Any, p: DIPParams, *, x0: Tensor | None = None,
        generator: torch.Generator | None = None) -> Iterator[IterState]:
    r"""Deep image prior: Adam on :math:`\tfrac1m\|A s f_\theta(z + \eta) - y\|^2`.

    Yields every step ``x`` (the output average when ``ema > 0``, else the output) and
    metrics ``residual`` (:math:`\|Ax - y\|/\|y\|`), ``loss`` (the step's data loss) and,
    when ``sigma > 0``, ``discrepancy``, ``discrepancy_reached`` and ``stop_step`` (see the
    module docstring). ``x0`` is ignored (the network starts from random weights).
    """
    check_fit_params(p, "dip")
    if p.width < 1 or p.scales < 1 or p.z_channels < 1:
        raise InputError("dip width, scales and z_channels must be >= 1")
    y, _ = prepare(y, op)
    b, c = y.shape[0], y.shape[1]
    h, w = op.shape
    seed = draw_seed(generator)
    z = draw_input(generator, (b, int(p.z_channels), h, w), y.device)
    nets = dip_networks(b, int(p.z_channels), 2 * c if op.complex_image else c,
                        int(p.width), int(p.scales), seed)
    return (yield from fit_untrained(y, op, p, nets, z, seed, "dip"))


def fit_untrained(y: Tensor, op: Any, p: Any, nets: nn.ModuleList, z: Tensor, seed: int,
                  name: str) -> Iterator[IterState]:
    r"""Fit one untrained network per batch element, :math:`x_b = s_b f_{\theta_b}(z_b +
    \eta)`, to the prepared measurement ``y`` by Adam on the mean squared data misfit (the
    module docstring's loop, shared by ``dip`` and ``deep-decoder``).

    ``p`` holds ``iters``, ``lr``, ``input_noise``, ``sigma`` and ``ema`` (checked by the
    caller); ``nets[b]`` maps ``z[b:b+1]`` to ``c`` channels (``2c`` for a complex image).
    """
    dev = y.device
    b, c = y.shape[0], y.shape[1]
    cplx = bool(op.complex_image)
    nets = nets.to(dev)
    opt = torch.optim.Adam(nets.parameters(), lr=float(p.lr))
    noise_gen = torch.Generator(device=dev).manual_seed(seed % (2**31) + 1)
    with torch.no_grad():
        scale = data_scale(op, y)
    m = y[0].numel()
    sigma = float(p.sigma)

    def image(inp: Tensor) -> Tensor:
        out = torch.cat([net(inp[i:i + 1]) for i, net in enumerate(nets)]) * scale
        return torch.complex(out[:, :c], out[:, c:]) if cplx else out

    avg: Tensor | None = None
    stop_step = 0
    state = None
    for k in range(1, p.iters + 1):
        inp = z
        if p.input_noise > 0:
            inp = z + p.input_noise * torch.randn(z.shape, generator=noise_gen, device=dev)
        with torch.enable_grad():
            opt.zero_grad(set_to_none=True)
            x = image(inp)
            loss = (op.A(x) - y).abs().square().flatten(1).sum(1).div(m).sum()
            loss.backward()
            opt.step()
        x = x.detach()
        check_finite(x, name, k, "lower lr")
        with torch.no_grad():
            avg = x if (avg is None or p.ema == 0) else p.ema * avg + (1 - p.ema) * x
            ax = op.A(avg)
            metrics = {"residual": relative_residual(ax, y), "loss": float(loss) / b}
            if sigma > 0:
                disc = float((bnorm(ax - y) / (math.sqrt(m) * sigma)).mean())
                if stop_step == 0 and disc <= 1.0:
                    stop_step = k
                metrics |= {"discrepancy": disc, "discrepancy_reached": float(stop_step > 0),
                            "stop_step": float(stop_step)}
        extras = {"raw": x} if p.ema > 0 else {}
        state = IterState(k, p.iters, avg, extras, metrics)
        yield state
    return state
