"""GUI tests of the Train widget: train from a layer, use the network at once, cancel, errors."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from napari_invrec import api

pytestmark = pytest.mark.gui


@pytest.fixture(scope="module")
def truth():
    from napari_invrec.core.data.phantoms import atoms

    x = atoms(64, seed=7).astype(np.float32)
    return (x - x.min()) / (x.max() - x.min())


def _psnr(a, ref):
    return 10 * np.log10(1.0 / np.mean((np.asarray(a) - ref) ** 2))


def _viewer_with_measurement(make_napari_viewer, truth):
    """Viewer with the truth and a simulated noisy 'denoise' measurement ``y`` (sigma 0.1)."""
    from napari_invrec.core.operators import NoiseParams
    from napari_invrec.engine.layers import measurement_layer

    viewer = make_napari_viewer()
    viewer.add_image(truth.copy(), name="truth")
    op = api.make_operator("denoise", truth.shape)
    y = api.simulate(truth, op, sigma=0.1, seed=1)
    data, kw, _ = measurement_layer(y, op, NoiseParams(sigma=0.1, seed=1), name="y",
                                    ground_truth="truth")
    viewer.add_image(data, **kw)
    return viewer


def _set(w, **values):
    for k, v in values.items():
        getattr(w, k).value = v


TINY = {"arch": "drunet", "net_width": 8, "batch": 8, "patch": 24, "lr": "0.003"}


def test_noise2self_on_layer_then_dpir_in_open_reconstruct_widget(make_napari_viewer, truth,
                                                                  wait_idle, notes):
    from napari_invrec._widgets.reconstruct import ReconstructWidget
    from napari_invrec._widgets.train import LAYER, TrainWidget
    from napari_invrec.core.models import read_manifest

    viewer = _viewer_with_measurement(make_napari_viewer, truth)
    rec = ReconstructWidget(viewer)  # open before the network exists
    rec.method.value = "dpir"
    assert "gui-n2s" not in rec.method_form.widget("denoiser").choices
    y_before = np.array(viewer.layers["y"].data, copy=True)

    w = TrainWidget(viewer)
    w.task.value = "noise2self"
    assert w.source.value == LAYER and not w.sigma_max.visible
    w.layer.value = viewer.layers["y"]
    _set(w, steps=200, weights_name="gui-n2s", **TINY)
    worker = w.train()
    assert worker is not None and not w.train_button.enabled and w.cancel_button.enabled
    wait_idle(w, 60000)
    assert w.train_button.enabled and not w.cancel_button.enabled
    assert "gui-n2s" in read_manifest() and w.last_entry.name == "gui-n2s"
    assert w.history["step"][-1] == 200 and len(w.history["loss"]) == 200
    assert any(m.startswith("trained gui-n2s") for m in notes())
    np.testing.assert_array_equal(viewer.layers["y"].data, y_before)  # the layer is untouched

    # the open Reconstruct widget lists the new network without being reopened
    assert "gui-n2s" in rec.method_form.widget("denoiser").choices
    rec.method_form.set_values({"denoiser": "gui-n2s", "sigma": 0.1, "iters": 4})
    rec.run()
    wait_idle(rec, 60000)
    result = viewer.layers["dpir · denoise"]
    prov = result.metadata["invrec"]["provenance"]
    assert prov["params"]["denoiser"] == "gui-n2s"
    # self-supervised on the noisy data alone, it removes a large part of the noise
    assert _psnr(result.data, truth) > _psnr(y_before, truth) + 4.0


def test_supervised_on_atoms_plots_loss_and_validation(make_napari_viewer, wait_idle, notes):
    from napari_invrec._widgets.train import TrainWidget
    from napari_invrec.core.denoisers import denoiser_names

    viewer = make_napari_viewer()
    w = TrainWidget(viewer)
    assert not w.layer.visible and not w.folder.visible
    _set(w, source="atoms", steps=150, sigma_min=0.05, sigma_max=0.15,
         weights_name="gui-sup", **TINY)
    w.train()
    wait_idle(w, 60000)
    h = w.history
    assert h["step"] == list(range(1, 151)) and len(h["val_step"]) >= 2
    m = w.last_entry.metrics
    assert m["val_psnr"] > m["noisy_psnr"] + 1.5  # denoises held-out noisy patches
    assert "gui-sup" in denoiser_names()
    ax_loss, ax_psnr = w.plot.figure.axes
    assert len(ax_loss.lines[0].get_xdata()) == 150
    np.testing.assert_allclose(ax_psnr.lines[0].get_ydata(), h["val_psnr"])
    assert any(f"trained gui-sup: val PSNR {m['val_psnr']:.2f} dB" in n for n in notes())
    assert str(w.last_entry.file).endswith("gui-sup.pt")


def test_cancel_stops_within_a_step_and_registers_nothing(make_napari_viewer, qtbot, wait_idle,
                                                          notes, tmp_path):
    from napari_invrec._widgets.train import TrainWidget
    from napari_invrec.core.models import read_manifest

    viewer = make_napari_viewer()
    w = TrainWidget(viewer)
    ckpt = tmp_path / "c.ckpt"
    _set(w, source="phantoms", steps=100000, weights_name="gui-cancel",
         checkpoint=str(ckpt), **TINY)
    worker = w.train()
    steps = []
    # counted in the worker's thread as it yields (a queued slot would lag behind the worker
    # by however many signals the busy event loop has not delivered yet)
    from qtpy.QtCore import Qt

    worker.yielded.connect(lambda s: steps.append(s.step), Qt.ConnectionType.DirectConnection)
    qtbot.waitUntil(lambda: len(steps) >= 3, timeout=30000)
    w.cancel()
    at_cancel = max(steps)
    wait_idle(w, 30000)
    assert max(steps) <= at_cancel + 1
    assert "gui-cancel" not in read_manifest() and w.last_entry is None
    assert not (tmp_path / "gui-cancel.pt").exists()
    assert any("cancelled" in m and "gui-cancel" in m for m in notes())
    assert w.train_button.enabled


def test_score_model_with_log_uniform_levels_on_general_data(make_napari_viewer, wait_idle,
                                                             notes):
    """The GUI trains a diffusion score model: log-uniform levels, recorded in the command;
    a zero lower level is refused with a message before anything runs."""
    from napari_invrec._widgets.train import TrainWidget
    from napari_invrec.core.models import read_manifest

    viewer = make_napari_viewer()
    w = TrainWidget(viewer)
    _set(w, source="general", steps=20, sigma_min=0.0, sigma_max=1.0,
         sigma_dist="log-uniform", weights_name="gui-score", **TINY)
    assert w.train() is None and not w.controller.running
    assert any("sigma_min > 0" in n for n in notes()) and "gui-score" not in read_manifest()
    w.sigma_min.value = 0.01
    w.train()
    wait_idle(w, 60000)
    e = read_manifest()["gui-score"]
    assert "--sigma-dist log-uniform" in e.train_command and "--data general" in e.train_command
    assert e.metrics["val_psnr"] > 0 and len(w.history["step"]) == 20
    # fine-tuning those weights on augmented patches: both recorded in the command
    _set(w, augment=True, init_weights="gui-score", weights_name="gui-score-ft", steps=10)
    assert w.spec().data == "general+aug"
    w.train()
    wait_idle(w, 60000)
    ft = read_manifest()["gui-score-ft"]
    assert "--data general+aug" in ft.train_command
    assert "--init-weights gui-score" in ft.train_command
    w.task.value = "noise2self"  # noisy data are used as they are
    assert not w._augmentable()


def test_vae_for_csgm(make_napari_viewer, wait_idle, notes):
    """The VAE task: only the VAE network, a KL weight instead of noise levels; the result is
    at once a choice of csgm's generator and csgm runs with it."""
    from napari_invrec._widgets.train import TrainWidget
    from napari_invrec.core.methods.registry import get_method
    from napari_invrec.core.models import read_manifest
    from napari_invrec.core.params import choices_of

    viewer = make_napari_viewer()
    w = TrainWidget(viewer)
    def shown(widget):
        return not widget.native.isHidden()

    assert not shown(w.beta) and shown(w.sigma_max)
    w.task.value = "vae"
    assert list(w.arch.choices) == ["vae"] and w.arch.value == "vae"
    assert shown(w.beta) and not shown(w.sigma_max) and not shown(w.sigma_dist)
    _set(w, source="phantoms", steps=30, batch=8, patch=32, net_width=8, lr="0.002",
         beta=0.002, weights_name="gui-vae")
    w.train()
    wait_idle(w, 60000)
    e = read_manifest()["gui-vae"]
    assert e.task == "vae" and "--task vae" in e.train_command and "--beta 0.002" in \
        e.train_command
    assert e.metrics["val_psnr"] > 0 and len(w.history["step"]) == 30
    assert any("gui-vae" in n and "csgm generator" in n for n in notes())
    fields = dataclasses.fields(get_method("csgm", "inpaint").params)
    assert "gui-vae" in choices_of(next(f for f in fields if f.name == "weights"))
    x = np.zeros((32, 32), np.float32)
    x[8:24, 8:24] = 1.0
    op = api.make_operator("inpaint", x.shape, keep=0.5, seed=0)
    res = api.reconstruct(api.simulate(x, op, sigma=0.01, seed=0), op, "csgm",
                          weights="gui-vae", iters=5)
    assert res.x.shape == (32, 32) and np.isfinite(res.x).all()
    w.task.value = "denoiser"
    assert list(w.arch.choices) == ["drunet", "dncnn"] and not shown(w.beta)


