r"""Denoisers for plug-and-play methods: :math:`D(x, \sigma) \approx` the clean image.

A :class:`Denoiser` is any callable ``(x, sigma) -> x`` with ``x`` of shape ``(B, C, H, W)``,
or ``(B, C, D, H, W)`` for a volume (real or complex), and ``sigma`` the noise standard
deviation to remove (a float or a ``(B,)`` tensor, one level per batch element). The TV and
Gaussian denoisers are 3-D on volumes; the networks, trained on 2-D images, denoise a volume
slice by slice (2.5-D, :func:`~.geometry.slice_wise`). Implementations:

* :class:`TVDenoiser`: the proximal operator of TV, the MAP denoiser for the prior
  :math:`p(x) \propto e^{-w\,\mathrm{TV}(x)}` under Gaussian noise of std :math:`\sigma`:
  :math:`D(v, \sigma) = \arg\min_x \tfrac12\|x - v\|^2 + w\sigma^2\,\mathrm{TV}(x)`;
* :class:`GaussianDenoiser`: Gaussian smoothing of std :math:`s\,\sigma` pixels;
* :class:`BM3DDenoiser`: BM3D (Dabov et al. 2007, the ``bm3d`` package of Mäkinen, Azzari &
  Foi), the classical reference users know; CPU only, optional dependency;
* :class:`NetworkDenoiser`: a noise-conditional network (:class:`~.models.DRUNet`...).

:func:`get_denoiser` builds one by name: ``"tv"``, ``"gaussian"``, ``"bm3d"``, a name added with
:func:`register_denoiser` (a user's or a test's own denoiser) or the name of shipped network
weights (which needs those weights; see :func:`~.models.load_model`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Protocol

import torch
import torch.nn.functional as nnf

from .errors import InputError
from .geometry import slice_wise
from .models.layout import is_channels_last, to_channels_last
from .models.padding import channels_to_complex, complex_to_channels
from .models.registry import load_model, weights_names
from .tv import prox_tv

Tensor = torch.Tensor

__all__ = ["Denoiser", "TVDenoiser", "GaussianDenoiser", "BM3DDenoiser", "NetworkDenoiser",
           "BUILTIN", "SLOW_DENOISERS",
           "denoiser_names", "get_denoiser", "register_denoiser", "DEFAULT_DENOISER"]


class Denoiser(Protocol):
    """``(x (B, C, H, W), sigma float or (B,) tensor) -> denoised x`` (same shape and dtype)."""

    def __call__(self, x: Tensor, sigma: float | Tensor) -> Tensor: ...


def _sigmas(sigma: float | Tensor, b: int) -> list[float]:
    s = torch.as_tensor(sigma, dtype=torch.float64).reshape(-1).tolist()
    if len(s) not in (1, b):
        raise InputError(f"sigma has {len(s)} entries for a batch of {b}; pass one per image")
    return s * b if len(s) == 1 else s


class TVDenoiser:
    r"""TV proximal denoiser :math:`\mathrm{prox}_{w\sigma^2 \mathrm{TV}}(v)`.

    Parameters
    ----------
    weight
        Prior weight :math:`w` (TV penalty :math:`\lambda = w\sigma^2`); the default 25 gives
        :math:`\lambda = 0.01` at :math:`\sigma = 0.02` on images in [0, 1].
    iters
        Dual FGP iterations of :func:`~.tv.prox_tv`.
    """

    def __init__(self, weight: float = 25.0, iters: int = 50) -> None:
        self.weight, self.iters = float(weight), int(iters)

    def lam(self, sigma: float) -> float:
        r"""TV weight :math:`\lambda = w \sigma^2` used at noise level ``sigma``."""
        return self.weight * sigma * sigma

    def __call__(self, x: Tensor, sigma: float | Tensor) -> Tensor:
        s = _sigmas(sigma, x.shape[0])
        if len(set(s)) == 1:
            return prox_tv(x, self.lam(s[0]), iters=self.iters)[0]
        return torch.cat([prox_tv(x[i:i + 1], self.lam(si), iters=self.iters)[0]
                          for i, si in enumerate(s)])


def _gaussian_blur(x: Tensor, std: float) -> Tensor:
    """Separable Gaussian smoothing of a real ``(B, C, *spatial)`` tensor along every spatial
    axis, replicate borders."""
    if std <= 1e-3:
        return x
    r = max(1, math.ceil(3.0 * std))
    t = torch.arange(-r, r + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-0.5 * (t / std) ** 2)
    k = (k / k.sum()).view(1, 1, -1)
    for d in range(2, x.dim()):
        v = x.movedim(d, -1)
        lead = v.shape[:-1]
        v = nnf.conv1d(nnf.pad(v.reshape(-1, 1, v.shape[-1]), (r, r), mode="replicate"), k)
        x = v.reshape(*lead, -1).movedim(-1, d)
    return x.contiguous()


class GaussianDenoiser:
    r"""Gaussian smoothing of std :math:`s\,\sigma` pixels (real and imaginary parts alike).

    Parameters
    ----------
    px_per_sigma
        :math:`s`: pixels of smoothing per unit of noise std (default 25: 0.5 px at
        :math:`\sigma = 0.02`).
    max_px
        Cap on the smoothing std in pixels.
    """

    def __init__(self, px_per_sigma: float = 25.0, max_px: float = 8.0) -> None:
        self.px_per_sigma, self.max_px = float(px_per_sigma), float(max_px)

    def __call__(self, x: Tensor, sigma: float | Tensor) -> Tensor:
        s = _sigmas(sigma, x.shape[0])
        out = []
        for i, si in enumerate(s if len(set(s)) > 1 else [s[0]]):
            xi = x[i:i + 1] if len(set(s)) > 1 else x
            std = min(self.max_px, self.px_per_sigma * si)
            if xi.is_complex():
                out.append(channels_to_complex(_gaussian_blur(complex_to_channels(xi), std)))
            else:
                out.append(_gaussian_blur(xi, std))
        return torch.cat(out)


class BM3DDenoiser:
    r"""BM3D at noise std :math:`\sigma` (collaborative filtering of groups of similar patches
    in a 3-D transform domain: hard thresholding, then Wiener filtering with the first estimate
    as the pilot), from the ``bm3d`` package.

    Each 2-D image of the batch and channel is denoised on the CPU in float64 and returned on
    the input's device and dtype; complex images as their real and imaginary parts, each at
    :math:`\sigma / \sqrt 2` (the std per part of complex noise of :math:`E|n|^2 = \sigma^2`);
    volumes slice by slice. About 2 s per 128 px image here: a reference, not an interactive
    choice.

    Raises
    ------
    InputError
        The ``bm3d`` package is not installed (``pip install bm3d``).
    """

    def __init__(self) -> None:
        try:
            import bm3d
        except ImportError:
            raise InputError("the bm3d denoiser needs the bm3d package: pip install bm3d "
                             "(or napari-invrec[bm3d])") from None
        self._bm3d = bm3d.bm3d

    def _plane(self, v: Tensor, sigma: float) -> Tensor:
        if sigma <= 0:
            return v
        out = self._bm3d(v.detach().cpu().double().numpy(), sigma_psd=float(sigma))
        return torch.as_tensor(out, dtype=v.dtype, device=v.device)

    @torch.no_grad()
    def __call__(self, x: Tensor, sigma: float | Tensor) -> Tensor:
        s = _sigmas(sigma, x.shape[0])
        if x.dim() == 5:  # a volume: its z-slices as one batch, each at its volume's level
            return slice_wise(lambda v: self(v, torch.tensor(s).repeat_interleave(
                x.shape[2])), x)
        if x.is_complex():
            part = [si / math.sqrt(2.0) for si in s]
            return torch.complex(self(x.real, torch.tensor(part)),
                                 self(x.imag, torch.tensor(part)))
        return torch.stack([torch.stack([self._plane(x[b, c], s[b])
                                         for c in range(x.shape[1])])
                            for b in range(x.shape[0])])


class NetworkDenoiser:
    r"""Plug a noise-conditional network ``model(x, sigma)`` in as a denoiser.

    Runs in eval mode without gradients, on the input's device (the model is moved there);
    on the CPU the weights are kept channels-last (:mod:`.models.layout`: 1.36x on a 256x256
    DRUNet pass here, outputs equal to float32 rounding) and outputs are returned in the
    usual contiguous layout. Complex images: a network with ``in_channels == 2C`` gets
    real/imaginary parts stacked as channels; one with ``in_channels == C`` denoises the real
    and imaginary parts as separate images (each at :math:`\sigma/\sqrt2`, the std per part
    of complex noise of :math:`E|n|^2 = \sigma^2`). Networks pad internally, so any
    :math:`H \times W` works.
    """

    def __init__(self, model: torch.nn.Module) -> None:
        if not getattr(model, "noise_conditional", False):
            raise InputError(f"{type(model).__name__} takes no noise level; plug-and-play "
                             "needs a noise-conditional network (DRUNet, DnCNN)")
        self.model = model.eval()
        self._layout()

    def _run(self, x: Tensor, sigma: Tensor) -> Tensor:
        p = next(self.model.parameters(), None)
        if p is not None and p.device != x.device:
            self.model.to(x.device)
            self._layout()
        return self.model(x, sigma).contiguous()

    def _layout(self) -> None:
        """Channels-last weights on the CPU (done before the denoiser is shared by threads)."""
        p = next(self.model.parameters(), None)
        if p is not None and p.device.type == "cpu" and not is_channels_last(self.model):
            to_channels_last(self.model)

    @torch.no_grad()
    def __call__(self, x: Tensor, sigma: float | Tensor) -> Tensor:
        return self.differentiable(x, sigma)

    def differentiable(self, x: Tensor, sigma: float | Tensor) -> Tensor:
        """As calling the denoiser, but autograd follows the current grad mode (diffusion
        posterior sampling differentiates through the network)."""
        b, c = x.shape[:2]
        s = torch.tensor(_sigmas(sigma, b), dtype=x.real.dtype, device=x.device)
        if x.dim() == 5:  # a volume: its z-slices as one batch, each at its volume's level
            s = s.repeat_interleave(x.shape[2])
            return slice_wise(lambda v: self.differentiable(v, s), x)
        cin = int(getattr(self.model, "in_channels", c))
        if not x.is_complex():
            if cin != c:
                raise InputError(f"the network takes {cin} channel(s), the image has {c}")
            return self._run(x, s)
        if cin == 2 * c:
            return channels_to_complex(self._run(complex_to_channels(x), s))
        if cin == c:
            parts = torch.cat([x.real, x.imag])
            out = self._run(parts, torch.cat([s, s]) / math.sqrt(2.0))
            return torch.complex(out[:b], out[b:])
        raise InputError(f"the network takes {cin} channel(s); a complex image of {c} "
                         f"channel(s) needs {c} or {2 * c}")


BUILTIN: dict[str, type] = {"tv": TVDenoiser, "gaussian": GaussianDenoiser,
                            "bm3d": BM3DDenoiser}
#: denoisers of seconds per call, left out of automatic searches ("best for this data")
SLOW_DENOISERS = ("bm3d",)
#: the shipped network the plug-and-play methods and diffusion samplers use by default: a
#: DRUNet trained on photographs and synthetic images over sigma 0.002-2 (README weights table)
DEFAULT_DENOISER = "drunet-general"
#: denoisers added at run time by :func:`register_denoiser`: name -> zero-argument factory
CUSTOM: dict[str, Callable[[], Denoiser]] = {}


def register_denoiser(name: str, factory: Callable[[], Denoiser]) -> None:
    """Make ``factory()`` (a :class:`Denoiser`) available by ``name`` to every method that
    takes a ``denoiser`` parameter; it then appears in :func:`denoiser_names`.

    Raises
    ------
    InputError
        An empty name, a built-in name, or a factory that is not callable.
    """
    if not isinstance(name, str) or not name or name in BUILTIN:
        raise InputError(f"denoiser name {name!r} must be a non-empty string other than "
                         f"{', '.join(BUILTIN)}")
    if not callable(factory):
        raise InputError("register_denoiser needs a zero-argument callable returning a "
                         "denoiser D(x, sigma)")
    CUSTOM[name] = factory


def denoiser_names(manifest: Any = None) -> tuple[str, ...]:
    """Built-in denoisers, registered ones, then the noise-conditional networks of the
    weights manifest."""
    nets = weights_names(task="denoiser", architectures=("drunet", "dncnn"), manifest=manifest)
    return tuple(BUILTIN) + tuple(n for n in CUSTOM if n not in nets) + nets


def get_denoiser(name: str, *, manifest: Any = None, device: Any = None,
                 **kwargs: Any) -> Denoiser:
    """Denoiser by name: ``"tv"``, ``"gaussian"``, ``"bm3d"`` (``kwargs`` go to its
    constructor), one
    added by :func:`register_denoiser`, or shipped network weights.

    Raises
    ------
    InputError
        Unknown name, or network weights that are not installed (the message says how to
        train them with ``napari-invrec train``).
    """
    if name in BUILTIN:
        return BUILTIN[name](**kwargs)
    if name in CUSTOM:
        return CUSTOM[name]()
    return NetworkDenoiser(load_model(name, manifest=manifest, device=device))
