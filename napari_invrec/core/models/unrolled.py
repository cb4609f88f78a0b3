r"""Unrolled (physics-in-the-loop) networks: K stages that alternate the operator and a CNN.

Each architecture runs on a measurement :math:`y` and a
:class:`~napari_invrec.core.operators.base.LinearOperator` :math:`A` given at call time, so the
physics enters every stage. :math:`L = \|A\|^2` comes from ``op.norm()``; learned step sizes
are stored as logarithms and are relative to :math:`1/L` (:math:`\eta = e^{s} / L > 0`).

* :class:`UnrolledPGD`: learned proximal-gradient-like steps
  :math:`x_{k+1} = x_k - \eta_k\big(A^H(Ax_k - y) + R_k(x_k)\big)`;
* :class:`VarNet`: the variational network (Hammernik et al., MRM 2018; Sriram et al.,
  MICCAI 2020) in image-domain form,
  :math:`x_{k+1} = x_k - \eta_k A^H(Ax_k - y) - U_k(x_k)` with a small U-Net :math:`U_k`;
* :class:`LearnedADMM`: unrolled ADMM (ADMM-Net, Yang et al. 2016; Le-ADMM, Monakhova et
  al. 2019) with a learned penalty, dual step and CNN proximal map per stage;
* :class:`NeumannNet`: the Neumann network (Gilton, Ongie, Willett, IEEE TCI 2019),
  a truncated Neumann series for :math:`(A^H A + R)^{-1}`.

Complex images (MRI) are fed to the CNNs as two real channels (real, imaginary) and the CNN's
output converted back; the last layer of every CNN starts at zero, so an untrained network is
plain gradient descent (Landweber) or a plain truncated Neumann series. Every network accepts
any :math:`H \times W` (the CNNs pad to their multiple and crop back) and any batch size.
``stages(y, op, x0)`` yields the image after each stage; ``forward`` returns the last one.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from ..errors import InputError
from ..linalg import normal_solver
from .drunet import conv3
from .padding import apply_real_network, crop, pad_to_multiple
from .unet import UNet

Tensor = torch.Tensor

__all__ = ["UnrolledPGD", "VarNet", "LearnedADMM", "NeumannNet", "RegCNN"]


class RegCNN(nn.Module):
    r"""Plain CNN :math:`R(x)`: ``depth`` 3x3 convolutions with ReLU between them.

    Maps ``channels`` -> ``channels`` at full resolution; the last convolution starts at zero
    (:math:`R \equiv 0` before training).
    """

    def __init__(self, channels: int, width: int, depth: int) -> None:
        super().__init__()
        if depth < 2:
            raise ValueError("RegCNN needs depth >= 2")
        layers: list[nn.Module] = [conv3(channels, width), nn.ReLU(inplace=True)]
        for _ in range(depth - 2):
            layers += [conv3(width, width), nn.ReLU(inplace=True)]
        last = conv3(width, channels)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        self.net = nn.Sequential(*layers, last)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, channels, H, W)`` -> same shape."""
        return self.net(x)


def _zero_unet(channels: int, width: int, scales: int) -> UNet:
    net = UNet(channels, channels, width=width, scales=scales, residual=False)
    nn.init.zeros_(net.out.weight)
    nn.init.zeros_(net.out.bias)
    return net


