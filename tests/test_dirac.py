"""Incremental-reconstruction diffusion (dirac): the degradation schedules factor the
operator, the data-consistency projection is the nearest point of the noise ball, and the
sampler's iterates stay consistent with the measurement within the noise level while they
get sharper."""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import torch
from helpers import drain

from napari_invrec import api
from napari_invrec.core.analysis.noise import estimate_noise_sigma
from napari_invrec.core.errors import InputError
from napari_invrec.core.methods.dirac import dirac_levels
from napari_invrec.core.models.dirac import DiracNet
from napari_invrec.core.models.registry import register_weights, save_model, user_weights_dir
from napari_invrec.core.operators import NoiseParams, make_operator
from napari_invrec.core.operators.degradation import make_schedule
from napari_invrec.core.training import make_source
from napari_invrec.core.training.dirac import train_dirac

pytestmark = pytest.mark.usefixtures("one_thread")
N = 32


def _ops():
    return [make_operator("blur", (N, N), sigma=1.5), make_operator("inpaint", (N, N), keep=0.5)]


@pytest.mark.parametrize("op", _ops(), ids=lambda o: o.name)
def test_schedule_runs_from_identity_to_the_operator_and_factors_it(op):
    """A_0 = I, A_1 = A and A = A_{1|t} A_t at every level (blur: powers of the transfer
    function, exact up to float rounding; inpaint: masks, exact)."""
    torch.manual_seed(0)
    sched = make_schedule(op, torch.Generator().manual_seed(1))
    x = torch.rand(2, 1, N, N)
    zero, one = torch.zeros(2), torch.ones(2)
    torch.testing.assert_close(sched.degrade(x, zero), x, rtol=0, atol=1e-5)
    torch.testing.assert_close(sched.degrade(x, one), op.A(x), rtol=0, atol=1e-5)
    for t in (0.2, 0.5, 0.9):
        tt = torch.full((2,), t)
        torch.testing.assert_close(sched.rest(sched.degrade(x, tt), tt), op.A(x), rtol=0,
                                   atol=1e-5)
    if op.name == "inpaint":  # the mask grows with t and keeps every measured pixel
        k1, k2 = sched.known(torch.tensor([0.3])), sched.known(torch.tensor([0.7]))
        assert bool((k2 <= k1).all()) and bool((k2 >= sched.mask).all())
        assert float(k1.mean()) > float(k2.mean()) > float(sched.mask.mean())


@pytest.mark.parametrize("op", _ops(), ids=lambda o: o.name)
def test_projection_is_the_nearest_point_of_the_noise_ball(op):
    r"""The projected image lies on the ball ||A_{1|t} z' - y|| = r (when z was outside) and
    z' - z is a non-positive multiple of A_{1|t}^T (A_{1|t} z' - y), the optimality condition
    of the nearest point; a point inside stays where it is."""
    torch.manual_seed(2)
    sched = make_schedule(op, torch.Generator().manual_seed(3))
    y = op.A(torch.rand(1, 1, N, N))
    z = torch.rand(1, 1, N, N)
    t = torch.tensor([0.4])
    r = torch.tensor([0.5])
    zp = sched.project(z, y, t, r)
    res = sched.rest(zp, t) - y
    assert abs(float(res.norm()) - 0.5) < 1e-3
    g = sched.rest(res, t)  # A_{1|t} is symmetric for both families
    d = zp - z
    cos = float((d * g).sum() / (d.norm() * g.norm()))
    assert cos < -0.9999, cos
    inside = sched.project(zp, y, t, torch.tensor([0.6]))
    torch.testing.assert_close(inside, zp, rtol=0, atol=1e-6)


def test_levels_run_to_the_stopping_point():
    assert dirac_levels(20, 0.0)[-1] == 0.0 and len(dirac_levels(20, 0.0)) == 20
    levels = dirac_levels(20, 0.3)
    assert len(levels) == 14 and math.isclose(levels[-1], 0.3, abs_tol=1e-9)
    assert all(a > b for a, b in zip(levels, levels[1:]))
    assert dirac_levels(4, 0.9) == [0.75]


@functools.cache
def trained(op_name: str) -> str:
    """A tiny DiracNet trained on phantoms for ``op_name`` (blur 1.5 or inpaint 50 %)."""
    torch.manual_seed(0)
    kw = {"sigma": 1.5} if op_name == "blur" else {"keep": 0.5}
    model = DiracNet(width=8, scales=3)

    def factory(shape, device):
        return make_operator(op_name, shape, device=device, **kw)

    states, _ = drain(train_dirac(model, make_source("phantoms"), factory, noise_sigma=0.01,
                                  steps=150, batch=4, patch=N, lr=3e-3, val_every=150))
    assert states[-1].val_psnr > states[-1].extras["init_psnr"]
    name = f"tiny-dirac-{op_name}"
    op = make_operator(op_name, (N, N), **kw)
    entry = save_model(model, user_weights_dir() / f"{name}.pt",
                       {"name": name, "task": "dirac", "operator": op.spec()})
    register_weights(entry)
    return name