@pytest.mark.parametrize("data, match", [
    (np.zeros((64, 64, 3), np.float32), "RGB"),
    (np.arange(64 * 64, dtype=np.uint16).reshape(64, 64), "integer"),
    (np.where(np.eye(64) > 0, np.nan, 0.5).astype(np.float32), "NaN"),
    (np.full((16, 16), 0.5, np.float32), "smaller than the patch"),
])
def test_bad_layer_is_a_notification_and_leaves_the_layer_alone(make_napari_viewer, notes,
                                                                 data, match):
    from napari_invrec._widgets.train import LAYER, TrainWidget
    from napari_invrec.core.models import read_manifest

    viewer = make_napari_viewer()
    layer = viewer.add_image(data.copy(), name="bad", rgb=data.ndim == 3)
    w = TrainWidget(viewer)
    _set(w, task="noise2self", steps=5, weights_name="gui-bad", **TINY)
    assert w.source.value == LAYER and w.layer.value is layer
    assert w.train() is None
    assert not w.controller.running and w.train_button.enabled
    assert any(match in m for m in notes()) and match in w.status.value
    np.testing.assert_array_equal(layer.data, data)
    assert "gui-bad" not in read_manifest()


def test_unrolled_network_from_a_stack_of_measurement_layers(make_napari_viewer, wait_idle,
                                                            notes):
    """Data 'measurement layer': a stack of 4 inpainting measurements (no image anywhere) and
    the operator it carries; the network learns by EI, the weights record the layer's mask;
    the layer is only read. An image layer without an operator is refused in one line."""
    from napari_invrec._widgets.train import MEASUREMENTS, TrainWidget
    from napari_invrec.core.data.phantoms import shepp_logan
    from napari_invrec.core.models import read_manifest
    from napari_invrec.core.operators import NoiseParams
    from napari_invrec.engine.layers import measurement_layer

    op = api.make_operator("inpaint", (32, 32), keep=0.5, seed=9)
    x = np.stack([np.roll(shepp_logan(32), 4 * k, axis=1) for k in range(4)])
    y = np.stack([api.simulate(xi.astype(np.float32), op, sigma=0.01, seed=k)
                  for k, xi in enumerate(x)])
    data, kw, _ = measurement_layer(y, op, NoiseParams(sigma=0.01), name="scans")
    viewer = make_napari_viewer()
    layer = viewer.add_image(data, **kw)
    plain = viewer.add_image(x[0].astype(np.float32), name="plain")
    w = TrainWidget(viewer)
    w.task.value = "unrolled"
    w.arch.value = "unrolled-pgd"
    _set(w, source=MEASUREMENTS, steps=3, batch=2, net_width=4, weights_name="gui-ei")
    assert w.op_panel.native.isHidden() and w.supervision.value == "ssdu"
    w.supervision.value = "ei"
    w.layer.value = plain
    assert w.train() is None and any("not a measurement" in m for m in notes())
    w.layer.value = layer
    w.train()
    wait_idle(w, 60000)
    e = read_manifest()["gui-ei"]
    assert e.training == "ei" and e.operator["operator"] == "inpaint"
    assert e.operator["params"]["seed"] == 9 and e.metrics["measurements"] == 4
    assert "val loss" in w.status.value
    np.testing.assert_array_equal(layer.data, y)