class _Unrolled(nn.Module):
    """Shared plumbing: checks, the complex-as-channels CNN call, the step size scale."""

    kind = "unrolled"
    noise_conditional = False
    multiple = 1

    def __init__(self, complex_images: bool, n_stages: int, final_dc: bool = False) -> None:
        super().__init__()
        self.complex_images = bool(complex_images)
        #: end with a data-consistency step (networks trained by SSDU, see
        #: :meth:`_data_consistent`)
        self.final_dc = bool(final_dc)
        self.channels = 2 if self.complex_images else 1
        #: number of stages :math:`K` (images yielded by :meth:`stages`)
        self.n_stages = int(n_stages)

    def _cnn(self, net: nn.Module, x: Tensor) -> Tensor:
        """Apply a real CNN to ``x`` (complex as 2 channels), padded to ``self.multiple``."""
        def run(v: Tensor) -> Tensor:
            vp, size = pad_to_multiple(v, self.multiple)
            return crop(net(vp), size)

        return apply_real_network(run, x)

    def _start(self, y: Tensor, op: Any, x0: Tensor | None) -> tuple[Tensor, float]:
        """:math:`x_0` (default :math:`A^H y`) and :math:`1 / \\|A\\|^2`, checked."""
        x = op.A_adjoint(y) if x0 is None else x0
        if x.is_complex() != self.complex_images:
            have = "complex" if x.is_complex() else "real"
            want = "complex" if self.complex_images else "real"
            raise InputError(f"{type(self).__name__} was built for {want} images but the "
                             f"operator's images are {have}; train a network with "
                             f"complex_images={x.is_complex()} for this operator")
        if x.dim() != 4 or x.shape[1] != 1:
            raise InputError(f"{type(self).__name__} takes (B, 1, H, W) images, got "
                             f"{tuple(x.shape)}")
        n = float(op.norm())
        if not math.isfinite(n) or n <= 0:
            raise InputError(f"operator norm {n} is not positive; check the operator")
        return x, 1.0 / (n * n)

    def _data_consistent(self, x: Tensor, y: Tensor, op: Any, last: bool) -> Tensor:
        r""":math:`x - A^H(Ax - y) / \|A\|^2` after the last stage when :attr:`final_dc`
        (else ``x``): for an operator that measures a mask of samples (inpainting, MRI) the
        measured samples of the output are the data's, so a network trained by measurement
        splitting keeps all the measured samples at inference."""
        if not (last and self.final_dc):
            return x
        n = float(op.norm())
        return x - op.A_adjoint(op.A(x) - y) / (n * n)

    def stages(self, y: Tensor, op: Any, x0: Tensor | None = None) -> Iterator[Tensor]:
        """Yield the image after each of the :attr:`n_stages` stages."""
        raise NotImplementedError

    def forward(self, y: Tensor, op: Any, x0: Tensor | None = None) -> Tensor:
        """The last stage's image."""
        return deque(self.stages(y, op, x0), maxlen=1)[0]


class UnrolledPGD(_Unrolled):
    r"""Unrolled gradient descent with a learned regulariser gradient per stage.

    .. math::

        x_{k+1} = x_k - \eta_k\big(A^H(A x_k - y) + R_k(x_k)\big), \qquad
        \eta_k = e^{s_k} / \|A\|^2, \quad k = 0..K-1,

    from :math:`x_0 = A^H y`; :math:`R_k` is a :class:`RegCNN` (``depth`` convolutions of
    ``width`` channels), one per stage or one shared (``shared=True``).

    Parameters
    ----------
    stages
        Number of stages :math:`K`.
    width, depth
        CNN feature channels and number of convolutions.
    complex_images
        Images are complex (fed as 2 channels).
    shared
        One CNN for every stage (fewer parameters).
    final_dc
        End with the data-consistency step of :meth:`_Unrolled._data_consistent` (networks
        trained from measurements alone, SSDU).
    """

    def __init__(self, stages: int = 8, width: int = 32, depth: int = 4,
                 complex_images: bool = False, shared: bool = False,
                 final_dc: bool = False) -> None:
        super().__init__(complex_images, stages, final_dc)
        if stages < 1:
            raise ValueError("UnrolledPGD needs stages >= 1")
        self.config = {"stages": stages, "width": width, "depth": depth,
                       "complex_images": bool(complex_images), "shared": bool(shared)}
        if final_dc:
            self.config["final_dc"] = True
        n_nets = 1 if shared else stages
        self.nets = nn.ModuleList(RegCNN(self.channels, width, depth) for _ in range(n_nets))
        self.log_steps = nn.Parameter(torch.zeros(stages))

    def stages(self, y: Tensor, op: Any, x0: Tensor | None = None) -> Iterator[Tensor]:
        """Yield :math:`x_1, \\dots, x_K`."""
        x, inv_l = self._start(y, op, x0)
        for k in range(self.n_stages):
            net = self.nets[0 if len(self.nets) == 1 else k]
            eta = torch.exp(self.log_steps[k]) * inv_l
            x = x - eta * (op.A_adjoint(op.A(x) - y) + self._cnn(net, x))
            yield self._data_consistent(x, y, op, k == self.n_stages - 1)


