"""Ground-truth-free quality estimates, autotune and ranking (issue: quality without ground truth).

Unbiasedness tests average an estimator over independent noise draws and compare with the
average true error: the tolerance is 4 standard errors of the difference, estimated from the
same draws (a 4-sigma band holds with probability > 0.9999 for any seed, CPU or thread count).
"""

from __future__ import annotations

import json
import math
import types

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

import napari_invrec as ir
from napari_invrec.core.analysis import risk
from napari_invrec.core.data import shepp_logan
from napari_invrec.core.errors import InputError
from napari_invrec.engine.autotune import autotune_steps
from napari_invrec.engine.execute import drain
from napari_invrec.engine.quality import estimate_quality, paired_confidence
from napari_invrec.engine.ranking import rank_steps


def _smoother(op, strength=0.5):
    """A fixed linear reconstruction map: Tikhonov-like Fourier filter of A^H y."""
    def f(y, op_=op):
        return op_.solve_normal(op_.A_adjoint(y), strength)
    return f


def _four_se(diffs):
    d = np.asarray(diffs)
    return abs(d.mean()), 4 * d.std(ddof=1) / math.sqrt(d.size)


def test_sure_is_unbiased_for_a_linear_smoother_on_denoising():
    x = torch.from_numpy(shepp_logan(32))[None, None]
    op = ir.make_operator("blur", (32, 32), sigma=1.0)
    f = _smoother(op, 0.3)
    sigma, diffs = 0.05, []
    for seed in range(24):
        g = torch.Generator().manual_seed(seed)
        y = op.A(x) + sigma * torch.randn(x.shape, generator=g)
        est = risk.sure(y, op, f, sigma, n_probes=2, generator=g)
        true = float(((op.A(f(y)) - op.A(x)) ** 2).mean())
        diffs.append(est.mse - true)
    bias, tol = _four_se(diffs)
    assert bias <= tol


def test_gsure_is_unbiased_for_the_weighted_error_on_deblurring():
    x = torch.from_numpy(shepp_logan(32))[None, None]
    op = ir.make_operator("blur", (32, 32), sigma=1.5)
    f = _smoother(op, 0.05)
    sigma, delta, diffs = 0.02, 1e-2 * op.norm() ** 2, []
    for seed in range(24):
        g = torch.Generator().manual_seed(seed)
        y = op.A(x) + sigma * torch.randn(x.shape, generator=g)
        est = risk.gsure(y, op, f, sigma, delta=delta, n_probes=2, generator=g)
        e = f(y) - x
        true = float((e * op.solve_normal(op.AtA(e), delta)).sum()) / e.numel()
        diffs.append(est.mse - true)
    bias, tol = _four_se(diffs)
    assert bias <= tol


def test_monte_carlo_divergence_matches_the_trace_of_a_linear_map():
    op = ir.make_operator("denoise", (24, 24))
    h = torch.tensor([[0.0, 0.1, 0.0], [0.1, 0.6, 0.1], [0.0, 0.1, 0.0]])[None, None]

    def f(y):
        return torch.nn.functional.conv2d(y, h, padding=1)

    y = torch.zeros(1, 1, 24, 24)
    divs = [risk.sure(y, op, f, 1.0, generator=torch.Generator().manual_seed(s))
            .details["divergence"] for s in range(40)]
    # tr(H) = 0.6 n; one probe's variance is 2 ||H||_F^2 = 2 n (0.6^2 + 4 * 0.1^2)
    n = 24 * 24
    se = math.sqrt(2 * n * (0.36 + 0.04) / len(divs))
    assert abs(np.mean(divs) - 0.6 * n) <= 4 * se


