"""Multi-coil MRI: coil maps (simulated, estimated), the exact pseudo-inverse, SENSE and RSS.

The generic operator contract (adjointness, pinv identities, null space, norm, noise, spec,
devices) runs for ``mri-multicoil`` in tests/test_operators.py; here are the family's own
properties.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from helpers import run_method

from napari_invrec.core.analysis import psnr
from napari_invrec.core.data import shepp_logan
from napari_invrec.core.errors import InputError
from napari_invrec.core.methods import METHODS
from napari_invrec.core.operators import NoiseParams, make_operator
from napari_invrec.core.operators.mri_multicoil import estimate_coil_maps, simulated_coil_maps
from napari_invrec.core.operators.registry import operator_arrays, operator_from_spec

N = 64


def final(method: str, y, op, **kw):
    """(returned state, list of yielded states) of a drained method."""
    states, last = run_method(method, y, op, **kw)
    return last, states


def rel_tv(u: np.ndarray) -> float:
    """Total variation per unit of mass: sum |finite differences| / sum |u|."""
    u = np.asarray(u)
    return float((np.abs(np.diff(u, axis=-1)).sum() + np.abs(np.diff(u, axis=-2)).sum())
                 / np.abs(u).sum())


def correlation(a: np.ndarray, b: np.ndarray, where: np.ndarray) -> float:
    """|<a, b>| / (|a| |b|) over the pixels ``where`` of every coil: 1 = equal up to a phase."""
    a, b = a[:, where], b[:, where]
    return float(np.abs(np.vdot(a, b)) / (np.linalg.norm(a) * np.linalg.norm(b)))


@functools.cache
def _problem(seed: int = 0):
    """64 px Shepp-Logan, R = 4, 8 simulated coils, k-space noise std 0.01."""
    op = make_operator("mri-multicoil", (N, N), acceleration=4.0, n_coils=8, seed=seed)
    x = op.as_image(torch.from_numpy(shepp_logan(N))[None, None])
    y = op.measure(x, NoiseParams(sigma=0.01, seed=seed + 1))
    return op, x, y


def quality(method: str, y, op, ref, **kw) -> float:
    return psnr(final(method, y, op, **kw)[0].x.abs(), ref.abs())


@functools.cache
def true_maps_quality(method: str) -> float:
    """PSNR of ``method`` (defaults) on :func:`_problem` with the true coil maps."""
    op, x, y = _problem()
    return quality(method, y, op, x)


# ---------------------------------------------------------------------- coil maps
@pytest.mark.parametrize("shape", [(32, 48), (33, 31), (64, 64)])
@pytest.mark.parametrize("n_coils", [1, 4, 8, 12])
def test_simulated_maps_are_normalised_smooth_and_distinct(shape, n_coils):
    maps = simulated_coil_maps(n_coils, shape).numpy()
    assert maps.shape == (n_coils, *shape) and maps.dtype == np.complex64
    assert np.abs((np.abs(maps) ** 2).sum(0) - 1).max() < 1e-5
    # smooth: per unit of mass, far less total variation than the phantom's at the same scale
    phantom = rel_tv(shepp_logan(max(shape)))
    for c in maps:
        assert rel_tv(np.abs(c)) < 0.2 * phantom and rel_tv(c) < 0.2 * phantom
    if n_coils > 1:  # and they differ: each coil is brightest on its own side of the image
        peaks = {np.unravel_index(np.abs(c).argmax(), shape) for c in maps}
        assert len(peaks) == n_coils


def test_full_sampling_makes_A_an_isometry_and_rss_exact():
    op = make_operator("mri-multicoil", (33, 31), acceleration=1.0)
    assert op.mask.min() == 1.0
    x = torch.randn(2, 1, 33, 31, dtype=torch.complex64, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(op.AtA(x), x, rtol=1e-5, atol=1e-5)  # sum_c |S_c|^2 = 1
    assert op.norm() == pytest.approx(1.0, abs=1e-3)
    st, _ = final("rss", op.A(x), op)
    assert st.x.dtype == torch.complex64 and float(st.x.imag.abs().max()) == 0.0
    torch.testing.assert_close(st.x.real, x.abs(), rtol=1e-4, atol=1e-5)  # RSS = |x|


def test_estimated_maps_recover_the_true_ones_up_to_a_phase():
    op, x, y = _problem()
    support = shepp_logan(N) > 1e-3
    est = estimate_coil_maps(y[0, 0], center_fraction=0.08)
    assert est.shape == (8, N, N) and est.dtype == np.complex64
    assert correlation(est, op.coil_maps, support) > 0.95
    for c in range(8):
        assert correlation(est[c:c + 1], op.coil_maps[c:c + 1], support) > 0.95
    # the ACS block found from the data (torch input) gives maps as good
    auto = estimate_coil_maps(y[0, 0], center_fraction=None)
    assert correlation(auto, op.coil_maps, support) > 0.95
    # an object with a smooth phase (a ramp of +-2 rad): the maps absorb it ...
    phase = torch.polar(torch.ones(N, N), 2 * torch.linspace(-1, 1, N)[None].expand(N, N))
    xp = x * phase
    yp = op.measure(xp, NoiseParams(sigma=0.01, seed=1))
    est_p = estimate_coil_maps(yp[0, 0].numpy(), 0.08)
    assert correlation(est_p, op.coil_maps, support) < 0.9
    # ... and reconstruct the magnitude as well as the true maps do
    op_p = make_operator("mri-multicoil", (N, N), coil_maps="estimated", coil_maps_array=est_p)
    assert quality("sense-cg", yp, op_p, xp) > quality("sense-cg", yp, op, xp) - 1.5


def test_estimated_maps_reconstruct_nearly_as_well_as_the_true_ones():
    op, x, y = _problem()
    maps = estimate_coil_maps(y[0, 0], center_fraction=0.08)
    op_e = make_operator("mri-multicoil", (N, N), acceleration=4.0, coil_maps="estimated",
                         coil_maps_array=maps)
    assert np.array_equal(op_e.mask, op.mask)
    for method in ("sense-cg", "tv-fista"):
        true, est = true_maps_quality(method), quality(method, y, op_e, x)
        assert est > true - 1.5, (method, true, est)


@pytest.mark.parametrize("kspace, center_fraction, match", [
    (np.zeros((8, 8), np.complex64), 0.25, "n_coils, H, W"),
    (np.full((2, 8, 8), np.nan, np.complex64), 0.25, "NaN"),
    (np.zeros((2, 8, 8), np.complex64), None, "not sampled"),
    (np.zeros((2, 8, 8), np.complex64), 0.25, "all zero"),
    (np.ones((2, 8, 8), np.complex64), 0.0, "center_fraction"),
])
def test_estimate_coil_maps_bad_inputs(kspace, center_fraction, match):
    with pytest.raises(InputError, match=match):
        estimate_coil_maps(kspace, center_fraction)


# ---------------------------------------------------------------------- the operator
def test_exact_pseudo_inverse_matches_a_dense_pinv():
    shape = (6, 10)
    op = make_operator("mri-multicoil", shape, n_coils=3, acceleration=2.0, center_fraction=0.2)
    n = shape[0] * shape[1]
    basis = torch.eye(n, dtype=torch.complex64).view(n, 1, *shape)
    dense = op.A(basis).reshape(n, -1).T.to(torch.complex128).numpy()  # (3 H W, H W)
    ref = np.linalg.pinv(dense, rcond=op.pinv_rcond)
    y = torch.randn(1, 1, 3, *shape, dtype=torch.complex64,
                    generator=torch.Generator().manual_seed(3))
    got = op.A_pinv(y).flatten().to(torch.complex128).numpy()
    want = ref @ y.flatten().to(torch.complex128).numpy()
    assert np.linalg.norm(got - want) <= 1e-4 * np.linalg.norm(want)
    # the singular values of A are the square roots of the row eigenvalues: same norm
    assert op.norm() == pytest.approx(np.linalg.svd(dense, compute_uv=False)[0], rel=1e-3)


def test_two_dimensional_mask_falls_back_to_cg():
    shape = (32, 48)
    mask = np.zeros(shape, np.float32)
    mask[:, 20:28] = 1
    mask[::3] = 1  # rows as well: not a column mask
    op = make_operator("mri-multicoil", shape, mask_array=mask, n_coils=4)
    assert not op._exact_pinv()
    x = torch.randn(1, 1, *shape, dtype=torch.complex64, generator=torch.Generator().manual_seed(0))
    ax = op.A(x)
    assert torch.all(ax[..., torch.from_numpy(mask) == 0] == 0)
    res = (op.A(op.A_pinv(ax)) - ax).norm() / ax.norm()
    assert float(res) < 1e-2  # CG on the normal equations, not exact


def test_coil_maps_array_parameters_and_spec_round_trip():
    shape = (32, 48)
    maps = simulated_coil_maps(5, shape).numpy() * 0.7
    op = make_operator("mri-multicoil", shape, coil_maps_array=maps)
    assert op.params.coil_maps == "custom" and op.params.n_coils == 5 and op.n_coils == 5
    assert op.measurement_shape == (5, *shape)
    np.testing.assert_array_equal(op.coil_maps, maps)
    assert op.norm() < 0.7 + 1e-3  # sum_c |S_c|^2 = 0.49: ||A|| <= 0.7
    rebuilt = operator_from_spec(op.spec(), operator_arrays(op))
    x = torch.randn(1, 1, *shape, dtype=torch.complex64)
    torch.testing.assert_close(rebuilt.A(x), op.A(x), rtol=0, atol=0)
    with pytest.raises(InputError, match="estimate_coil_maps"):
        make_operator("mri-multicoil", shape, coil_maps="estimated")
    with pytest.raises(InputError, match="n_coils, H, W"):
        make_operator("mri-multicoil", shape, coil_maps_array=maps[:, :-1])
    with pytest.raises(InputError, match="all zero"):
        make_operator("mri-multicoil", shape, coil_maps_array=np.zeros_like(maps))


def test_measurement_views():
    op, x, y = _problem()
    views = op.measurement_views(y)
    assert set(views) == {"coil images", "rss", "sampling mask"}
    assert views["coil images"].shape == (8, N, N) and views["rss"].shape == (N, N)
    assert all(not v.is_complex() for v in views.values())
    np.testing.assert_array_equal(views["sampling mask"].numpy(), op.mask)
    rss = final("rss", y, op)[0].x[0, 0].real
    torch.testing.assert_close(views["rss"], rss, rtol=1e-5, atol=1e-6)
    # unbatched input gives the same views; the single-coil operator shows its mask
    torch.testing.assert_close(op.measurement_views(y[0, 0])["rss"], views["rss"])
    single = make_operator("mri", (N, N))
    assert set(single.measurement_views(single.A(x))) == {"sampling mask"}


# ---------------------------------------------------------------------- methods
def test_sense_beats_rss_and_tv_beats_sense():
    rss, sense, tv = (true_maps_quality(m) for m in ("rss", "sense-cg", "tv-fista"))
    assert sense > rss + 2.0, (rss, sense)
    assert tv > sense + 3.0, (sense, tv)


def test_sense_cg_objective_decreases_and_general_methods_run():
    op, x, y = _problem()
    st, states = final("sense-cg", y, op, iters=20, tol=0.0)
    obj = np.array([s.metrics["objective"] for s in states])
    assert len(states) == 20 and np.all(np.diff(obj) <= 1e-6 * obj[0])
    assert states[-1].metrics["residual"] < states[0].metrics["residual"]
    for method in ("adjoint", "tikhonov", "tv-admm"):
        assert METHODS[method].supports("mri-multicoil")
        kw = {} if method == "adjoint" else {"iters": 20}
        assert np.isfinite(quality(method, y, op, x, **kw))
    assert METHODS["rss"].supports("mri-multicoil") and not METHODS["rss"].supports("blur")


# ---------------------------------------------------------------------- widget
@pytest.mark.gui
def test_simulate_widget_adds_coil_images_and_rss(make_napari_viewer):
    from napari_invrec._widgets.simulate import SimulateWidget

    viewer = make_napari_viewer()
    w = SimulateWidget(viewer)
    layer = viewer.add_image(shepp_logan(N), name="truth")
    w.image.value = layer
    w.op_panel.operator.value = "mri-multicoil"
    w.op_panel.form.set_values({"n_coils": 6, "acceleration": 4.0})
    added = w.simulate()
    meas, *views = added
    assert len(viewer.layers) == 1 + len(added)
    y = meas.metadata["invrec"]["complex_data"]
    assert y.shape == (6, N, N) and meas.data.shape == (6, N, N)
    by_view = {v.metadata["invrec"]["view"]: v for v in views}
    assert set(by_view) == {"coil images", "rss", "sampling mask"}
    assert all(v.metadata["invrec"]["kind"] == "view" for v in views)
    assert by_view["coil images"].data.shape == (6, N, N)
    assert by_view["coil images"].name == f"{meas.name} [coil images]"
    rss = by_view["rss"].data
    assert rss.shape == (N, N)
    zero_filled = np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(y, axes=(-2, -1)), norm="ortho"),
                                  axes=(-2, -1))
    np.testing.assert_allclose(rss, np.sqrt((np.abs(zero_filled) ** 2).sum(0)), atol=1e-5)
