r"""HUMUS-Net-style hybrid unrolled network for MRI (Fabian, Tinaz & Soltanolkotabi, NeurIPS
2022), small and CPU-sized.

The cascades are those of :class:`~.unrolled.VarNet` (k-space data consistency through
:math:`A^H(Ax - y)` with a learned step, then a learned correction),

.. math::

    x_{k+1} = x_k - \eta_k A^H(A x_k - y) - D_k(x_k),

but each correction :math:`D_k` is a hybrid multi-scale denoiser (:class:`HybridUNet`):
convolutions at the fine scales, where local detail lives, and shifted-window self-attention
(Swin blocks, Liu et al. 2021) at the coarsest scale, where a window of
:math:`w \times w` tokens spans a large part of the image and attention can relate distant
structures. Each Swin block is

.. math::

    h \leftarrow h + \mathrm{MSA}_{W}(\mathrm{LN}(h)), \qquad
    h \leftarrow h + \mathrm{MLP}(\mathrm{LN}(h)),

with multi-head self-attention inside non-overlapping :math:`w \times w` windows, the windows
of every second block shifted by :math:`w/2` (cyclically, with the attention mask that keeps
tokens from opposite borders apart), so that information crosses window borders. As in
:mod:`.unrolled`, the output convolution of each denoiser starts at zero (an untrained
network is Landweber), complex images are two real channels, and any :math:`H \times W` is
padded to a multiple of the denoiser's size and cropped back.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch import nn
from torch.nn import functional as nnf

from .drunet import conv3
from .padding import crop, pad_to_multiple
from .unet import _double_conv
from .unrolled import VarNet, _Unrolled

Tensor = torch.Tensor

__all__ = ["SwinBlock", "HybridUNet", "HumusNet"]


def _windows(h: Tensor, w: int) -> Tensor:
    """``(B, H, W, C)`` -> ``(B * nH * nW, w * w, C)`` (``H``, ``W`` multiples of ``w``)."""
    b, hh, ww, c = h.shape
    h = h.view(b, hh // w, w, ww // w, w, c).permute(0, 1, 3, 2, 4, 5)
    return h.reshape(-1, w * w, c)


def _unwindows(t: Tensor, w: int, b: int, hh: int, ww: int) -> Tensor:
    """Inverse of :func:`_windows`."""
    c = t.shape[-1]
    t = t.view(b, hh // w, ww // w, w, w, c).permute(0, 1, 3, 2, 4, 5)
    return t.reshape(b, hh, ww, c)


def _shift_mask(hh: int, ww: int, w: int, s: int, device: Any) -> Tensor:
    """Additive attention mask ``(nW, w*w, w*w)`` for windows shifted by ``s``: tokens that
    the cyclic shift brought from different image regions do not attend to each other."""
    region = torch.zeros(hh, ww, device=device)
    cuts = (slice(0, -w), slice(-w, -s), slice(-s, None))
    k = 0
    for ys in cuts:
        for xs in cuts:
            region[ys, xs] = k
            k += 1
    r = _windows(region[None, :, :, None], w)[..., 0]  # (nW, w*w)
    same = r[:, :, None] == r[:, None, :]
    return torch.zeros(same.shape, device=device).masked_fill(~same, float("-inf"))


class SwinBlock(nn.Module):
    """One Swin transformer block on ``(B, C, H, W)`` (``H``, ``W`` multiples of ``window``).

    Parameters
    ----------
    dim
        Channels (tokens' dimension).
    heads
        Attention heads (``dim`` must divide by it).
    window
        Window side :math:`w`.
    shift
        Shift the windows by ``window // 2`` (every second block).
    mlp_ratio
        Hidden width of the MLP relative to ``dim``.
    """

    def __init__(self, dim: int, heads: int, window: int, shift: bool,
                 mlp_ratio: float = 2.0) -> None:
        super().__init__()
        self.window, self.shift = int(window), bool(shift)
        self.norm1 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm2 = nn.LayerNorm(dim)
        hidden = max(1, int(round(dim * mlp_ratio)))
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def _attend(self, t: Tensor, mask: Tensor | None) -> Tensor:
        """Multi-head self-attention within each window of ``t`` ``(B * nW, L, C)`` with
        the weights of :attr:`attn`; ``mask`` ``(nW, L, L)`` (additive) is shared by the
        batch, broadcast rather than copied per image and head."""
        a = self.attn
        n, length, c = t.shape
        heads = a.num_heads
        q, k, v = nnf.linear(t, a.in_proj_weight, a.in_proj_bias).chunk(3, dim=-1)
        if mask is None:
            shape, m = (n, length, heads, c // heads), None
        else:
            shape, m = (n // mask.shape[0], mask.shape[0], length, heads, c // heads), \
                mask[None, :, None]
        q, k, v = (u.reshape(shape).transpose(-3, -2) for u in (q, k, v))
        o = nnf.scaled_dot_product_attention(q, k, v, attn_mask=m)
        return a.out_proj(o.transpose(-3, -2).reshape(n, length, c))

    def forward(self, x: Tensor) -> Tensor:
        """``(B, C, H, W)`` -> same shape."""
        b, c, hh, ww = x.shape
        w = self.window
        s = w // 2 if self.shift and min(hh, ww) > w else 0
        h = x.permute(0, 2, 3, 1)
        z = self.norm1(h)
        if s:
            z = torch.roll(z, (-s, -s), (1, 2))
        t = self._attend(_windows(z, w), _shift_mask(hh, ww, w, s, x.device) if s else None)
        z = _unwindows(t, w, b, hh, ww)
        if s:
            z = torch.roll(z, (s, s), (1, 2))
        h = h + z
        h = h + self.mlp(self.norm2(h))
        return h.permute(0, 3, 1, 2)


class HybridUNet(nn.Module):
    """A U-Net whose coarsest scale is ``blocks`` Swin blocks (alternately shifted) after one
    convolution; ``forward(x)`` maps ``channels`` -> ``channels``, the output convolution
    starting at zero.

    Parameters
    ----------
    channels
        Input and output channels.
    width
        Channels at the finest scale, doubled per coarser scale.
    scales
        Number of scales (>= 2: attention runs at the coarsest).
    blocks, heads, window
        Swin blocks at the coarsest scale, their heads and window side.
    """

    def __init__(self, channels: int, width: int, scales: int, blocks: int, heads: int,
                 window: int) -> None:
        super().__init__()
        if scales < 2 or blocks < 1 or window < 2:
            raise ValueError("HybridUNet needs scales >= 2, blocks >= 1 and window >= 2")
        ch = [width * 2 ** i for i in range(scales)]
        if ch[-1] % heads:
            raise ValueError(f"the coarsest width {ch[-1]} must divide by heads={heads}")
        self.multiple = 2 ** (scales - 1) * window
        self.enc = nn.ModuleList(_double_conv(channels if i == 0 else ch[i - 1], ch[i])
                                 for i in range(scales - 1))
        self.pool = nn.MaxPool2d(2)
        self.bottom = nn.Sequential(conv3(ch[-2], ch[-1]), nn.ReLU(inplace=True),
                                    *(SwinBlock(ch[-1], heads, window, shift=i % 2 == 1)
                                      for i in range(blocks)))
        self.up = nn.ModuleList(nn.ConvTranspose2d(ch[i + 1], ch[i], 2, stride=2)
                                for i in range(scales - 1))
        self.dec = nn.ModuleList(_double_conv(2 * ch[i], ch[i]) for i in range(scales - 1))
        self.out = nn.Conv2d(ch[0], channels, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, channels, H, W)`` -> same shape (padded to :attr:`multiple` inside)."""
        xp, size = pad_to_multiple(x, self.multiple)
        h, skips = xp, []
        for i, enc in enumerate(self.enc):
            h = enc(h if i == 0 else self.pool(h))
            skips.append(h)
        h = self.bottom(self.pool(h))
        for i in reversed(range(len(self.up))):
            h = self.dec[i](torch.cat([self.up[i](h), skips[i]], dim=1))
        return crop(self.out(h), size)


class HumusNet(_Unrolled):
    r"""Hybrid unrolled MRI network: VarNet cascades with :class:`HybridUNet` denoisers.

    .. math::

        x_{k+1} = x_k - \eta_k A^H(A x_k - y) - D_k(x_k), \qquad
        \eta_k = e^{s_k} / \|A\|^2,

    from :math:`x_0 = A^H y`. Single- and multi-coil (the SENSE operator's :math:`A`,
    :math:`A^H` expand to and reduce over the coils).

    Parameters
    ----------
    cascades
        Number of cascades :math:`K`.
    width, scales
        Denoiser width at the finest scale and number of scales.
    blocks, heads, window
        Swin blocks at the coarsest scale, attention heads, window side.
    complex_images
        Images are complex (MRI; fed as 2 channels).
    final_dc
        End with a data-consistency step (networks trained from measurements alone).
    """

    def __init__(self, cascades: int = 6, width: int = 14, scales: int = 3, blocks: int = 2,
                 heads: int = 4, window: int = 8, complex_images: bool = True,
                 final_dc: bool = False) -> None:
        super().__init__(complex_images, cascades, final_dc)
        if cascades < 1:
            raise ValueError("HumusNet needs cascades >= 1")
        self.config = {"cascades": cascades, "width": width, "scales": scales,
                       "blocks": blocks, "heads": heads, "window": window,
                       "complex_images": bool(complex_images)}
        if final_dc:
            self.config["final_dc"] = True
        self.nets = nn.ModuleList(HybridUNet(self.channels, width, scales, blocks, heads,
                                             window) for _ in range(cascades))
        self.multiple = 1  # each HybridUNet pads itself
        self.log_steps = nn.Parameter(torch.zeros(cascades))

    def stages(self, y: Tensor, op: Any, x0: Tensor | None = None) -> Iterator[Tensor]:
        """Yield :math:`x_1, \\dots, x_K`."""
        return VarNet._cascades(self, y, op, x0)