@pytest.mark.parametrize("estimator", [risk.sure, risk.gsure])
def test_probes_run_as_one_batch_with_the_same_divergence(estimator):
    """With the same generator the batched probes are the sequential ones; for a linear map
    the finite differences then differ only by float32 round-off of ``f`` (about 1e-7 of
    the image) over the step (0.1 sigma = 2e-3): relative 1e-4 per pixel, far less summed
    over 1024 pixels of random sign; 1e-3 leaves a tenfold margin."""
    x = torch.from_numpy(shepp_logan(32))[None, None]
    op = ir.make_operator("blur", (32, 32), sigma=1.5)
    f = _smoother(op, 0.05)
    y = op.A(x) + 0.02 * torch.randn(x.shape, generator=torch.Generator().manual_seed(3))
    calls = []

    def f_batch(ys):
        calls.append(ys.shape[0])
        return f(ys)

    one = estimator(y, op, f, 0.02, n_probes=4, generator=torch.Generator().manual_seed(0))
    batched = estimator(y, op, f, 0.02, n_probes=4, generator=torch.Generator().manual_seed(0),
                        f_batch=f_batch)
    assert calls == [5]  # y itself and the four probes, one run
    assert len(batched.details["values"]) == 4
    assert batched.details["divergence"] == pytest.approx(one.details["divergence"], rel=1e-3)
    # probe i's value is (shared part + 2 sigma^2 d_i) / m with d_i its divergence: it moves
    # by 2 sigma^2 (the change of d_i) / m, at most 1e-3 of 2 sigma^2 max|d_i| / m
    v, m = np.asarray(one.details["values"]), 1024
    d = one.details["divergence"] + (v - v.mean()) * m / (2 * 0.02 ** 2)
    np.testing.assert_allclose(batched.details["values"], v, rtol=0,
                               atol=1e-3 * 2 * 0.02 ** 2 * np.abs(d).max() / m)


@pytest.mark.parametrize("family, kw", [("inpaint", {"keep": 0.5}),
                                        ("mri", {"acceleration": 4, "center_fraction": 0.08}),
                                        ("cs", {"ratio": 0.5}),
                                        ("cs", {"ratio": 0.5, "ensemble": "structured"})])
def test_splitting_orders_tv_weights_like_the_true_error(family, kw):
    x = shepp_logan(48)
    op = ir.make_operator(family, x.shape, **kw)
    y = ir.simulate(x, op, sigma=0.02, seed=1)
    est, true = [], []
    for lam in (1e-4, 1e-3, 1e-2, 3e-2, 0.1, 0.3):
        res = ir.reconstruct(y, op, "tv-fista", lam=lam, iters=60, reference=x)
        q = estimate_quality(y, op, "tv-fista", ir.method_params("tv-fista")(lam=lam, iters=60),
                             x_hat=res.x, sigma=0.02)
        assert q.estimator == "splitting" and q.absolute
        est.append(q.psnr)
        true.append(res.metrics["psnr"])
    assert spearmanr(est, true).correlation >= 0.8


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_held_out_dense_cs_rows_estimate_the_whole_image_error(seed):
    """For a reconstruction independent of the held-out rows (here a fixed image z), each
    held-out Gaussian row gives (a^T(z - x))^2, of mean ||z - x||^2/m and variance twice its
    square: m/n times the mean over all m rows is ||z - x||^2/n within 4 standard errors
    sqrt(2/m) (relative), null space included, for any matrix seed."""
    from napari_invrec.engine.splitting import split_estimate

    x = torch.from_numpy(shepp_logan(24))[None, None].float()
    op = ir.make_operator("cs", (24, 24), ratio=0.5, seed=seed)
    z = torch.full_like(x, 0.3)

    def f(y, op_k, whole=False):
        return z.expand(y.shape[0], *z.shape[1:])

    y = op.A(x)
    est = drain(split_estimate(y, op, f, 0.0, 5, torch.Generator().manual_seed(seed), z, 1))
    true = float(((z - x) ** 2).mean())
    assert abs(est.mse / true - 1) <= 4 * math.sqrt(2 / op.m)


def test_rescaled_null_space_error_is_unbiased_for_a_map_that_ignores_the_data():
    """For a fixed answer u, each draw's null-space term has mean ||(I - P_c)(u - A x)||^2/n_c
    over the measurement noise and the recorruption (module docstring of rescaling): the mean
    over 24 measurements lies within 4 standard errors of it."""
    from napari_invrec.engine.rescaling import coarse_operator, rescaled_estimate

    x = torch.from_numpy(shepp_logan(64))[None, None].float()
    op = ir.make_operator("superres", (64, 64), factor=2)
    y0 = op.A(x)
    op_c = coarse_operator(op, tuple(y0.shape[-2:]))
    u = torch.full_like(y0, 0.2)
    true = float(op_c.null_project(u - y0).square().sum()) / y0.numel()
    sigma, vals = 0.05, []
    for seed in range(24):
        g = torch.Generator().manual_seed(seed)
        y = y0 + sigma * torch.randn(y0.shape, generator=g)
        est = drain(rescaled_estimate(y, op, lambda yy, op_=op, whole=False: (
            x * 0 + 0.2 if op_ is op else u), sigma, 2, g, x * 0 + 0.2))
        vals.append(est.details["null_mse"])
    assert abs(np.mean(vals) - true) <= 4 * np.std(vals, ddof=1) / math.sqrt(len(vals))
    assert true > 10 * np.std(vals, ddof=1) / math.sqrt(len(vals))  # the test can fail