class VarNet(_Unrolled):
    r"""Variational network, image-domain form (Hammernik et al. 2018; Sriram et al. 2020).

    .. math::

        x_{k+1} = x_k - \eta_k A^H(A x_k - y) - U_k(x_k), \qquad
        \eta_k = e^{s_k} / \|A\|^2,

    from :math:`x_0 = A^H y`; :math:`U_k` is a small U-Net (``scales`` scales, ``width``
    channels at the finest) per cascade. For multi-coil MRI the SENSE operator's
    :math:`A` / :math:`A^H` expand to and reduce over the coils.

    Parameters
    ----------
    cascades
        Number of cascades :math:`K`.
    width, scales
        U-Net width and number of scales.
    complex_images
        Images are complex (MRI; fed as 2 channels).
    final_dc
        End with the data-consistency step of :meth:`_Unrolled._data_consistent` (networks
        trained from measurements alone, SSDU).
    """

    def __init__(self, cascades: int = 6, width: int = 16, scales: int = 3,
                 complex_images: bool = True, final_dc: bool = False) -> None:
        super().__init__(complex_images, cascades, final_dc)
        if cascades < 1 or scales < 1:
            raise ValueError("VarNet needs cascades >= 1 and scales >= 1")
        self.config = {"cascades": cascades, "width": width, "scales": scales,
                       "complex_images": bool(complex_images)}
        if final_dc:
            self.config["final_dc"] = True
        self.multiple = 2 ** (scales - 1)
        self.nets = nn.ModuleList(_zero_unet(self.channels, width, scales)
                                  for _ in range(cascades))
        self.log_steps = nn.Parameter(torch.zeros(cascades))

    def stages(self, y: Tensor, op: Any, x0: Tensor | None = None) -> Iterator[Tensor]:
        """Yield :math:`x_1, \\dots, x_K`."""
        return self._cascades(y, op, x0)

    def _cascades(self, y: Tensor, op: Any, x0: Tensor | None) -> Iterator[Tensor]:
        """The cascades :math:`x - \\eta_k A^H(Ax - y) - U_k(x)` over ``self.nets`` (shared
        with the hybrid :class:`~.humus.HumusNet`)."""
        x, inv_l = self._start(y, op, x0)
        for k, net in enumerate(self.nets):
            eta = torch.exp(self.log_steps[k]) * inv_l
            x = x - eta * op.A_adjoint(op.A(x) - y) - self._cnn(net, x)
            yield self._data_consistent(x, y, op, k == self.n_stages - 1)