def test_train_widget_is_a_plugin_dock_widget(make_napari_viewer):
    from napari_invrec._widgets.train import TrainWidget

    viewer = make_napari_viewer()
    _, w = viewer.window.add_plugin_dock_widget("napari-invrec", "Train network")
    assert isinstance(w, TrainWidget)


def test_unrolled_network_for_an_operator(make_napari_viewer, wait_idle, notes):
    """The unrolled task: the operator's own form and a noise level; the network is at once
    the weights choice of its method for that operator, and runs there."""
    from napari_invrec._widgets.train import UNROLLED_ARCHS, TrainWidget
    from napari_invrec.core.models import read_manifest

    viewer = make_napari_viewer()
    w = TrainWidget(viewer)
    assert not w.op_panel.visible
    w.task.value = "unrolled"
    assert tuple(w.arch.choices) == UNROLLED_ARCHS and w.arch.value == "learned-admm"
    # phase retrieval, the one non-linear operator with a network of its own (unrolled-phase)
    assert {"lensless", "phase"} <= set(w.op_panel.operator.choices)
    w.op_panel.operator.value = "blur"
    w.op_panel.form.set_values({"sigma": 1.5})
    _set(w, source="phantoms", steps=20, batch=4, patch=32, net_width=8, lr="0.002",
         noise_sigma=0.02, weights_name="gui-ladmm")
    w.train()
    wait_idle(w, 60000)
    e = read_manifest()["gui-ladmm"]
    assert e.task == "unrolled" and e.architecture == "learned-admm"
    assert e.operator["operator"] == "blur" and e.operator["params"]["sigma"] == 1.5
    assert "--operator blur" in e.train_command and "--noise-sigma 0.02" in e.train_command
    assert any("gui-ladmm" in n and "learned-admm for blur" in n for n in notes())
    x = np.zeros((32, 32), np.float32)
    x[8:24, 8:24] = 1.0
    op = api.make_operator("blur", x.shape, sigma=1.5)
    res = api.reconstruct(api.simulate(x, op, sigma=0.02, seed=0), op, "learned-admm",
                          weights="gui-ladmm")
    assert res.x.shape == (32, 32) and np.isfinite(res.x).all()
    w.task.value = "denoiser"
    assert not w.op_panel.visible and list(w.arch.choices) == ["drunet", "dncnn"]