def test_rescaled_orders_tv_weights_and_refuses_tiny_measurements():
    x = shepp_logan(64)
    op = ir.make_operator("superres", x.shape, factor=2)
    y = ir.simulate(x, op, sigma=0.02, seed=1)
    est, true = [], []
    for lam in (1e-4, 1e-3, 1e-2, 3e-2, 0.1, 0.3):
        p = ir.method_params("tv-fista")(lam=lam, iters=60)
        res = ir.reconstruct(y, op, "tv-fista", lam=lam, iters=60, reference=x)
        q = estimate_quality(y, op, "tv-fista", p, x_hat=res.x, sigma=0.02)
        assert q.estimator == "rescaled"
        est.append(-q.score)
        true.append(res.metrics["psnr"])
    assert spearmanr(est, true).correlation >= 0.8
    small = ir.make_operator("superres", (24, 24), factor=2)
    y_small = ir.simulate(shepp_logan(24), small, sigma=0.02)
    p = ir.method_params("tikhonov")()
    assert estimate_quality(y_small, small, "tikhonov", p, sigma=0.02).estimator == "gsure"
    with pytest.raises(InputError, match="too small to rescale"):
        estimate_quality(y_small, small, "tikhonov", p, sigma=0.02, estimator="rescaled")


def test_estimators_refuse_what_does_not_apply():
    x = shepp_logan(24)
    op = ir.make_operator("blur", x.shape, sigma=1.0)
    y = ir.simulate(x, op, sigma=0.02)
    p = ir.method_params("tikhonov")()
    with pytest.raises(InputError, match="cannot be split"):
        estimate_quality(y, op, "tikhonov", p, estimator="splitting")
    with pytest.raises(InputError, match="photons"):
        estimate_quality(y, op, "tikhonov", p, estimator="thinning")
    with pytest.raises(InputError, match="unknown estimator"):
        estimate_quality(y, op, "tikhonov", p, estimator="cross-validation")
    with pytest.raises(InputError, match="sigma"):
        estimate_quality(y, op, "tikhonov", p, sigma=float("nan"))
    inp = ir.make_operator("inpaint", x.shape, keep=0.5)
    with pytest.raises(InputError, match="at least 2 folds"):
        estimate_quality(ir.simulate(x, inp, sigma=0.02), inp, "tikhonov", p, folds=1)


def test_thinning_runs_on_poisson_counts_and_orders_iterations():
    x = shepp_logan(32) + 0.1
    op = ir.make_operator("blur", x.shape, sigma=1.5)
    y = ir.simulate(x, op, noise="poisson", photons=200.0, seed=2)
    p = ir.method_params("richardson-lucy")
    few = estimate_quality(y, op, "richardson-lucy", p(iters=1), photons=200.0, probes=4)
    ok = estimate_quality(y, op, "richardson-lucy", p(iters=20), photons=200.0, probes=4)
    assert few.estimator == ok.estimator == "thinning"
    assert ok.mse < few.mse


def test_autotune_lands_near_the_best_trial_and_records_itself():
    x = shepp_logan(48)
    op = ir.make_operator("inpaint", x.shape, keep=0.5)
    y = ir.simulate(x, op, sigma=0.02, seed=3)
    res = ir.autotune(y, op, "tv-fista", budget=7, iters=60, sigma=0.02)
    rec = res.provenance["autotune"]
    assert len(rec["trials"]) == 7 and "lam" in rec["chosen"]
    true = {t["values"]["lam"]: ir.reconstruct(y, op, "tv-fista", iters=60, reference=x,
                                               lam=t["values"]["lam"]).metrics["psnr"]
            for t in rec["trials"]}
    assert true[rec["chosen"]["lam"]] >= max(true.values()) - 1.0
    assert res.provenance["params"]["lam"] == pytest.approx(rec["chosen"]["lam"])
    assert res.provenance["quality"]["estimator"] == "splitting"
    json.dumps(res.provenance)


