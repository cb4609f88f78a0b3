"""HUMUS-Net-style hybrid network: the shifted-window attention's mask, the parameter budget
against VarNet, and an untrained network being plain gradient descent."""

from __future__ import annotations

import pytest
import torch

from napari_invrec.core.models.humus import HumusNet, SwinBlock
from napari_invrec.core.models.unrolled import VarNet
from napari_invrec.core.operators.registry import make_operator


def _count(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize("shift", [False, True])
def test_window_attention_stays_inside_its_window(shift):
    """A token changes only the outputs of its own window: with 8x8 windows on a 16x16
    map a change at the top-left corner leaves the bottom-right window alone, also after the
    cyclic shift, which would put both corners in one window without its mask."""
    torch.manual_seed(0)
    block = SwinBlock(8, 2, 8, shift=shift).eval()
    x = torch.randn(1, 8, 16, 16)
    x2 = x.clone()
    x2[..., 0, 0] += 1.0
    with torch.no_grad():
        d = (block(x2) - block(x)).abs().sum(1)[0]
    assert float(d[0, 0]) > 0
    # the unshifted window of (0, 0) is rows/cols 0..7; shifted by 4, the corner token sits
    # (cyclically) with the far corner rows/cols 12..15 in one window, separated by the mask
    far = d[12:, 12:] if shift else d[8:, 8:]
    assert float(far.max()) == 0.0
    near = d[:4, :4] if shift else d[:8, :8]
    assert float(near.max()) > 0  # (and within its window it does act)


def test_same_parameter_budget_as_the_varnet_it_is_compared_with():
    """The defaults of the benchmark: within 5 % of VarNet(6 cascades, width 16, 3 scales)."""
    h, v = _count(HumusNet()), _count(VarNet(6, 16, 3))
    assert abs(h - v) / v < 0.05, (h, v)


@pytest.mark.parametrize("coils", [0, 4])
def test_untrained_network_is_landweber_on_any_size(coils):
    """The denoisers' output convolutions start at zero: each cascade is a gradient step
    x - eta A^H(Ax - y) with eta = 1 / ||A||^2, single- and multi-coil, any H x W."""
    shape = (36, 44)
    if coils:
        op = make_operator("mri-multicoil", shape, n_coils=coils, acceleration=4.0)
    else:
        op = make_operator("mri", shape, acceleration=4.0)
    x = torch.rand(2, 1, *shape).to(torch.complex64)
    y = op.A(x)
    net = HumusNet(cascades=2, width=4, scales=2, blocks=2, heads=2, window=4)
    with torch.no_grad():
        out = net(y, op)
        ref = op.A_adjoint(y)
        inv = 1.0 / float(op.norm()) ** 2
        for _ in range(2):
            ref = ref - inv * op.A_adjoint(op.A(ref) - y)
    assert out.shape == x.shape
    assert float((out - ref).abs().max()) < 1e-5 * float(ref.abs().max())
