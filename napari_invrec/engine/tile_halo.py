r"""How far a tile's boundary reaches into it: the halo a tiled run needs, from the physics.

A tile is solved as if it were the whole image, so its edge injects an error: the blur operator
is periodic (the tile wraps around onto itself), the TV gradient and the networks see an edge
that the whole image does not have. The halo :math:`h` is the margin around each tile's core
where that error is allowed to live: beyond :math:`h` pixels from the edge it must be below
:data:`EPS` (relative to the image range), so cores of neighbouring tiles agree with the
untiled run and with each other.

**Operator part.** Linearised, an iterative method after :math:`k` steps applies a regularised
inverse filter of the kernel :math:`K = \mathcal F k`,

.. math::

    G_\alpha = \frac{\overline K}{|K|^2 + \alpha}, \qquad
    \alpha \approx 1/k \ \text{(Landweber, Richardson-Lucy, plug-and-play gradient steps)},\
    1/k^2 \ \text{(FISTA)},\ \rho_{\min} \ \text{(HQS/ADMM data steps)},\ \text{nsr (Wiener)}.

An error :math:`e` on the tile's edge (at most the image range) reaches a core pixel as
:math:`\sum_q g_\alpha(p - q)\,e(q)`, so with the tail mass

.. math::

    T(h) = \sum_{\|q\|_\infty \ge h} |g_\alpha(q)| \,\big/\, |G_\alpha(0)|

the contamination is at most :math:`T(h)` times the range. :func:`filter_reach` computes
:math:`g_\alpha` on a periodic grid large enough that the tail does not wrap (doubling it up to
:data:`MAX_GRID`) and returns the smallest :math:`h` with :math:`T(h) \le` :data:`EPS`. For a
Gaussian kernel of std :math:`\sigma`, :math:`G_\alpha` is analytic in the strip
:math:`|\mathrm{Im}\,\omega| < \pi / (2\sigma\sqrt{\ln(1/\alpha)})`, so the tail decays like
:math:`e^{-d/\ell}` with :math:`\ell = 2\sigma\sqrt{\ln(1/\alpha)}/\pi`: the halo grows like
:math:`\sqrt{\ln k}`, not like the light cone :math:`k \cdot 2R`. Kernels with spectral zeros
(disk, motion) decay much more slowly and get larger halos (or are refused past
:data:`MAX_GRID`). The non-linear methods (Richardson-Lucy's multiplicative update, TV) exceed
the linearised bound; measured on a 384² image (σ = 2 Gaussian; Richardson-Lucy at 10-300
iterations, FISTA at 100-300), a factor :data:`SAFETY` = 1.5 on :math:`h` covers them.

**Prior part.** TV couples neighbours through its gradient, and its flat regions carry values
further: measured on inpainting (no kernel: the prior alone) of a 384² photograph with half
the pixels, ``tv-fista`` at lam 0.01 and 50 iterations, the boundary error at the worst
interior pixel is 1.5e-4 with a 16-pixel halo, 3.7e-5 with 32 and 8e-6 with 48; at 150
iterations 2.2e-4 with 16 and 1.6e-6 with 48 (:data:`TV_REACH`). A denoiser network of
receptive radius :math:`r` (found by :func:`network_reach`: the support of the gradient of one
output pixel, the exact light cone) is applied :math:`k` times; its influence spreads like a
random walk, :math:`h_N = r\sqrt{k}/c` with :math:`c =` :data:`NET_SPREAD`, measured with DPIR
(4, 8 and 24 iterations, denoise and blur) and PnP-PGD (30 iterations, blur) and the shipped
DRUNet (:math:`r = 93`). The Gaussian denoiser of std :math:`s` gives :math:`4.5\,s\sqrt{k}`
(a Gaussian's tail below 1e-5).

The halo is :math:`\lceil \mathrm{SAFETY}\cdot h_\alpha \rceil + h_{\mathrm{prior}} + h_N`
(the one-step adjoint and bicubic: their exact support). ``benchmarks/bench_tiles.py`` checks
the rule: tiled and untiled runs agree to 1e-4 of the range away from the image border.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..core.errors import InputError

__all__ = ["EPS", "SAFETY", "TV_REACH", "NET_SPREAD", "LOCAL_OPERATORS", "LOCAL_METHODS",
           "Reach", "filter_reach", "network_reach", "method_reach", "check_local", "align_of"]

#: boundary error allowed at the core, relative to the image range (1e-4 is the agreement
#: promised; the margin covers float32 rounding, which grows with iterations)
EPS = 1e-5
#: measured factor of the non-linear methods over the linearised filter bound
SAFETY = 1.5
#: measured reach of the TV prior (pixels; module docstring)
TV_REACH = 48
#: measured: a network of receptive radius r applied k times reaches r sqrt(k) / NET_SPREAD
NET_SPREAD = 3.5
#: largest periodic grid on which :func:`filter_reach` looks for the tail (halo <= MAX_GRID/4)
MAX_GRID = 2048

#: operator families whose physics is local (a pixel's measurement depends on a neighbourhood)
LOCAL_OPERATORS = ("blur", "denoise", "inpaint", "superres")


def _iters(p: Any) -> int:
    return int(getattr(p, "iters", 1))


def _wiener_alpha(p: Any) -> float:
    nsr = float(p.nsr)
    if nsr <= 0:
        raise InputError("wiener with nsr=0 is the truncated pseudo-inverse, whose impulse "
                         "response is not local: set nsr > 0 for a tiled run")
    return nsr


#: method -> regularisation alpha of its effective inverse filter (None: a one-step method
#: whose reach is its operator's support)
LOCAL_METHODS: dict[str, Any] = {
    "adjoint": lambda p: None,
    "bicubic": lambda p: None,
    "wiener": _wiener_alpha,
    "richardson-lucy": lambda p: 1.0 / _iters(p),
    "tv-fista": lambda p: 1.0 / _iters(p) ** 2,
    "pnp-pgd": lambda p: 1.0 / (_iters(p) * float(p.tau_scale)),
    "red": lambda p: 1.0 / (_iters(p) * float(p.step_scale)),
    "pnp-admm": lambda p: float(p.rho),
    "dpir": lambda p: float(p.lam) * float(p.sigma) ** 2 / float(p.sigma_max) ** 2,
}


@dataclass(frozen=True)
class Reach:
    """The margin a tiled run keeps around each core.

    Attributes
    ----------
    halo
        Pixels of the image grid beyond which the tile edge's error is below :data:`EPS`.
    align
        Tile origins must be multiples of this (a network's down-sampling factor, the
        super-resolution factor), so each tile sees the same pixel lattice as the whole image.
    rule
        How ``halo`` was derived (for the provenance).
    """

    halo: int
    align: int
    rule: str


def check_local(op_name: str, method: str, method_spec: Any, params: Any) -> None:
    """Refuse an operator or method that cannot run tile by tile, in one line.

    Raises
    ------
    InputError
        A non-local operator (MRI, CT, phase...), a method without a locality rule, a
        stochastic method, or ``tol > 0`` (each tile would stop at another step).
    """
    if op_name not in LOCAL_OPERATORS:
        raise InputError(f"the {op_name} operator is not local (each measurement mixes the "
                         f"whole image): tiles run only {', '.join(LOCAL_OPERATORS)}")
    if method_spec.stochastic:
        raise InputError(f"{method} draws random samples, which differ from tile to tile: "
                         "run it without tiles")
    if method not in LOCAL_METHODS:
        raise InputError(f"{method} has no locality rule for tiles; tiled methods: "
                         f"{', '.join(sorted(m for m in LOCAL_METHODS if m != 'bicubic'))}"
                         " (bicubic for superres)")
    if float(getattr(params, "tol", 0.0) or 0.0) > 0:
        raise InputError(f"tol={params.tol} would stop each tile at a different step; set "
                         "tol=0 for a tiled run")


def filter_reach(kernel: np.ndarray | None, alpha: float | None, eps: float = EPS) -> int:
    r"""Smallest :math:`h` with tail mass :math:`T(h) \le \varepsilon` of the filter
    :math:`\overline K/(|K|^2+\alpha)` (:math:`\overline K` when ``alpha`` is ``None``); see the
    module docstring. ``kernel=None`` (no blur: denoise, inpaint) reaches 0 pixels.

    Raises
    ------
    InputError
        The tail does not fall below ``eps`` within :data:`MAX_GRID` / 4 pixels: the inverse
        of this kernel at this regularisation is not local enough for tiles.
    """
    from ..core.operators.blur import periodic_embed

    if kernel is None:
        return 0
    k = np.asarray(kernel, dtype=np.float64)
    g = 256
    while g < 8 * max(k.shape):
        g *= 2
    while True:
        kf = np.fft.rfft2(periodic_embed(k, (g, g)))
        f = np.conj(kf) if alpha is None else np.conj(kf) / (np.abs(kf) ** 2 + float(alpha))
        imp = np.abs(np.fft.irfft2(f, s=(g, g)))
        d = np.minimum(np.arange(g), g - np.arange(g))
        cheb = np.maximum(d[:, None], d[None, :]).ravel()
        mass = np.bincount(cheb, weights=imp.ravel(), minlength=g // 2 + 1)
        tail = mass[::-1].cumsum()[::-1] / abs(f[0, 0].real)
        ok = np.flatnonzero(tail <= eps)
        if ok.size and ok[0] <= g // 4:
            return int(ok[0])
        if g >= MAX_GRID:
            what = "the kernel" if alpha is None else f"the kernel's inverse at alpha={alpha:.3g}"
            raise InputError(f"{what} reaches beyond {MAX_GRID // 4} px (tail above {eps:g}): "
                             "tiles cannot reproduce the untiled run; use fewer iterations, a "
                             "larger regularisation, or run without tiles")
        g *= 2


@functools.cache
def network_reach(name: str) -> tuple[int, int]:
    """``(receptive radius, down-sampling multiple)`` of the denoiser network ``name``.

    The radius is measured, not assumed: the gradient of one output pixel with respect to
    the input is non-zero exactly on the network's receptive field (its light cone), so the
    largest Chebyshev distance of a non-zero gradient entry is the radius.
    """
    import torch

    from ..core.denoisers import get_denoiser

    den = get_denoiser(name, device="cpu")
    model = den.model
    mult = int(getattr(model, "multiple", 1))
    cin = int(getattr(model, "in_channels", 1))
    size = 256
    gen = torch.Generator().manual_seed(0)
    while True:
        x = torch.rand((1, cin, size, size), generator=gen).requires_grad_(True)
        c = size // 2
        with torch.enable_grad():
            den.differentiable(x, 0.05)[0, 0, c, c].backward()
        nz = torch.nonzero(x.grad.abs().sum(dim=(0, 1)) > 0)
        r = int((nz - c).abs().max()) if nz.numel() else 0
        if r < c - 2 * mult or size >= 1024:
            return r, mult
        size *= 2


def _operator_kernel(op_name: str, op_params: Any) -> np.ndarray | None:
    from ..core.operators.blur import BlurParams, blur_kernel
    from ..core.operators.superres import superres_sigma

    if op_name == "blur":
        return blur_kernel(op_params, (MAX_GRID, MAX_GRID))
    if op_name == "superres":
        return blur_kernel(BlurParams(kernel="gaussian", sigma=superres_sigma(op_params)),
                           (MAX_GRID, MAX_GRID))
    return None


def _denoiser_reach(p: Any, k: int) -> tuple[int, int, str]:
    """``(halo, align, rule)`` of the denoiser a plug-and-play method applies ``k`` times."""
    name = str(p.denoiser)
    strength = float(getattr(p, "sigma_max", getattr(p, "sigma", 0.05)))
    if name == "tv":
        return TV_REACH, 1, f"TV denoiser {TV_REACH} px"
    if name == "gaussian":
        from ..core.denoisers import GaussianDenoiser

        g = GaussianDenoiser()
        s = min(g.max_px, g.px_per_sigma * strength)
        h = math.ceil(4.5 * s * math.sqrt(k))
        return h, 1, f"Gaussian denoiser 4.5 x {s:.3g} px x sqrt({k}) = {h} px"
    from ..core.denoisers import CUSTOM

    if name in CUSTOM:
        raise InputError(f"the reach of the registered denoiser {name!r} is unknown: pass "
                         "halo=N (pixels) for a tiled run")
    r, mult = network_reach(name)
    h = math.ceil(r * math.sqrt(k) / NET_SPREAD)
    return h, mult, (f"network {name} receptive radius {r} px x sqrt({k}) / {NET_SPREAD} = "
                     f"{h} px")


def align_of(op_name: str, op_params: Any, params: Any) -> int:
    """Alignment of tile origins (image pixels): the super-resolution factor times a denoiser
    network's down-sampling multiple (1 for other denoisers and operators)."""
    align = int(op_params.factor) if op_name == "superres" else 1
    name = str(getattr(params, "denoiser", ""))
    from ..core.denoisers import BUILTIN, CUSTOM

    if name and name not in BUILTIN and name not in CUSTOM:
        mult = network_reach(name)[1]
        align = align * mult // math.gcd(align, mult)
    return align