def test_autotune_refuses_untunable_methods_and_small_budgets():
    op = ir.make_operator("denoise", (16, 16))
    y = np.zeros((16, 16), np.float32)
    with pytest.raises(InputError, match="no hyperparameter"):
        drain(autotune_steps(y, op, "adjoint"))
    with pytest.raises(InputError, match="at least 3"):
        drain(autotune_steps(y, op, "tv-fista", budget=2))


def test_rank_puts_the_measurement_last_with_a_confidence():
    x = shepp_logan(48)
    op = ir.make_operator("inpaint", x.shape, keep=0.5)
    y = ir.simulate(x, op, sigma=0.02, seed=4)
    ranking = drain(rank_steps(y, op, ["adjoint", ("tv-fista", {"lam": 0.01, "iters": 60})],
                               sigma=0.02))
    assert [t.method for t in ranking.trials] == ["tv-fista", "adjoint"]
    assert 0.5 <= ranking.confidence[0] <= 1.0
    assert ranking.confidence[0] == paired_confidence(ranking.trials[0].estimate,
                                                      ranking.trials[1].estimate)


def test_the_choice_beats_the_adjoint_with_the_floor_confidence_or_is_the_adjoint():
    """Paired per-fold MSEs: a candidate whose lead over the adjoint is within its noise is
    not chosen over the data; the first one sure enough is; without the adjoint, the top."""
    from napari_invrec.engine.autotune import Trial
    from napari_invrec.engine.quality import QualityEstimate
    from napari_invrec.engine.ranking import FLOOR_CONFIDENCE, _floor_choice

    def trial(method, values):
        m = float(np.mean(values))
        est = QualityEstimate("splitting", "image", m, 0.0, 0.0, 0.0, 1.0, True, m, 0.02,
                              "given", None, values=list(values))
        return Trial(0, 3, method, {}, est)

    floor = trial("adjoint", [1.0, 1.0, 1.0, 1.0, 1.0])
    shaky = trial("dpir", [0.7, 1.2, 0.8, 1.1, 0.9])   # mean 0.94, differences' se 0.09
    steady = trial("tv-fista", [0.95, 0.96, 0.97, 0.95, 0.96])
    assert paired_confidence(shaky.estimate, floor.estimate) < FLOOR_CONFIDENCE
    assert paired_confidence(steady.estimate, floor.estimate) >= FLOOR_CONFIDENCE
    order = sorted([floor, steady, shaky], key=lambda t: t.estimate.score)
    assert [t.method for t in order] == ["dpir", "tv-fista", "adjoint"]
    chosen, sure = _floor_choice(order)
    assert order[chosen].method == "tv-fista" and len(sure) == 2
    chosen, _ = _floor_choice([shaky, floor])
    assert chosen == 1
    assert _floor_choice([shaky, steady]) == (0, [])


def test_api_estimate_is_stored_in_the_provenance():
    x = shepp_logan(32)
    op = ir.make_operator("denoise", x.shape)
    y = ir.simulate(x, op, sigma=0.05, seed=5)
    res = ir.reconstruct(y, op, "tv-fista", lam=0.05, iters=40)
    q = ir.estimate_quality(res, sigma=0.05)
    assert res.provenance["quality"]["estimator"] == "gsure"
    assert q.sigma_source == "given"
    json.dumps(res.provenance)


def test_cli_auto_and_estimate_record_their_choice(tmp_path, capsys):
    from napari_invrec.cli import main

    x = shepp_logan(40)
    op = ir.make_operator("inpaint", x.shape, keep=0.6)
    y_path, out = tmp_path / "y.npy", tmp_path / "out.npy"
    np.save(y_path, ir.simulate(x, op, sigma=0.02, seed=6))
    assert main(["reconstruct", "--operator", "inpaint", "--keep", "0.6", "--method",
                 "tv-fista", "--iters", "40", "--auto", "4", "--estimate", "--input",
                 str(y_path), "--output", str(out)]) == 0
    prov = json.loads((tmp_path / "out.npy.json").read_text())["provenance"]
    assert len(prov["autotune"]["trials"]) == 4
    assert prov["params"]["lam"] == pytest.approx(prov["autotune"]["chosen"]["lam"])
    assert prov["quality"]["estimator"] == "splitting"
    assert "trial 4/4" in capsys.readouterr().err
    assert main(["reconstruct", "--operator", "denoise", "--method", "adjoint", "--auto",
                 "--input", str(y_path), "--output", str(tmp_path / "o2.npy")]) == 2
    assert "no hyperparameter" in capsys.readouterr().err