def _fresh(n: int) -> np.ndarray:
    x = make_source("phantoms").sample(1, n, np.random.default_rng(987654), torch.device("cpu"))
    return x[0, 0].numpy()


@pytest.mark.parametrize("op_name, kw", [("blur", {"sigma": 1.5}), ("inpaint", {"keep": 0.5})])
def test_iterates_stay_consistent_with_y_within_the_noise_and_improve_on_it(op_name, kw):
    """Every iterate z_t, degraded the rest of the way, is within sqrt(m) sigma of y, sigma
    the noise level (the projection's guarantee, to float rounding); the last one is closer
    to the truth than the measurement and, for blur, sharper than the first (more energy
    above a quarter of the Nyquist frequency)."""
    from napari_invrec.core.methods.registry import get_method

    name = trained(op_name)
    x = _fresh(N)
    op = make_operator(op_name, (N, N), **kw)
    sigma = 0.01
    y = op.measure(op.as_image(torch.from_numpy(x)[None, None]), NoiseParams(sigma=sigma, seed=5))
    p = get_method("dirac").params(weights=name, sigma=sigma, steps=10, stop=0.0)
    gen = torch.Generator().manual_seed(0)
    states, final = drain(get_method("dirac").fn(y, op, p, generator=gen))
    assert [s.metrics["t"] for s in states] == pytest.approx(dirac_levels(10, 0.0))
    sched = make_schedule(op, torch.Generator().manual_seed(0))
    measured = op.mask_tensor().bool() if op_name == "inpaint" else torch.ones(N, N).bool()
    m = float(measured.sum())
    # the noise level: the parameter, or the noise the measurement shows if that is larger
    level = max(sigma, estimate_noise_sigma(y[0, 0].numpy(), measured.reshape(N, N).numpy()))
    for s in states:
        t = torch.tensor([s.metrics["t"]])
        gap = float((sched.rest(s.x, t) - y).norm())
        assert gap <= math.sqrt(m) * level * (1 + 1e-4) + 1e-5, (s.step, gap)
    xt = torch.from_numpy(x)
    err_y = float((op.A_pinv(y)[0, 0] - xt).norm()) if op_name == "inpaint" else \
        float((y[0, 0] - xt).norm())
    assert float((final.x[0, 0] - xt).norm()) < err_y
    if op_name == "blur":
        def high(img):
            f = torch.fft.fft2(img[0, 0]).abs()
            fy = torch.fft.fftfreq(N).abs()
            return float(f[(fy[:, None] > 0.125) | (fy[None, :] > 0.125)].square().sum())
        assert high(states[-1].x) > high(states[0].x)


def test_dirac_runs_from_the_api_with_its_levels_and_refuses_bad_input():
    name = trained("blur")
    x = _fresh(N)
    op = api.make_operator("blur", x.shape, sigma=1.5)
    y = api.simulate(x, op, sigma=0.01, seed=1)
    res = api.reconstruct(y, op, "dirac", weights=name, steps=8, stop=0.5, reference=x)
    assert res.steps == [1, 2, 3, 4] and res.metric_history["t"] == pytest.approx(
        [0.875, 0.75, 0.625, 0.5])
    with pytest.raises(InputError, match="stop"):
        api.reconstruct(y, op, "dirac", weights=name, stop=1.0)
    with pytest.raises(InputError, match="gaussian kernel"):
        disk = api.make_operator("blur", x.shape, kernel="disk", radius=2.0)
        api.reconstruct(api.simulate(x, disk, sigma=0.01), disk, "dirac", weights=name)
    with pytest.raises(InputError, match="does not support operator 'mri'"):
        mri = api.make_operator("mri", x.shape)
        api.reconstruct(api.simulate(x, mri, sigma=0.01), mri, "dirac", weights=name)


@pytest.mark.gui
def test_reconstruct_dock_slider_reads_as_degradation_level(make_napari_viewer, wait_idle):
    """A dirac run in the Reconstruct dock: its iterates layer carries one level per slice;
    moving the step slider shows that level in the canvas's text, the last slice marked as
    the stopping point; without such layers the text goes."""
    from helpers import reconstruct_dock

    from napari_invrec._widgets._levels import _text_overlay

    name = trained("blur")
    viewer, w = reconstruct_dock(make_napari_viewer(), _fresh(48), "blur", sigma=1.5)
    w.method.value = "dirac"
    w.method_form.set_values({"weights": name, "steps": 10, "stop": 0.2})
    w.run()
    wait_idle(w)
    hist = viewer.layers["dirac · blur [iterates]"]
    levels = hist.metadata["invrec"]["levels"]
    assert levels == pytest.approx([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2])
    assert hist.data.shape[0] == len(levels)
    text = _text_overlay(viewer)
    viewer.layers.selection.active = hist
    viewer.dims.set_current_step(0, 3)
    assert text.visible and "t = 0.60" in text.text and "stopping" not in text.text
    viewer.dims.set_current_step(0, len(levels) - 1)
    assert "t = 0.20" in text.text and "stopping point" in text.text
    for layer in [lay for lay in viewer.layers if lay.metadata.get("invrec", {}).get("levels")]:
        viewer.layers.remove(layer)  # the x0_hat stream has the levels too
    assert not text.visible
