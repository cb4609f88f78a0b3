r"""Generative prior: compressed sensing with a generative model (``csgm``).

Bora, Jalal, Price, Dimakis, "Compressed sensing using generative models", ICML 2017. The
image is constrained to the range of a decoder :math:`G` (the project's convolutional VAE,
:class:`~napari_invrec.core.models.vae.VAE`, trained by ``napari-invrec train --task vae``),
and the latent map is fitted to the data,

.. math::

    \hat z = \arg\min_z \ \|A\,G(z) - y\|^2 + \lambda \|z\|^2, \qquad \hat x = G(\hat z),

by Adam on :math:`z` only (the network stays frozen, in eval mode). The objective is not
convex, so ``restarts`` latents per measurement are optimised together as one batch; the
result is the generated image with the smallest data loss :math:`\|A G(z) - y\|^2` seen so far
over all restarts and steps. With Gaussian noise of std :math:`\sigma` and the VAE prior
:math:`z \sim \mathcal N(0, I)` the objective is the MAP estimate for
:math:`\lambda = \sigma^2`.

Starts: ``init="encoder"`` encodes the data-consistent image :math:`x_s` of
:func:`~.starts.data_start` (for a linear operator
:math:`\arg\min_x \|Ax - y\|^2 + 0.05\|\nabla x\|^2`, for phase retrieval the magnitude of
HIO; its magnitude for complex images, clipped to :math:`[0, 1]`):
restart 0 starts at the encoder mean :math:`\mu(x_s)`, the others at samples of
:math:`q(z \mid x_s) = \mathcal N(\mu, e^{\ell})`. ``init="random"`` draws every start from
the prior :math:`\mathcal N(0, I)`.

The generator makes real images in :math:`[0, 1]` (the range it was trained on): complex-image
operators (MRI, phase retrieval) get the real image :math:`G(z)` with zero phase, so the data
must come from a real, non-negative image scaled to :math:`[0, 1]`. The data loss is
differentiated by autograd, so non-linear operators serve as well as linear ones: for phase
retrieval, :math:`\nabla_z \|\,|G E\,G(z)|^2 - y\|^2` (see ``tests/test_phase_generative.py``
for the gradient against finite differences). A one-channel VAE is applied to every
channel of a multi-channel image separately.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

from ..errors import InputError
from ..models.registry import find_entry, load_model_file
from ..params import param
from ..state import IterState
from .classical import check_finite, prepare, relative_residual
from .registry import register_method, weights_param
from .starts import data_start

Tensor = torch.Tensor

__all__ = ["csgm", "CSGMParams", "load_vae", "VAE_TASK"]

VAE_TASK = "vae"
_HOW = ("train one with `napari-invrec train --task vae --arch vae --data phantoms --name NAME` "
        "(see `napari-invrec train --help`)")


def load_vae(name: str, device: torch.device | str | None = None) -> torch.nn.Module:
    """The VAE weights ``name`` from the manifests (eval mode, weights frozen, on ``device``).

    Raises
    ------
    InputError
        No such weights (explained as for :func:`~..models.registry.load_model`:
        :func:`~..models.manifest.find_entry`), weights of another task/architecture, or a
        missing / incompatible file; the message names ``napari-invrec train --task vae``.
    """
    entry = find_entry(name, task=VAE_TASK, architectures=("vae",), how=_HOW)
    if entry.task != VAE_TASK or entry.architecture != "vae":
        raise InputError(f"weights {name!r} hold a {entry.architecture!r} network for the "
                         f"{entry.task!r} task; csgm needs a 'vae' network; {_HOW}")
    try:
        net = load_model_file(entry.file, entry=entry, device=device)
    except InputError as err:
        raise InputError(f"{err}; or {_HOW}") from err
    net.eval()
    net.requires_grad_(False)
    return net


@dataclass
class CSGMParams:
    r"""CSGM: :math:`\min_z \|A G(z) - y\|^2 + \lambda\|z\|^2` over the VAE latent by Adam."""

    weights: str = weights_param("vae-phantoms", "trained VAE whose decoder is the generator "
                                 "G (napari-invrec train --task vae)", task=VAE_TASK,
                                 architecture="vae")
    iters: int = param(300, "Adam steps on the latent", min=1, max=100000)
    lr: float = param(0.03, "Adam learning rate of the latent", min=1e-5, max=10.0,
                      step=0.01)
    lam: float = param(1e-3, "latent penalty lambda ||z||^2 (about the noise variance)",
                       min=0.0, max=100.0, step=1e-3)
    restarts: int = param(4, "latents optimised together (best by data loss is kept)", min=1,
                          max=256)
    init: str = param("encoder", "start: encoder (encode the smooth data-consistent image; "
                      "others sample around it) or random (z ~ N(0, I))",
                      choices=("encoder", "random"))


def _check(p: CSGMParams) -> None:
    if p.init not in ("encoder", "random"):
        raise InputError(f"csgm init must be 'encoder' or 'random', got {p.init!r}")
    for name, lo in (("lr", 0.0), ("lam", None)):
        v = float(getattr(p, name))
        if not math.isfinite(v) or (v <= 0 if lo is not None else v < 0):
            raise InputError(f"csgm {name} must be {'> 0' if lo is not None else '>= 0'}, "
                             f"got {v}")
    if int(p.iters) < 1 or int(p.restarts) < 1:
        raise InputError("csgm iters and restarts must be >= 1")


def _randn(shape: tuple[int, ...], generator: torch.Generator | None, device: Any) -> Tensor:
    gdev = generator.device if generator is not None else torch.device("cpu")
    return torch.randn(shape, generator=generator, device=gdev).to(device)


@register_method("csgm", CSGMParams, nonlinear=("phase",))
def csgm(y: Tensor, op: Any, p: CSGMParams, *, x0: Tensor | None = None,
         generator: torch.Generator | None = None) -> Iterator[IterState]:
    r"""CSGM (Bora et al. 2017): Adam on the VAE latent, best of ``restarts`` kept.

    Yields every step ``x`` = :math:`G(z)` of the restart with the smallest data loss so far
    (per measurement), with metrics ``residual`` (:math:`\|Ax - y\| / \|y\|`) and ``loss``
    (that restart's objective :math:`\|AG(z) - y\|^2 + \lambda\|z\|^2`, mean over the batch).
    ``x0``, when given, replaces :math:`x_s` as the image the encoder starts from
    (``init="encoder"``; ignored with ``init="random"``).
    """
    _check(p)
    y, x0 = prepare(y, op, x0)
    dev = y.device
    net = load_vae(p.weights, device=dev)
    b, c = y.shape[0], y.shape[1]
    h, w = op.shape[-2:]
    cin = int(getattr(net, "in_channels", c))
    if cin not in (c, 1):
        raise InputError(f"the VAE makes {cin}-channel images but the image has {c} channels; "
                         f"train one with --arch-kwargs '{{\"in_channels\": {c}}}'")
    fold = c if cin == 1 and c > 1 else 1  # channels folded into the batch
    r = int(p.restarts)
    zshape = tuple(net.latent_shape(h, w))

    def generate(z: Tensor) -> Tensor:
        """``(B R, C, H, W)`` images in the operator's dtype from ``(B R fold, C_z, ...)``."""
        g = net.decode(z, (h, w))
        return op.as_image(g.reshape(b * r, c, h, w))

    with torch.no_grad():
        if p.init == "encoder":
            xs = x0 if x0 is not None else data_start(y, op)
            xs = (xs.abs() if xs.is_complex() else xs).to(torch.float32).clamp(0.0, 1.0)
            mu, logvar = net.encode(xs.reshape(b * fold, c // fold, h, w))
            mu = mu.reshape(b, 1, fold, *zshape).expand(b, r, fold, *zshape)
            sd = (0.5 * logvar).exp().reshape(b, 1, fold, *zshape)
            eps = _randn((b, r, fold, *zshape), generator, dev)
            eps[:, 0] = 0.0  # restart 0: the encoder mean itself
            z = (mu + sd * eps).reshape(b * r * fold, *zshape)
        else:
            z = _randn((b * r * fold, *zshape), generator, dev)
    z = z.detach().clone().requires_grad_(True)
    opt = torch.optim.Adam([z], lr=float(p.lr))
    yb = y.repeat_interleave(r, dim=0)
    lam = float(p.lam)
    best_x = op.as_image(torch.zeros((b, c, h, w), device=dev))
    best_data = torch.full((b,), math.inf, device=dev)
    best_obj = torch.full((b,), math.inf, device=dev)
    rows = torch.arange(b, device=dev)
    state = None
    for k in range(1, int(p.iters) + 1):
        with torch.enable_grad():
            opt.zero_grad(set_to_none=True)
            x = generate(z)
            data = (op.A(x) - yb).abs().square().flatten(1).sum(1)
            pen = z.square().reshape(b * r, -1).sum(1)
            obj = data + lam * pen
            obj.sum().backward()
        with torch.no_grad():
            x = x.detach()
            check_finite(x, "csgm", k, "lower lr")
            d = data.detach().reshape(b, r)
            dmin, arg = d.min(dim=1)
            better = dmin < best_data
            idx = rows * r + arg
            best_x = torch.where(better.reshape(b, 1, 1, 1), x[idx], best_x)
            best_obj = torch.where(better, obj.detach().reshape(b, r)[rows, arg], best_obj)
            best_data = torch.minimum(best_data, dmin)
            metrics = {"residual": relative_residual(op.A(best_x), y),
                       "loss": float(best_obj.mean())}
        opt.step()
        state = IterState(k, int(p.iters), best_x, {}, metrics)
        yield state
    return state