@pytest.mark.parametrize("family, kw", [("inpaint", {"keep": 0.5}), ("mri", {"acceleration": 4}),
                                        ("cs", {"ratio": 0.5})])
def test_folds_run_as_one_batch_with_the_same_estimate(family, kw):
    from napari_invrec.engine import splitting as splitting_mod

    x = shepp_logan(40)
    op = ir.make_operator(family, x.shape, **kw)
    y = ir.simulate(x, op, sigma=0.02, seed=7)
    p = ir.method_params("tv-fista")(lam=0.01, iters=40)
    batched = estimate_quality(y, op, "tv-fista", p, sigma=0.02, folds=3, probes=1)
    calls = []
    real = splitting_mod._batched_folds
    splitting_mod._batched_folds = lambda *a: calls.append(1)  # forces one-by-one folds
    try:
        single = estimate_quality(y, op, "tv-fista", p, sigma=0.02, folds=3, probes=1)
    finally:
        splitting_mod._batched_folds = real
    assert calls == [1]
    # same folds, same iterations: float32 sums in another order at most
    assert batched.mse == pytest.approx(single.mse, rel=1e-4)
    assert batched.evaluations == single.evaluations


def test_smoothed_minimum_is_the_vertex_of_the_fitted_parabola():
    """Exact on a parabola in log10(v) (five nearest points), clipped to their span, and
    absent where the points are too few or the fit is not convex."""
    from napari_invrec.engine.autotune import _smoothed_minimum

    t0 = math.log10(2.6e-3)
    vs = [10 ** t for t in np.linspace(-4, -1.5, 8)]
    scored = {v: 3.0 * (math.log10(v) - t0) ** 2 - 7.9 for v in vs}
    assert math.log10(_smoothed_minimum(scored)) == pytest.approx(t0, abs=1e-9)
    edge = {v: (math.log10(v) + 6.0) ** 2 for v in vs}  # minimum far left of the points
    assert _smoothed_minimum(edge) == pytest.approx(vs[0], rel=1e-9)
    assert _smoothed_minimum({v: -s for v, s in scored.items()}) is None
    assert _smoothed_minimum(dict(list(scored.items())[:3])) is None