def method_reach(op_name: str, op_params: Any, method: str, params: Any) -> Reach:
    """The halo and alignment of ``method`` on the local operator ``op_name`` (module
    docstring), in pixels of the image grid."""
    from .memory import run_steps

    k = run_steps(params)
    alpha = LOCAL_METHODS[method](params)
    kernel = _operator_kernel(op_name, op_params)
    h_f = filter_reach(kernel, alpha)
    if kernel is None:
        halo, rule = 0, f"{op_name}: pointwise operator, no kernel"
    elif alpha is None:
        halo, rule = h_f, f"kernel support {h_f} px"
    else:
        halo = math.ceil(SAFETY * h_f)
        rule = (f"tail of conj(K)/(|K|^2+{alpha:.3g}) below {EPS:g} beyond {h_f} px x "
                f"{SAFETY} = {halo} px")
    align = 1
    if op_name == "superres":
        f = int(op_params.factor)
        align = f
        if method == "bicubic":
            halo += 2 * f + 1
            rule += f"; bicubic support {2 * f + 1} px"
    if method in ("tv-fista",) or (method == "richardson-lucy" and float(params.tv_lam) > 0):
        halo += TV_REACH
        rule += f"; TV {TV_REACH} px"
    if hasattr(params, "denoiser"):
        h_n, mult, why = _denoiser_reach(params, k)
        halo += h_n
        align = align * mult // math.gcd(align, mult)
        rule += f"; {why}"
    return Reach(int(halo), int(align), rule)
