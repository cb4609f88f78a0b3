"""Learning from measurements only (SSDU): the sample split, the final data-consistency step,
refusals, and a network trained without ground truth that fills in missing samples."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from napari_invrec.core.errors import InputError
from napari_invrec.core.models.unrolled import UnrolledPGD, VarNet
from napari_invrec.core.operators.noise import NoiseParams
from napari_invrec.core.operators.registry import make_operator
from napari_invrec.core.training.datasets import SyntheticPatches, make_source
from napari_invrec.core.training.operator_nets import split_samples, train_unrolled


def test_split_is_a_subset_with_the_requested_fraction():
    g = torch.Generator().manual_seed(0)
    mask = (torch.rand(8, 1, 64, 64, generator=g) < 0.5).float()
    lam = split_samples(mask, 0.4, torch.Generator().manual_seed(1))
    assert torch.all(lam <= mask) and set(torch.unique(lam).tolist()) <= {0.0, 1.0}
    n = float(mask.sum())
    # Binomial(n, 0.4): within 5 standard deviations
    assert abs(float(lam.sum()) - 0.4 * n) < 5 * (n * 0.24) ** 0.5
    cols = split_samples(mask[:, :, :1].expand(8, 1, 64, 64), 0.4, g, columns=True)
    assert torch.all(cols == cols[:, :, :1])  # whole columns


@pytest.mark.parametrize("opname, kw, net", [
    ("inpaint", {"keep": 0.5}, lambda: UnrolledPGD(2, 4, 2, final_dc=True)),
    ("mri", {"acceleration": 4.0}, lambda: VarNet(2, 4, 2, final_dc=True)),
])
def test_final_data_consistency_keeps_every_measured_sample(opname, kw, net):
    op = make_operator(opname, (32, 32), **kw)
    torch.manual_seed(0)
    model = net()
    for p in model.parameters():  # a network that changes the image (non-zero CNNs)
        torch.nn.init.normal_(p, std=0.1)
    x = op.as_image(SyntheticPatches("phantoms").patches(2, 32, seed=3))
    y = op.measure(x, NoiseParams(model="gaussian", sigma=0.01), torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = model(y, op)
    scale = float(y.abs().max())
    assert float((op.A(out) - y).abs().max()) < 1e-5 * scale  # float32 rounding of a FFT


def test_ssdu_refuses_what_it_cannot_split():
    src = make_source("phantoms")
    with pytest.raises(InputError, match="mask of samples"):
        train_unrolled(UnrolledPGD(2, 4, 2, final_dc=True), src,
                       lambda s, d: make_operator("blur", s, device=d), supervision="ssdu",
                       steps=1, patch=32)
    with pytest.raises(InputError, match="final_dc=True"):
        train_unrolled(UnrolledPGD(2, 4, 2), src,
                       lambda s, d: make_operator("inpaint", s, device=d), supervision="ssdu",
                       steps=1, patch=32)
    with pytest.raises(InputError, match="supervision"):
        train_unrolled(UnrolledPGD(2, 4, 2), src,
                       lambda s, d: make_operator("inpaint", s, device=d), supervision="gt",
                       steps=1, patch=32)


def _psnr(model, op, seed: int) -> float:
    x = op.as_image(SyntheticPatches("phantoms").patches(8, 32, seed=seed))
    y = op.measure(x, NoiseParams(model="gaussian", sigma=0.01),
                   torch.Generator().manual_seed(seed))
    with torch.no_grad():
        mse = float((model(y, op) - x).abs().square().mean())
    return 10 * np.log10(1 / mse)


def test_ssdu_learns_to_fill_in_without_ground_truth():
    """Inpainting, 200 steps, 32 px phantoms: the untrained network (zero CNNs, Landweber
    steps, the measured pixels only) gains over 5 dB by SSDU (measured 10.5-11.8 dB with
    torch seeds 0-2),
    though its loss only ever compares predictions with measured pixels."""
    def factory(shape, dev):
        return make_operator("inpaint", shape, device=dev, keep=0.5)

    torch.manual_seed(0)
    model = UnrolledPGD(4, 8, 3, final_dc=True)
    untrained = copy.deepcopy(model)
    list(train_unrolled(model, make_source("phantoms"), factory, supervision="ssdu",
                        noise_sigma=0.01, steps=200, batch=4, patch=32, lr=3e-3,
                        val_every=200, val_size=4))
    op = factory((32, 32), torch.device("cpu"))
    before, after = _psnr(untrained, op, 7), _psnr(model.eval(), op, 7)
    assert after > before + 5.0, (before, after)


def test_engine_trains_by_ssdu_and_records_it(tmp_path):
    from napari_invrec.engine.training import TrainSpec, run_training

    spec = TrainSpec(task="unrolled", supervision="ssdu", arch="unrolled-pgd",
                     arch_kwargs={"stages": 2, "width": 4, "depth": 2}, operator="inpaint",
                     op_params={"keep": 0.5}, data="phantoms", steps=3, batch=2, patch=32,
                     val_every=3, name="t-ssdu", out=str(tmp_path / "t.pt"), register=False)
    gen = run_training(spec)
    try:
        while True:
            next(gen)
    except StopIteration as stop:
        entry = stop.value
    assert entry.kwargs.get("final_dc") is True and entry.training == "ssdu"
    assert "--supervision ssdu" in entry.train_command
    with pytest.raises(InputError, match="trains unrolled networks"):
        run_training(TrainSpec(task="denoiser", supervision="ssdu", steps=1, register=False,
                               out=str(tmp_path / "d.pt")))