def test_unmeasured_columns_take_their_energy_times_the_held_out_relative_error():
    """Column energies on a power law in (1 + |k|) are interpolated exactly in log-log between
    the measured columns, so with held-out errors (less the noise) a fixed fraction of their
    columns' energy the sum over never-measured columns is that fraction of their true
    energy, where the held-out errors carried as they are would miss it by far."""
    from napari_invrec.engine.splitting import _unmeasured_column_errors, _unmeasured_energy

    w, sigma = 32, 0.01
    freq = np.abs(np.arange(w) - w // 2)
    energy = 3.0 * (1.0 + freq) ** -2.0
    cols = np.zeros(w, bool)
    cols[[0, 5, 14, 15, 16, 17, 18, 26, 30]] = True    # centre 14-18 and four others
    hcols = np.zeros(w, bool)
    hcols[[5, 26]] = True
    err = 0.25 * energy + sigma ** 2                  # a quarter of the energy, plus noise
    dst = ~cols
    unseen = _unmeasured_energy(energy, cols, dst, freq)
    assert unseen == pytest.approx(energy[dst].sum(), rel=1e-9)
    # one fold, or the same columns split over two folds: the same pooled mean
    got = _unmeasured_column_errors([err], [hcols], energy, unseen, sigma)[0]
    first, second = hcols.copy(), hcols.copy()
    first[26], second[5] = False, False
    pseudo = _unmeasured_column_errors([err, err], [first, second], energy, unseen, sigma)
    assert np.mean(pseudo) == pytest.approx(got, rel=1e-9)
    # never-measured columns lie inside the measured span (|k| 0..16)
    expected = (0.25 * energy[dst]).sum()
    assert got == pytest.approx(expected, rel=1e-9)
    carried = err[hcols].mean() * dst.sum()
    assert abs(carried - expected) > 0.5 * expected


def test_hermitian_data_and_mirror_columns_are_scored_against_the_conjugate_mirror():
    """Noise-free k-space of a real image is Hermitian, of an image with a phase ramp it is
    not; a never-measured column whose mirror is measured is scored exactly against that
    mirror's conjugate (here the zero-filled image's error, the column's true energy)."""
    from napari_invrec.core.operators.mri import fft2c
    from napari_invrec.engine.splitting import (
        _mirror_column_error,
        hermitian_data,
        mirror_index,
    )

    x = torch.from_numpy(shepp_logan(32))[None, None].to(torch.complex64)
    op = ir.make_operator("mri", (32, 32), acceleration=3, center_fraction=0.1, seed=2)
    mask = torch.as_tensor(op.mask) > 0
    y = op.A(x)
    assert hermitian_data(y, mask, 0.0)
    ramp = torch.exp(1j * torch.linspace(0, 3, 32))[None, None, :, None].to(torch.complex64)
    assert not hermitian_data(op.A(x * ramp), mask, 0.0)
    cols = mask.any(0).numpy()
    twins = ~cols & cols[mirror_index(32)]
    assert twins.any()
    x_hat = op.A_adjoint(y)
    true = (fft2c(x_hat - x).abs().square().mean(dim=(0, 1, 2)).numpy())[twins].sum()
    assert _mirror_column_error(x_hat, y, op, twins, 0.0) == pytest.approx(true, rel=1e-4)




def test_projection_normal_solve_keeps_float32_precision_for_a_small_rho():
    """GSURE solves (P + delta) x = b with delta = 1e-3 ||A||^2 for a mask projection P. In
    float32 the form (b - P b / (1 + delta)) / delta loses 3 digits on the measured part
    (relative error about 6e-8 / 1e-3 = 6e-5, which made an inpainting estimate negative);
    P b / (1 + delta) + (b - P b) / delta keeps float32's 1e-7: 1e-5 separates the two."""
    from napari_invrec.core.linalg import normal_solver

    op = ir.make_operator("inpaint", (64, 64), keep=0.5, seed=0)
    b = torch.rand(1, 1, 64, 64, generator=torch.Generator().manual_seed(0))
    x = normal_solver(op, b, 10)(b, 1e-3, torch.zeros_like(b))
    r = op.AtA(x) + 1e-3 * x - b
    assert float(r.norm() / b.norm()) < 1e-5


def test_best_for_this_data_runs_its_candidates_at_the_noise_level_in_run_units(monkeypatch):
    """"Best for this data" sets dpir's sigma and pnp-admm's noise to the measurement's noise
    level in the units the runs work in: the same level for the data at any scale."""
    from napari_invrec.engine import ranking

    x = shepp_logan(32)
    op = ir.make_operator("inpaint", x.shape, keep=0.5, seed=0)
    y = ir.simulate(x, op, sigma=0.05, seed=0)
    seen = []

    def fake_rank(y, op, cands, **kw):  # records the candidates instead of running them
        seen.append(cands)
        return None
        yield

    def fake_tune(*args, **kw):  # the default method "tuned" to its defaults
        return types.SimpleNamespace(params={})
        yield

    monkeypatch.setattr(ranking, "rank_steps", fake_rank)
    monkeypatch.setattr(ranking, "autotune_steps", fake_tune)
    for scale in (1.0, 1000.0):
        drain(ranking.best_steps(y * scale, op, sigma=0.05 * scale, normalise="on"))
    levels = []
    for cands in seen:
        pnp = [kw for m, kw in cands if m == "pnp-admm"]
        dpir = [kw for m, kw in cands if m == "dpir"]
        assert pnp and dpir and all(kw["noise"] == pnp[0]["noise"] for kw in pnp)
        assert all(kw["sigma"] == pnp[0]["noise"] for kw in dpir)
        levels.append(pnp[0]["noise"])
    # normalised to [0, 1] the noise of 0.05 on a [0, 1] image is 0.05 / (its range)
    assert 0.03 < levels[0] < 0.08 and levels[1] == pytest.approx(levels[0], rel=1e-5)
    assert all("noise" not in kw for m, kw in ranking.candidates_for(op) if m == "pnp-admm")