@pytest.mark.parametrize("arch", ["cgan", "swinir"])
def test_end_to_end_network_for_an_operator(make_napari_viewer, wait_idle, notes, arch):
    """The end-to-end task: operator form, noise level and the network's input; the
    network (here the conditional GAN and the transformer) is at once the weights choice of
    its method for that operator, and runs there on the input it was trained with."""
    from napari_invrec._widgets.train import END_TO_END_ARCHS, TrainWidget
    from napari_invrec.core.models import read_manifest

    viewer = make_napari_viewer()
    w = TrainWidget(viewer)
    w.task.value = "end-to-end"
    assert tuple(w.arch.choices) == END_TO_END_ARCHS and w.arch.value == "unet"
    shown = [not x.native.isHidden() for x in (w.op_panel, w.init, w.supervision)]
    assert shown == [True, True, False]
    w.op_panel.operator.value = "inpaint"
    w.op_panel.form.set_values({"keep": 0.5})
    name = f"gui-{arch}"
    _set(w, arch=arch, source="phantoms", steps=10, batch=4, patch=32, net_width=8,
         lr="0.002", noise_sigma=0.01, init="pinv", weights_name=name)
    w.train()
    wait_idle(w, 60000)
    e = read_manifest()[name]
    assert e.task == "end-to-end" and e.architecture == arch
    assert e.operator["operator"] == "inpaint" and e.metrics["init"] == "pinv"
    assert "--init pinv" in e.train_command
    assert any(name in n and f"{arch} for inpaint" in n for n in notes())
    x = np.zeros((40, 40), np.float32)
    x[8:24, 8:30] = 1.0
    op = api.make_operator("inpaint", x.shape, keep=0.5)
    y = api.simulate(x, op, sigma=0.01, seed=0)
    res = api.reconstruct(y, op, arch, weights=name)
    assert res.x.shape == x.shape and np.isfinite(res.x).all()
    np.testing.assert_allclose(res.iterates[0], api.reconstruct(y, op, "min-norm").x,
                               atol=1e-5)


