r"""A self-supervised (Noise2Self) denoiser as a reconstruction method of its own.

Noise2Self (Batson & Royer, ICML 2019) trains a network :math:`f` on the noisy data itself
(``napari-invrec train --task noise2self``, or the Train dock on an image layer): for noise
independent between pixels, a :math:`J`-invariant denoiser that minimises the
self-supervised loss also minimises the supervised one up to a constant. The method
``noise2self`` applies such a network the way it was trained, as the :math:`J`-invariant
(blind-spot) prediction: the pixels are split into :math:`g^2` interleaved subsets
:math:`J_{ab} = \{(r, c) : r \equiv a,\ c \equiv b \pmod g\}` and

.. math::

    \hat x = \sum_{a, b} \mathbb 1_{J_{ab}} \odot f(\tilde y_{J_{ab}}),

where :math:`\tilde y_J` replaces the pixels of :math:`J` by the mean of their neighbours
(:func:`~..training.loops.blind_spot_input`): no output pixel depends on its own noisy value,
so the residual :math:`y - \hat x` is the noise plus the estimate's error, never the noise
the network learned to copy. Each pass is one step: stepping through the iterates shows the
prediction filling in, subset by subset (the pixels not yet predicted keep :math:`y`).

The network must come from Noise2Self training (weights whose manifest entry says
``training: noise2self``): a supervised denoiser would be used outside the conditions it was
trained in. It runs in the data's own units (the units it was trained on: the engine does not
normalise this method's data), one channel at a time.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

from ..errors import InputError
from ..models.manifest import find_entry, read_manifest
from ..models.registry import load_model_file
from ..params import param
from ..state import IterState
from ..training.loops import blind_spot_passes, is_conditional
from .classical import check_finite, prepare, relative_residual
from .registry import register_method

Tensor = torch.Tensor

__all__ = ["noise2self", "Noise2SelfParams", "self_supervised_names", "TRAINING"]

TRAINING = "noise2self"
_HOW = ("train one on your noisy image: the Train dock (task 'self-supervised (Noise2Self)') "
        "or `napari-invrec train --task noise2self --data file:IMAGE --name NAME`")


def self_supervised_names() -> tuple[str, ...]:
    """Installed weights trained by Noise2Self (sorted)."""
    return tuple(sorted(n for n, e in read_manifest().items() if e.training == TRAINING))


@dataclass
class Noise2SelfParams:
    """Noise2Self: each pixel predicted from its neighbours by a self-supervised network."""

    weights: str = param("n2s-atoms", "a network trained by Noise2Self on data like this one "
                         "(the shipped n2s-atoms: STEM-like lattices with noise std 0.1 on "
                         "[0, 1])", choices=self_supervised_names, network=True)
    grid: int = param(4, "g: pixels split into g x g interleaved subsets, one network pass "
                      "each", min=2, max=8)
    noise_sigma: float = param(0.0, "noise std given to a noise-conditional network (0: the "
                               "level it was trained at)", min=0.0, max=100.0, step=0.01)


def _load(p: Noise2SelfParams, device: Any) -> tuple[torch.nn.Module, float | None]:
    """The network (eval, frozen) and the noise level to condition it on (``None``: none)."""
    entry = find_entry(p.weights, task="denoiser", how=_HOW)
    if entry.training != TRAINING:
        raise InputError(f"weights {p.weights!r} were not trained by Noise2Self; pick one of "
                         f"{', '.join(self_supervised_names()) or 'none installed'}, or {_HOW}")
    net = load_model_file(entry.file, entry=entry, device=device)
    net.eval()
    net.requires_grad_(False)
    if not is_conditional(net):
        return net, None
    sigma = float(p.noise_sigma) or float(entry.metrics.get("data_sigma") or 0.0)
    if not sigma > 0:
        raise InputError(f"{p.weights!r} is noise-conditional and records no training noise "
                         "level: set noise_sigma")
    return net, sigma


@register_method("noise2self", Noise2SelfParams, operators=("denoise",), own_units=True)
@torch.no_grad()
def noise2self(y: Tensor, op: Any, p: Noise2SelfParams, *, x0: Tensor | None = None,
               generator: torch.Generator | None = None) -> Iterator[IterState]:
    r"""Noise2Self's :math:`J`-invariant prediction by a self-supervised network.

    Yields one step per pass (``grid**2`` in all) with metric ``residual``
    :math:`\|y - \hat x\| / \|y\|` (the noise the prediction removes, relative to the data);
    ``x0`` is ignored (the prediction is a function of :math:`y` alone).
    """
    if int(p.grid) < 2:
        raise InputError(f"noise2self grid must be >= 2, got {p.grid}")
    y, _ = prepare(y, op)
    if y.is_complex():
        raise InputError("noise2self denoises real images; take the magnitude or the real "
                         "part first")
    net, sigma = _load(p, y.device)
    b, c = y.shape[:2]
    flat = y.reshape(b * c, 1, *y.shape[2:])  # one channel at a time
    total = int(p.grid) ** 2
    state = None
    passes = blind_spot_passes(net, flat, grid=int(p.grid), sigma=sigma,
                               conditional=sigma is not None)
    for k, out in enumerate(passes, start=1):
        x = out.reshape(y.shape)
        check_finite(x, "noise2self", k, "check the data's units against the network's")
        state = IterState(k, total, x, {}, {"residual": relative_residual(x, y)})
        yield state
    return state
