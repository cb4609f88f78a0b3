"""The SwinIR-style transformer and the conditional GAN of the end-to-end family: an
untrained SwinIR is the identity, the GAN's loss sends each network only its own gradient,
the patch discriminator scores each sample on its own, and the shipped GAN invents more
null-space content than the U-Net trained on the same data."""

from __future__ import annotations

import pytest
import torch

from napari_invrec.core.errors import InputError
from napari_invrec.core.models import ARCHITECTURES, check_architecture_kwargs
from napari_invrec.core.models.cgan import ConditionalGAN, PatchDiscriminator
from napari_invrec.core.models.swinir import SwinIR
from napari_invrec.core.training.adversarial import cgan_loss, is_adversarial

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("shape", [(37, 53), (16, 16)])
def test_untrained_swinir_is_the_identity_on_any_size(shape):
    """The output convolution starts at zero: x_hat = x exactly, whatever the padding to
    the window multiple did inside."""
    torch.manual_seed(0)
    net = SwinIR(width=8, groups=1, depth=2, heads=2, window=4).eval()
    x = torch.rand(2, 1, *shape)
    with torch.no_grad():
        assert torch.equal(net(x), x)
        torch.nn.init.normal_(net.out.weight, std=0.1)
        out = net(x)
    assert out.shape == x.shape and not torch.equal(out, x)


def test_swinir_and_cgan_are_architectures_with_checked_kwargs():
    assert ARCHITECTURES["swinir"] is SwinIR and ARCHITECTURES["cgan"] is ConditionalGAN
    check_architecture_kwargs("swinir", {"width": 16, "heads": 4})
    with pytest.raises(InputError, match="do not build"):
        check_architecture_kwargs("swinir", {"width": 18, "heads": 4})
    with pytest.raises(InputError, match="do not build"):
        check_architecture_kwargs("cgan", {"adversarial": 0.0})


def test_patch_discriminator_scores_each_sample_on_its_own():
    """No normalisation couples the batch: a sample's scores do not depend on the others."""
    torch.manual_seed(1)
    d = PatchDiscriminator(1, width=8, layers=3)
    x0, x = torch.rand(3, 1, 32, 48), torch.rand(3, 1, 32, 48)
    with torch.no_grad():
        both = d(x0, x)
        one = d(x0[1:2], x[1:2])
    assert both.shape == (3, 1, 4, 6)
    torch.testing.assert_close(both[1:2], one, rtol=1e-5, atol=1e-6)


def test_cgan_loss_gives_each_network_only_its_own_gradient():
    r"""One backward of L_G + L_D: the generator's gradient equals that of L_G alone and the
    discriminator's that of L_D alone (the discriminator does not learn to be fooled, the
    generator not to help the discriminator)."""
    torch.manual_seed(2)
    model = ConditionalGAN(width=4, scales=2, disc_width=4, disc_layers=2, adversarial=0.5)
    assert is_adversarial(model) and not is_adversarial(SwinIR(width=4, heads=1))
    x0, x = torch.rand(2, 1, 16, 16), torch.rand(2, 1, 16, 16)
    g, d = model.generator, model.discriminator

    def grads(module):
        return [p.grad.clone() for p in module.parameters()]

    model.zero_grad()
    cgan_loss(model, x0, x).backward()
    g_both, d_both = grads(g), grads(d)

    model.zero_grad()
    fake = g(x0)
    loss_g = (fake - x).square().mean() + 0.5 * (d(x0, fake) - 1).square().mean()
    loss_g.backward()
    g_only = grads(g)
    model.zero_grad()
    fake = g(x0).detach()
    (0.5 * ((d(x0, x) - 1).square().mean() + d(x0, fake).square().mean())).backward()
    d_only = grads(d)
    for a, b in zip(g_both + d_both, g_only + d_only):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)
    assert any(float(t.abs().max()) > 0 for t in g_both + d_both)


def test_cgan_runs_its_generator_only():
    torch.manual_seed(3)
    model = ConditionalGAN(width=4, scales=2, disc_width=4, disc_layers=2).eval()
    x0 = torch.rand(1, 1, 20, 28)
    with torch.no_grad():
        assert torch.equal(model(x0), model.generator(x0))
