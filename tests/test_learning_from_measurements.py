"""Learning from measurements only (SSDU and equivariant imaging): the sample split, the
transforms, the final data-consistency step, refusals, and networks trained without ground
truth (on simulated measurements and on a stack of measurements) that fill in missing
samples."""

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
from napari_invrec.core.training.operator_nets import (
    random_transform,
    split_samples,
    ssdu_loss,
    train_from_measurements,
    train_unrolled,
)


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
    keep = torch.zeros(64, dtype=torch.bool)
    keep[30:35] = True  # e.g. the k-space centre: always in the network's input
    kept = split_samples(torch.ones(8, 1, 64, 64), 0.9, g, columns=True, keep=keep)
    assert torch.all(kept[..., 30:35] == 0) and float(kept.sum()) > 0


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


def test_multi_mask_ssdu_is_the_loss_of_the_repeated_batch_with_independent_splits():
    """``masks=K`` scores each measurement on K independent splits: exactly the one-split
    loss of the batch repeated K times (same generator state), and not K copies of one split."""
    op = make_operator("mri", (32, 32), acceleration=4.0)
    torch.manual_seed(0)
    model = VarNet(2, 4, 2, final_dc=True)
    for p in model.parameters():  # a network that predicts something (not the zero update)
        torch.nn.init.normal_(p, std=0.1)
    x = op.as_image(SyntheticPatches("phantoms").patches(3, 32, seed=3))
    y = op.measure(x, NoiseParams(model="gaussian", sigma=0.01), torch.Generator().manual_seed(0))
    with torch.no_grad():
        two = ssdu_loss(model, y, op, 0.4, torch.Generator().manual_seed(5), masks=2)
        rep = ssdu_loss(model, torch.cat([y, y]), op, 0.4, torch.Generator().manual_seed(5))
        one = ssdu_loss(model, y, op, 0.4, torch.Generator().manual_seed(5))
    assert float(two) == float(rep)
    assert abs(float(two) - float(one)) > 1e-4 * float(one)  # the second split differs
    src = make_source("phantoms")
    with pytest.raises(InputError, match="masks"):
        train_unrolled(VarNet(2, 4, 2, final_dc=True), src,
                       lambda s, d: make_operator("mri", s, device=d), supervision="ssdu",
                       masks=0, steps=1, patch=32)


def test_ssdu_splits_single_samples_or_whole_columns():
    """MRI: ``lines=True`` holds out whole k-space columns (the loss set is constant along
    each column), ``lines=False`` single samples (columns partly held out), and both only
    within the measured mask, never the fully sampled centre columns; the loss differs."""
    from napari_invrec.core.operators.mri import centre_columns
    from napari_invrec.core.training.operator_nets import split_samples

    op = make_operator("mri", (32, 32), acceleration=2.0)
    m = op.mask_tensor().expand(4, 1, 32, 32)
    keep = torch.zeros(32, dtype=torch.bool)
    keep[centre_columns(32, op.params.center_fraction)] = True
    for columns in (True, False):
        lam = split_samples(m, 0.4, torch.Generator().manual_seed(1), columns=columns,
                            keep=keep)
        assert bool((lam <= m).all()) and float(lam[..., keep].abs().sum()) == 0.0
        measured = m[0, 0].bool() & ~keep
        per_col = lam[:, 0][:, :, measured.any(0)]
        varies = bool((per_col.amax(1) != per_col.amin(1)).any())
        assert varies != columns
    torch.manual_seed(0)
    model = VarNet(2, 4, 2, final_dc=True)
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.1)
    x = op.as_image(SyntheticPatches("phantoms").patches(2, 32, seed=3))
    y = op.measure(x, NoiseParams(model="gaussian", sigma=0.01), torch.Generator().manual_seed(0))
    with torch.no_grad():
        lines = ssdu_loss(model, y, op, 0.4, torch.Generator().manual_seed(5))
        points = ssdu_loss(model, y, op, 0.4, torch.Generator().manual_seed(5), lines=False)
    assert abs(float(lines) - float(points)) > 1e-4 * float(lines)


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


