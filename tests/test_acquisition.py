"""Learned acquisition (LOUPE): the budget, the straight-through masks, the exact acceleration
of the deterministic pattern, joint training, and the shipped ``learned`` MRI pattern."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from napari_invrec.core.errors import InputError
from napari_invrec.core.models.unrolled import VarNet
from napari_invrec.core.operators.mri import (
    LEARNED_DESIGN,
    MRIParams,
    column_mask,
    learned_density,
    n_columns,
    ranked_columns,
)
from napari_invrec.core.operators.registry import make_operator
from napari_invrec.core.training.acquisition import (
    SamplingDesign,
    budget_rescale,
    train_acquisition,
)
from napari_invrec.core.training.datasets import make_source

F32 = 1e-6  # float32 rounding of a mean of O(100) values in [0, 1]


@pytest.mark.parametrize("shift", [-3.0, 0.0, 3.0])
def test_budget_rescale_meets_the_budget_in_both_branches(shift):
    g = torch.Generator().manual_seed(0)
    p = torch.sigmoid(torch.randn(64, generator=g) + shift)
    q = budget_rescale(p, 0.25)
    assert abs(float(q.mean()) - 0.25) < F32
    assert float(q.min()) >= 0 and float(q.max()) <= 1 + F32
    # monotone: the ranking of the columns is the design's
    assert torch.equal(torch.argsort(q), torch.argsort(p))


@pytest.mark.parametrize("width,r", [(64, 4), (63, 4), (96, 8), (128, 3)])
def test_design_pattern_has_exactly_its_columns_and_is_symmetric(width, r):
    d = SamplingDesign(width, r, generator=torch.Generator().manual_seed(1))
    pat = d.pattern()
    assert pat.sum() == n_columns(width, r)
    assert abs(float(d.probabilities().detach().sum()) - n_columns(width, r)) < 1e-4
    c0 = width // 2
    assert pat[c0]  # the DC column (centre fraction 0.08 keeps it)
    mirrored = [(c0 - k, c0 + k) for k in range(1, c0) if c0 + k < width]
    # at most one unpaired column (n odd, or the budget ending inside a pair)
    assert sum(pat[a] != pat[b] for a, b in mirrored) <= 1


def test_straight_through_masks_are_binary_with_the_budget_in_expectation():
    width, r, n_draws = 64, 4, 4000
    d = SamplingDesign(width, r, generator=torch.Generator().manual_seed(2))
    m = d.sample(n_draws, torch.Generator().manual_seed(3))
    assert set(torch.unique(m.detach()).tolist()) <= {0.0, 1.0}
    assert torch.all(m.detach()[:, 30:35] == 1)  # the 5 centre columns (8 % of 64), always
    # each mask's column count is a sum of independent Bernoulli(p_c) (mirrored pairs: at
    # most 2x the variance); the mean over draws is within 5 standard errors of n
    var = 2 * float((d.probabilities() * (1 - d.probabilities())).sum())
    tol = 5 * (var / n_draws) ** 0.5
    assert abs(float(m.detach().sum(1).mean()) - d.n) < tol
    m.sum().backward()
    assert d.logits.grad is not None and float(d.logits.grad.abs().sum()) > 0


def test_ranked_columns_keeps_the_centre_and_breaks_ties_towards_it():
    density = np.ones(16)
    keep = np.zeros(16, dtype=bool)
    keep[8] = True
    lines = ranked_columns(density, 5, keep)
    assert lines.sum() == 5 and lines[8]
    assert set(np.flatnonzero(lines)) == {6, 7, 8, 9, 10}


def test_joint_training_moves_the_design_and_records_its_pattern():
    torch.manual_seed(0)
    net = VarNet(cascades=1, width=4, scales=1)

    def factory(shape, dev):
        return make_operator("mri", shape, device=dev, acceleration=4)

    loop, design = train_acquisition(net, make_source("natural", seed=0), factory, steps=6,
                                     batch=2, patch=32, lr=1e-2, val_every=3,
                                     fix_fraction=0.5)
    logits0 = design.logits.detach().clone()
    states = list(loop)
    moved = design.logits.detach().clone()
    assert float((moved - logits0).abs().max()) > 0
    assert states[-1].extras["columns"] == n_columns(32, 4)
    rec = design.record()
    assert sum(rec["pattern"]) == n_columns(32, 4)
    assert len(rec["density"]) == len(rec["frequencies"]) == 17
    # the last half of the steps tunes the network to the frozen pattern: the design is fixed
    assert design.pattern().tolist() == [bool(v) for v in rec["pattern"]]


def test_acquisition_refuses_other_operators_and_real_networks():
    src = make_source("natural", seed=0)
    with pytest.raises(InputError, match="single-coil 'mri'"):
        train_acquisition(VarNet(cascades=1, width=4, scales=1), src,
                          lambda s, d: make_operator("mri-multicoil", s, device=d), steps=1,
                          patch=32)
    with pytest.raises(InputError, match="complex MRI"):
        train_acquisition(VarNet(cascades=1, width=4, scales=1, complex_images=False), src,
                          lambda s, d: make_operator("mri", s, device=d), steps=1, patch=32)


# ---------------------------------------------------------------- the shipped design
needs_design = pytest.mark.skipif(not LEARNED_DESIGN.is_file(),
                                  reason="no shipped learned sampling design")


@needs_design
@pytest.mark.parametrize("width", [64, 100, 128, 256, 257])
@pytest.mark.parametrize("r", [2, 4, 8])
def test_learned_pattern_meets_its_acceleration_exactly(width, r):
    p = MRIParams(acceleration=r, pattern="learned")
    lines = column_mask(p, width)
    n_centre = max(1, round(0.08 * width))
    assert lines.sum() == n_columns(width, r, n_centre)
    assert lines[width // 2]


@needs_design
def test_learned_pattern_at_the_training_width_is_the_networks_pattern():
    rec = json.loads(LEARNED_DESIGN.read_text())
    lines = column_mask(MRIParams(acceleration=rec["acceleration"], pattern="learned",
                                  center_fraction=rec["center_fraction"]), rec["width"])
    assert lines.astype(int).tolist() == rec["pattern"]
    # the density favours low frequencies: the mean |f| of its samples is below uniform's
    f = np.abs(np.arange(rec["width"]) - rec["width"] // 2) / rec["width"]
    assert f[lines].mean() < f.mean()
    assert learned_density(rec["width"]).shape == (rec["width"],)


def test_learned_pattern_without_a_design_file_says_what_to_do(monkeypatch, tmp_path):
    from napari_invrec.core.operators import mri

    monkeypatch.setattr(mri, "LEARNED_DESIGN", tmp_path / "missing.json")
    monkeypatch.setattr(mri.learned_density, "__defaults__", (tmp_path / "missing.json",))
    with pytest.raises(InputError, match="pick pattern 'random'"):
        column_mask(MRIParams(pattern="learned"), 64)