class LearnedADMM(_Unrolled):
    r"""Unrolled ADMM with a learned penalty, dual step and proximal CNN per stage.

    ADMM for :math:`\min_x \tfrac12\|Ax - y\|^2 + g(z)` s.t. :math:`x = z`, with the
    proximal map of :math:`g` replaced by a residual CNN and every constant learned per stage
    :math:`k = 0..K-1`:

    .. math::

        x_{k+1} &= (A^H A + \rho_k I)^{-1}\big(A^H y + \rho_k (z_k - u_k)\big), \\
        z_{k+1} &= v - R_k(v), \quad v = x_{k+1} + u_k, \\
        u_{k+1} &= u_k + \eta_k\,(x_{k+1} - z_{k+1}),

    with :math:`\rho_k = e^{r_k}\,\|A\|^2` and :math:`\eta_k = e^{e_k}`, from :math:`u_0 = 0`
    and the Tikhonov image :math:`z_0 = (A^H A + 0.01\|A\|^2 I)^{-1} A^H y` (``start_iters``
    CG iterations, not differentiated: a fixed, cheap data-consistent start that spares the
    stages the slow directions of an ill-conditioned operator). The data step is exact where
    the operator has a closed form (``solve_normal``, or :math:`A^H A` a projection) and
    ``cg_iters``
    conjugate-gradient iterations warm-started at :math:`z_k - u_k` otherwise (a lensless
    camera's crop), differentiated through. The CNNs' last layers start at zero, so an
    untrained network is ADMM with no prior (least squares with a shrinking proximal term);
    :math:`\rho` starts at :math:`0.1\|A\|^2`. Stage :math:`k` yields :math:`z_{k+1}`.

    Parameters
    ----------
    stages
        Number of stages :math:`K`.
    width, depth
        CNN feature channels and number of convolutions.
    cg_iters
        CG iterations of the data step when it has no closed form.
    start_iters
        CG iterations of the Tikhonov start (when it has no closed form).
    complex_images
        Images are complex (fed as 2 channels).
    """

    def __init__(self, stages: int = 8, width: int = 32, depth: int = 4, cg_iters: int = 6,
                 start_iters: int = 30, complex_images: bool = False) -> None:
        super().__init__(complex_images, stages)
        if stages < 1 or cg_iters < 1 or start_iters < 1:
            raise ValueError("LearnedADMM needs stages, cg_iters and start_iters >= 1")
        self.config = {"stages": stages, "width": width, "depth": depth,
                       "cg_iters": cg_iters, "start_iters": start_iters,
                       "complex_images": bool(complex_images)}
        self.cg_iters, self.start_iters = int(cg_iters), int(start_iters)
        self.nets = nn.ModuleList(RegCNN(self.channels, width, depth) for _ in range(stages))
        self.log_rho = nn.Parameter(torch.full((stages,), math.log(0.1)))
        self.log_eta = nn.Parameter(torch.zeros(stages))

    def stages(self, y: Tensor, op: Any, x0: Tensor | None = None) -> Iterator[Tensor]:
        r"""Yield :math:`z_1, \dots, z_K`."""
        z, inv_l = self._start(y, op, x0)  # A^H y unless x0 is given
        aty = z if x0 is None else op.A_adjoint(y)
        if x0 is None:
            with torch.no_grad():
                rho0 = 0.01 / inv_l
                z = normal_solver(op, aty, self.start_iters)(aty, rho0, z * inv_l)
        solve = normal_solver(op, aty, self.cg_iters)
        u = torch.zeros_like(z)
        for k, net in enumerate(self.nets):
            rho = torch.exp(self.log_rho[k]) / inv_l
            w = z - u
            x = solve(aty + rho * w, rho, w)
            v = x + u
            z = v - self._cnn(net, v)
            u = u + torch.exp(self.log_eta[k]) * (x - z)
            yield z


class NeumannNet(_Unrolled):
    r"""Neumann network (Gilton, Ongie, Willett, IEEE TCI 2019).

    With :math:`\eta = e^{s} / \|A\|^2` and one CNN :math:`R` shared by all terms,

    .. math::

        x^{(0)} = \eta A^H y, \qquad
        x^{(j+1)} = x^{(j)} - \eta A^H A x^{(j)} - R(x^{(j)}), \qquad
        \hat x = \sum_{j=0}^{T-1} x^{(j)},

    a truncated Neumann series :math:`\sum_j (I - \eta A^H A - R)^j \eta A^H y`; with
    :math:`R = 0` it tends to the minimum-norm solution :math:`A^+ y`. Stage :math:`j` yields
    the partial sum :math:`\sum_{i < j} x^{(i)}` (:math:`T` = ``terms`` stages; ``x0``
    replaces :math:`A^H y`).

    Parameters
    ----------
    terms
        Number of terms :math:`T`.
    width, depth
        CNN feature channels and number of convolutions.
    complex_images
        Images are complex (fed as 2 channels).
    """

    def __init__(self, terms: int = 6, width: int = 32, depth: int = 4,
                 complex_images: bool = False) -> None:
        super().__init__(complex_images, terms)
        if terms < 1:
            raise ValueError("NeumannNet needs terms >= 1")
        self.config = {"terms": terms, "width": width, "depth": depth,
                       "complex_images": bool(complex_images)}
        self.net = RegCNN(self.channels, width, depth)
        self.log_step = nn.Parameter(torch.zeros(()))

    def stages(self, y: Tensor, op: Any, x0: Tensor | None = None) -> Iterator[Tensor]:
        """Yield the partial sums :math:`\\sum_{i<j} x^{(i)}`, :math:`j = 1..T`."""
        b, inv_l = self._start(y, op, x0)
        eta = torch.exp(self.log_step) * inv_l
        term = eta * b
        total = term
        yield total
        for _ in range(self.n_stages - 1):
            term = term - eta * op.AtA(term) - self._cnn(self.net, term)
            total = total + term
            yield total