def test_transforms_are_rotations_and_shifts():
    x = torch.arange(2 * 6 * 6, dtype=torch.float32).reshape(2, 1, 6, 6)
    t = random_transform(x, torch.Generator().manual_seed(0))
    again = random_transform(x, torch.Generator().manual_seed(0))
    assert torch.equal(t, again)  # drawn from the generator only
    for xb, tb in zip(x, t, strict=True):  # one of the 4 x 36 rotations and shifts of xb
        assert any(torch.equal(torch.roll(torch.rot90(xb, k, (-2, -1)), (i, j), (-2, -1)), tb)
                   for k in range(4) for i in range(6) for j in range(6))
    wide = random_transform(torch.rand(3, 1, 4, 6), torch.Generator().manual_seed(1))
    assert wide.shape == (3, 1, 4, 6)  # a non-square image keeps its shape (0 or 180 degrees)


@pytest.mark.parametrize("supervision", ["ssdu", "ei"])
def test_learns_to_fill_in_without_ground_truth(supervision):
    """Inpainting, 200 steps, 32 px phantoms: the untrained network (zero CNNs, Landweber
    steps, the measured pixels only: 10.3 dB) gains over 5 dB (gains measured with torch seeds
    0-2: SSDU 10.6-11.0 dB, EI 12.1-12.5 dB), though its loss never sees an image: SSDU compares
    predictions with held-out measured pixels, EI asks for consistency and equivariance."""
    def factory(shape, dev):
        return make_operator("inpaint", shape, device=dev, keep=0.5)

    torch.manual_seed(0)
    model = UnrolledPGD(4, 8, 3, final_dc=supervision == "ssdu")
    untrained = copy.deepcopy(model)
    list(train_unrolled(model, make_source("phantoms"), factory, supervision=supervision,
                        noise_sigma=0.01, steps=200, batch=4, patch=32, lr=3e-3,
                        val_every=200, val_size=4))
    op = factory((32, 32), torch.device("cpu"))
    before, after = _psnr(untrained, op, 7), _psnr(model.eval(), op, 7)
    assert after > before + 5.0, (before, after)


@pytest.mark.parametrize("supervision", ["ssdu", "ei"])
def test_learns_from_a_stack_of_measurements_through_one_mask(supervision):
    """16 measurements through one fixed inpainting mask, no image anywhere: 200 steps gain
    over 5 dB on other images through that mask (gains measured, torch seeds 0-2: SSDU
    10.8-12.3, EI 12.6-13.1 dB); the validation loss is reported without a PSNR."""
    op = make_operator("inpaint", (32, 32), keep=0.5, seed=3)
    x = op.as_image(SyntheticPatches("phantoms").patches(16, 32, seed=100))
    y = op.measure(x, NoiseParams(model="gaussian", sigma=0.01),
                   torch.Generator().manual_seed(1))[:, 0]
    y_before = y.clone()
    torch.manual_seed(0)
    model = UnrolledPGD(4, 8, 3, final_dc=supervision == "ssdu")
    untrained = copy.deepcopy(model)
    states = list(train_from_measurements(model, y, op, supervision=supervision, steps=200,
                                          batch=4, lr=3e-3, val_every=100))
    assert torch.equal(y, y_before)  # the data are only read
    assert states[-1].val_psnr is None and np.isfinite(states[-1].extras["val_loss"])
    before, after = _psnr(untrained, op, 7), _psnr(model.eval(), op, 7)
    assert after > before + 5.0, (before, after)


