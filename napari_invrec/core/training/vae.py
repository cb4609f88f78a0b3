r"""Training of the convolutional VAE (:class:`~napari_invrec.core.models.vae.VAE`).

On the shared loop of :mod:`.loops` (Adam, cosine learning rate, per-step seeded data, exact
resume from a checkpoint). Each step draws clean patches :math:`x` (``batch`` of size
``patch``), encodes them, samples a latent by the reparameterisation
:math:`z = \mu + e^{\ell/2} \odot \varepsilon`, :math:`\varepsilon \sim \mathcal N(0, I)` drawn
from the step's generator, and minimises the negative evidence lower bound with a Gaussian
likelihood, scaled per pixel:

.. math::

    \mathcal L = \frac{1}{B\,N} \sum_b \Big( \|G(z_b) - x_b\|^2
        + \beta \, \mathrm{KL}\big(q(z \mid x_b)\,\|\,\mathcal N(0, I)\big) \Big), \qquad
    \mathrm{KL} = \tfrac12 \sum_j \big(\mu_j^2 + e^{\ell_j} - 1 - \ell_j\big),

with :math:`N = C H W` pixels per patch. For a likelihood
:math:`\mathcal N(G(z), s^2 I)` this is the ELBO up to constants with :math:`\beta = 2 s^2`;
a small :math:`\beta` favours sharp reconstructions, a large one a latent that follows the
prior.

Validation (every ``val_every`` steps, fixed held-out patches from ``default_rng([seed, 1])``):
``val_psnr`` of the mean reconstruction :math:`G(\mu(x))`; ``extras``: ``const_psnr`` (PSNR of
the best constant image per patch, its mean, as a floor) and ``val_kl`` (mean KL per latent
entry).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import InputError
from .datasets import PatchSource
from .loops import TrainState, _check_common, _loop, _psnr, _resolve_device

Tensor = torch.Tensor

__all__ = ["train_vae", "kl_divergence"]


def kl_divergence(mu: Tensor, logvar: Tensor) -> Tensor:
    r"""Per-sample :math:`\mathrm{KL}(\mathcal N(\mu, e^{\ell}) \| \mathcal N(0, I)) =
    \tfrac12 \sum_j (\mu_j^2 + e^{\ell_j} - 1 - \ell_j)`, shape ``(B,)``."""
    return 0.5 * (mu.square() + logvar.exp() - 1.0 - logvar).flatten(1).sum(1)


def train_vae(model: torch.nn.Module, source: PatchSource, *, beta: float = 1e-3,
              steps: int = 2000, batch: int = 16, patch: int = 48, lr: float = 1e-3,
              seed: int = 0, device: Any = None, val_every: int = 50, val_size: int = 16,
              resume: str | Path | None = None, checkpoint: str | Path | None = None,
              checkpoint_every: int = 100) -> Iterator[TrainState]:
    r"""Train a VAE on clean patches of ``source`` (see the module docstring for the loss).

    Parameters
    ----------
    model
        A :class:`~napari_invrec.core.models.vae.VAE` (``encode``, ``decode``).
    source
        Patch source (images in :math:`[0, 1]`).
    beta
        Weight :math:`\beta \ge 0` of the KL term.
    steps, batch, patch, lr, seed, device, val_every, val_size, resume, checkpoint,
    checkpoint_every
        As for :func:`~.loops.train_denoiser`.

    Returns
    -------
    Iterator[TrainState]
        Generator yielding the state after every step (arguments checked, validation set
        drawn and a resume checkpoint loaded when this function is called).
    """
    _check_common(steps, batch, patch, lr)
    beta = float(beta)
    if not np.isfinite(beta) or beta < 0:
        raise InputError(f"beta must be >= 0, got {beta}")
    if not (callable(getattr(model, "encode", None)) and callable(getattr(model, "decode", None))):
        raise InputError(f"{type(model).__name__} is not a VAE (needs encode/decode); "
                         "use --arch vae")
    dev = _resolve_device(model, device)
    model.to(dev)
    xv = source.sample(int(val_size), patch, np.random.default_rng([int(seed), 1]), dev)
    const = xv.mean(dim=(1, 2, 3), keepdim=True).expand_as(xv)
    const_psnr = _psnr(const, xv)
    size = (patch, patch)

    def step_loss(rng: np.random.Generator) -> Tensor:
        x = source.sample(batch, patch, rng, dev)
        mu, logvar = model.encode(x)
        eps = torch.from_numpy(rng.standard_normal(tuple(mu.shape)).astype(np.float32))
        z = mu + (0.5 * logvar).exp() * eps.to(dev)
        rec = model.decode(z, size)
        n = x[0].numel()
        err = (rec - x).square().flatten(1).sum(1)
        return ((err + beta * kl_divergence(mu, logvar)) / n).mean()

    def validate() -> dict:
        mu, logvar = model.encode(xv)
        rec = model.decode(mu, size)
        kl = float(kl_divergence(mu, logvar).mean()) / mu[0].numel()
        return {"val_psnr": _psnr(rec, xv), "const_psnr": const_psnr, "val_kl": kl}

    meta = {"batch": batch, "patch": patch, "beta": beta,
            "data": getattr(source, "spec", "?")}
    return _loop(model, step_loss, validate, task="vae", steps=steps, lr=lr, seed=seed,
                 val_every=val_every, resume=resume, checkpoint=checkpoint,
                 checkpoint_every=checkpoint_every, meta=meta, device=dev)