def test_dirac_network_for_inpainting(make_napari_viewer, wait_idle, notes):
    """The dirac task: only the schedule operators, the dirac network; the weights are at
    once the dirac method's choice for inpainting and run there."""
    from napari_invrec._widgets.train import TrainWidget
    from napari_invrec.core.models import read_manifest

    viewer = make_napari_viewer()
    w = TrainWidget(viewer)
    w.op_panel.operator.value = "mri"
    w.task.value = "dirac"
    assert tuple(w.arch.choices) == ("dirac",) and w.op_panel.operator.value == "blur"
    w.op_panel.operator.value = "inpaint"
    _set(w, source="phantoms", steps=10, batch=4, patch=32, net_width=8, lr="0.002",
         noise_sigma=0.01, weights_name="gui-dirac")
    w.train()
    wait_idle(w, 60000)
    e = read_manifest()["gui-dirac"]
    assert e.task == "dirac" and e.architecture == "dirac"
    assert e.operator["operator"] == "inpaint" and "--task dirac" in e.train_command
    assert any("gui-dirac" in n and "dirac for inpaint" in n for n in notes())
    x = np.zeros((40, 40), np.float32)
    x[8:24, 8:30] = 1.0
    op = api.make_operator("inpaint", x.shape, keep=0.5)
    res = api.reconstruct(api.simulate(x, op, sigma=0.01, seed=0), op, "dirac",
                          weights="gui-dirac", steps=4)
    assert res.steps == [1, 2, 3, 4] and np.isfinite(res.x).all()


def test_mri_network_with_a_learned_sampling_pattern(make_napari_viewer, wait_idle, notes):
    """The acquisition task: varnet on single-coil MRI, its pattern learned with it; the
    weights carry the pattern they were tuned to, at exactly the acceleration's budget."""
    from napari_invrec._widgets.train import ACQUISITION_ARCHS, TrainWidget
    from napari_invrec.core.models import read_manifest
    from napari_invrec.core.operators.mri import n_columns

    viewer = make_napari_viewer()
    w = TrainWidget(viewer)
    w.task.value = "acquisition"
    assert tuple(w.arch.choices) == ACQUISITION_ARCHS and not w.op_panel.native.isHidden()
    assert w.op_panel.operator.value == "mri"
    w.op_panel.form.set_values({"acceleration": 4.0})
    _set(w, source="phantoms", steps=6, batch=2, patch=32, net_width=4, lr="0.002",
         noise_sigma=0.01, weights_name="gui-loupe")
    w.train()
    wait_idle(w, 60000)
    e = read_manifest()["gui-loupe"]
    assert e.task == "unrolled" and e.architecture == "varnet"
    cols = np.asarray(e.operator["params"]["mask_array"], dtype=bool)
    assert cols.shape == (32,) and cols.sum() == n_columns(32, 4)
    assert "--task acquisition" in e.train_command
    assert any("gui-loupe" in n for n in notes())
    x = np.zeros((32, 32), np.float32)
    x[8:24, 8:24] = 1.0
    op = api.make_operator("mri", x.shape, mask_array=cols)
    res = api.reconstruct(api.simulate(x, op, sigma=0.01, seed=0), op, "varnet",
                          weights="gui-loupe")
    assert res.x.shape == (32, 32) and np.isfinite(res.x).all()