def test_training_from_measurements_refuses_bad_input():
    op = make_operator("inpaint", (32, 32), keep=0.5)
    model = UnrolledPGD(2, 4, 2, final_dc=True)
    y = torch.rand(4, 32, 32)
    with pytest.raises(InputError, match="no ground truth"):
        train_from_measurements(model, y, op, supervision="supervised", steps=1)
    with pytest.raises(InputError, match=r"\(32, 32\)"):
        train_from_measurements(model, torch.rand(4, 32, 30), op, steps=1)
    bad = y.clone()
    bad[0, 3, 3] = float("nan")
    with pytest.raises(InputError, match="NaN"):
        train_from_measurements(model, bad, op, steps=1)
    with pytest.raises(InputError, match="equivariance"):
        train_from_measurements(model, y, make_operator("blur", (32, 32)), steps=1)


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


def _stack(n=3):
    from napari_invrec.engine.measurement_training import MeasurementStack

    op = make_operator("inpaint", (32, 32), keep=0.5, seed=4)
    x = op.as_image(SyntheticPatches("phantoms").patches(n, 32, seed=5))
    y = op.measure(x, NoiseParams(model="gaussian", sigma=0.01),
                   torch.Generator().manual_seed(2))[:, 0].numpy()
    # counts, as a detector would give them: the engine normalises them as a run would
    return MeasurementStack(1000.0 * y + 50.0 * op.mask_tensor()[0].numpy(), op.spec()), op


@pytest.mark.parametrize("supervision", ["ssdu", "ei"])
def test_engine_trains_on_a_measurement_stack_and_records_it(tmp_path, supervision):
    from napari_invrec.engine.training import TrainSpec, run_training

    stack, op = _stack()
    before = stack.data.copy()
    spec = TrainSpec(task="unrolled", supervision=supervision, arch="unrolled-pgd",
                     arch_kwargs={"stages": 2, "width": 4, "depth": 2},
                     data="measurements:y", steps=3, batch=2, val_every=3, name="t-meas",
                     out=str(tmp_path / "m.pt"), register=False)
    gen = run_training(spec, measurements=stack)
    states = []
    try:
        while True:
            states.append(next(gen))
    except StopIteration as stop:
        entry = stop.value
    assert np.array_equal(stack.data, before)  # only read
    assert entry.training == supervision and entry.operator["operator"] == "inpaint"
    assert entry.operator["params"]["seed"] == 4  # the stack's own mask
    assert entry.metrics["measurements"] == 3 and "val_psnr" not in entry.metrics
    assert np.isfinite(entry.metrics["val_loss"])
    if supervision == "ei":  # re-measured at the noise the data show, in the run's units:
        # 0.01 x 1000 counts over a span of about 1000 -> about 0.01; the median of the
        # wavelet MAD estimates, biased up by the phantoms' edges (0.010-0.023 each here)
        assert 0.005 < entry.metrics["noise_sigma"] < 0.02


def test_engine_refuses_measurements_it_cannot_learn_from(tmp_path):
    from napari_invrec.engine.measurement_training import MeasurementStack
    from napari_invrec.engine.training import TrainSpec, prepare_training

    stack, op = _stack()
    base = dict(task="unrolled", arch="unrolled-pgd", arch_kwargs={"stages": 2, "width": 4,
                "depth": 2}, steps=1, name="t", out=str(tmp_path / "m.pt"), register=False)
    with pytest.raises(InputError, match="no ground truth"):
        prepare_training(TrainSpec(data="measurements:y", **base), measurements=stack)
    with pytest.raises(InputError, match="needs measurements"):
        prepare_training(TrainSpec(data="measurements:y", supervision="ssdu", **base))
    with pytest.raises(InputError, match="data='measurements'"):
        prepare_training(TrainSpec(data="phantoms", supervision="ssdu", **base),
                         measurements=stack)
    with pytest.raises(InputError, match=r"stack \(N, 32, 32\)"):
        prepare_training(TrainSpec(data="measurements", supervision="ei", **base),
                         measurements=MeasurementStack(np.zeros((2, 2, 32, 32)), op.spec()))
    nan = stack.data.copy()
    nan[1, 0, 0] = np.nan
    with pytest.raises(InputError, match="measurement 1 of the stack"):
        prepare_training(TrainSpec(data="measurements", supervision="ei", **base),
                         measurements=MeasurementStack(nan, op.spec()))