def test_unrolled_network_from_measurements_only(make_napari_viewer, wait_idle):
    """'learn from: measurements only' trains by SSDU: the weights end with a
    data-consistency step and record how they were trained."""
    from napari_invrec._widgets.train import TrainWidget
    from napari_invrec.core.models import read_manifest

    viewer = make_napari_viewer()
    w = TrainWidget(viewer)
    w.task.value = "unrolled"
    assert not w.supervision.native.isHidden()
    w.arch.value = "varnet"
    w.op_panel.operator.value = "mri"
    assert w.split.native.isHidden() and w.masks.native.isHidden()  # supervised
    assert w.split_samples.native.isHidden()
    w.supervision.value = "ssdu"
    assert not w.split.native.isHidden() and not w.masks.native.isHidden()
    assert not w.split_samples.native.isHidden()
    _set(w, source="phantoms", steps=4, batch=2, patch=32, net_width=4, lr="0.002",
         weights_name="gui-ssdu", split=0.3, masks=2, split_samples=True)
    w.train()
    wait_idle(w, 60000)
    e = read_manifest()["gui-ssdu"]
    assert e.training == "ssdu" and e.kwargs["final_dc"] is True
    assert e.kwargs["complex_images"] is True and "--supervision ssdu" in e.train_command
    assert "--split 0.3 --masks 2 --split-samples" in e.train_command
    w.task.value = "denoiser"
    assert w.supervision.native.isHidden() and w.split.native.isHidden()
    assert w.masks.native.isHidden()


def test_phase_network_with_learned_coded_masks(make_napari_viewer, wait_idle):
    """The acquisition task on phase retrieval: the dock offers the phase network only, the
    weights record the learned masks (in their sidecar), and Simulate/Reconstruct measure
    through them."""
    from napari_invrec._widgets.train import PHASE_ARCHS, TrainWidget
    from napari_invrec.core.models import read_manifest

    viewer = make_napari_viewer()
    w = TrainWidget(viewer)
    w.task.value = "acquisition"
    w.op_panel.operator.value = "phase"
    assert tuple(w.arch.choices) == PHASE_ARCHS
    w.op_panel.form.set_values({"mode": "coded", "n_patterns": 2})
    _set(w, source="phantoms", steps=2, batch=2, patch=16, net_width=4, lr="0.002",
         noise_sigma=0.01, weights_name="gui-coded")
    w.train()
    wait_idle(w, 60000)
    e = read_manifest()["gui-coded"]
    assert e.task == "unrolled" and e.architecture == "unrolled-phase"
    params = e.operator["params"]
    assert params["mask"] == "learned" and Path(params["design"]).is_file()
    x = np.zeros((16, 16), np.float32)
    x[4:12, 4:12] = 1.0
    op = api.make_operator("phase", x.shape, **params)
    res = api.reconstruct(api.simulate(x, op, sigma=0.01, seed=0), op, "unrolled-phase",
                          weights="gui-coded")
    assert res.x.shape == (16, 16) and np.isfinite(res.x).all()
    # back to a task whose networks start from a linear A^H y: not phase retrieval
    w.task.value = "end-to-end"
    assert w.op_panel.operator.value != "phase"
