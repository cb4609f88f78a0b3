"""GUI tests of the generated parameter forms and the Simulate dock widget."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from napari_invrec import api
from napari_invrec.core.errors import InputError
from napari_invrec.core.params import param

pytestmark = pytest.mark.gui


@dataclasses.dataclass
class _Demo:
    """A params dataclass exercising every field kind."""

    mode: str = param("a", "mode", choices=("a", "b"))
    lam: float = param(1e-4, "weight", min=0.0, max=10.0)
    iters: int = param(25, "iterations", min=1, max=500, step=5)
    flag: bool = param(True, "a switch")
    width: float = param(3.0, "only for mode b", min=0.5, when={"mode": "b"})
    shape: tuple = param((3, 5), "a tuple")
    hidden: object = param(None, "an array", gui=False)


def _shown(widget) -> bool:
    return not widget.native.isHidden()


def test_form_renders_defaults_and_follows_when(qtbot):
    from magicgui.widgets import CheckBox, ComboBox, SpinBox

    from napari_invrec._widgets.forms import ParamsForm

    form = ParamsForm(_Demo)
    qtbot.addWidget(form.native)
    assert form.field_names == ["mode", "lam", "iters", "flag", "width", "shape"]
    assert isinstance(form.widget("mode"), ComboBox)
    assert isinstance(form.widget("iters"), SpinBox)
    assert isinstance(form.widget("flag"), CheckBox)
    assert (form.widget("iters").min, form.widget("iters").max) == (1, 500)
    assert form.widget("lam").tooltip.startswith("weight")
    # width applies only to mode "b": hidden, and left out of values (its default applies)
    assert form.values() == {"mode": "a", "lam": 1e-4, "iters": 25, "flag": True,
                             "shape": (3, 5)}
    assert not _shown(form.widget("width"))
    form.widget("mode").value = "b"
    assert _shown(form.widget("width"))
    assert form.values()["width"] == 3.0
    form.widget("mode").value = "a"
    assert not _shown(form.widget("width"))
    assert form.params() == _Demo()


def test_form_parses_small_floats_and_reports_bad_text(qtbot):
    from napari_invrec._widgets.forms import ParamsForm

    form = ParamsForm(_Demo)
    qtbot.addWidget(form.native)
    form.widget("lam").value = "2.5e-6"
    assert form.values()["lam"] == pytest.approx(2.5e-6, rel=0, abs=0)
    form.set_values({"lam": 3e-5, "iters": 40, "shape": (7, 9)})
    assert form.widget("lam").value == "3e-05"
    assert form.values()["iters"] == 40 and form.values()["shape"] == (7, 9)
    form.widget("lam").value = "abc"
    with pytest.raises(InputError, match="lam"):
        form.values()
    form.widget("lam").value = "20"
    with pytest.raises(InputError, match="maximum"):
        form.values()


# ------------------------------------------------------------------ Simulate
@pytest.fixture
def image64():
    from napari_invrec.core.data import shepp_logan

    return shepp_logan(64)


def _widget(make_napari_viewer):
    from napari_invrec._widgets.simulate import SimulateWidget

    viewer = make_napari_viewer()
    return viewer, SimulateWidget(viewer)


def test_simulate_blur_adds_measurement_and_keeps_input(make_napari_viewer, image64):
    viewer, w = _widget(make_napari_viewer)
    layer = viewer.add_image(image64.copy(), name="truth")
    before = layer.data.copy()
    w.image.value = layer
    w.op_panel.operator.value = "blur"
    w.op_panel.form.set_values({"kernel": "gaussian", "sigma": 1.5})
    w.noise_form.set_values({"model": "gaussian", "sigma": 0.02, "seed": 3})
    added = w.simulate()
    assert len(viewer.layers) == 2 and added[0] is viewer.layers[-1]
    meta = added[0].metadata["invrec"]
    assert meta["kind"] == "measurement"
    assert meta["operator"]["operator"] == "blur"
    assert meta["operator"]["params"]["sigma"] == 1.5
    assert meta["ground_truth"] == "truth"
    assert meta["noise"]["sigma"] == 0.02
    assert added[0].name.startswith("truth · blur")
    np.testing.assert_array_equal(layer.data, before)
    # the same measurement as the API gives for the same operator, noise and seed
    op = api.make_operator("blur", image64.shape, sigma=1.5)
    expected = api.simulate(image64, op, sigma=0.02, seed=3)
    np.testing.assert_allclose(added[0].data, expected, atol=1e-5)
    # and it is a blurred, noisy version: the noise has the requested std
    clean = api.simulate(image64, op, noise="none")
    assert np.std(added[0].data - clean) == pytest.approx(0.02, rel=0.1)


def test_simulate_mri_keeps_complex_data_and_adds_mask(make_napari_viewer, image64):
    viewer, w = _widget(make_napari_viewer)
    layer = viewer.add_image(image64, name="truth")
    w.image.value = layer
    w.op_panel.operator.value = "mri"
    w.op_panel.form.set_values({"acceleration": 4.0})
    added = w.simulate()
    assert len(added) == 2 and len(viewer.layers) == 3
    meas, mask = added
    y = meas.metadata["invrec"]["complex_data"]
    assert np.iscomplexobj(y) and y.shape == (64, 64)
    np.testing.assert_allclose(meas.data, np.log1p(np.abs(y)), rtol=1e-5)
    # the mask layer marks exactly the sampled k-space (nonzero) entries, about 1/4 of them
    assert set(np.unique(mask.data)) <= {0.0, 1.0}
    assert np.all(y[mask.data == 0] == 0)
    assert 0.15 < mask.data.mean() < 0.35


@pytest.mark.skipif(not __import__("napari_invrec.core.operators.mri", fromlist=["x"])
                    .LEARNED_DESIGN.is_file(), reason="no shipped learned sampling design")
def test_simulate_mri_with_the_learned_pattern(make_napari_viewer, image64):
    from napari_invrec.core.operators.mri import MRIParams, column_mask, n_columns

    viewer, w = _widget(make_napari_viewer)
    w.image.value = viewer.add_image(image64, name="truth")
    w.op_panel.operator.value = "mri"
    w.op_panel.form.set_values({"acceleration": 8.0, "pattern": "learned"})
    assert not _shown(w.op_panel.form.widget("seed"))  # no seed: the pattern is fixed
    meas, mask = w.simulate()
    cols = mask.data[0] > 0
    # exactly the acceleration's budget, the learned design's columns, every row alike
    assert cols.sum() == n_columns(64, 8, round(0.08 * 64))
    np.testing.assert_array_equal(cols, column_mask(MRIParams(acceleration=8,
                                                              pattern="learned"), 64))
    assert np.all(mask.data == mask.data[0])
    assert meas.metadata["invrec"]["operator"]["params"]["pattern"] == "learned"


@pytest.mark.parametrize("case, expected", [
    ("rgb", "RGB"),
    ("nan", "NaN"),
    ("integer", "integer"),
])
def test_simulate_refuses_bad_images(make_napari_viewer, notes, case, expected):
    viewer, w = _widget(make_napari_viewer)
    rng = np.random.default_rng(0)
    data = {"rgb": rng.random((64, 64, 3)).astype(np.float32),
            "nan": np.where(np.eye(64) > 0, np.nan, 0.5).astype(np.float32),
            "integer": rng.integers(0, 255, (64, 64)).astype(np.uint8)}[case]
    layer = viewer.add_image(data, name="bad")
    w.image.value = layer
    assert w.simulate() is None
    assert len(viewer.layers) == 1
    assert any(expected in m for m in notes()), notes()
    assert expected in w.status.value


def test_simulate_rescales_integer_images_when_asked(make_napari_viewer):
    viewer, w = _widget(make_napari_viewer)
    data = np.full((64, 64), 200, dtype=np.uint8)
    viewer.add_image(data, name="counts")
    w.rescale.value = True
    w.op_panel.operator.value = "denoise"
    w.noise_form.set_values({"model": "none"})
    added = w.simulate()
    np.testing.assert_allclose(added[0].data, 200 / 255, atol=1e-6)


def test_simulate_custom_mask_from_layers(make_napari_viewer, image64, notes):
    viewer, w = _widget(make_napari_viewer)
    viewer.add_image(image64, name="truth")
    w.op_panel.operator.value = "inpaint"
    w.op_panel.form.set_values({"mask": "custom"})
    w.noise_form.set_values({"model": "none"})
    w.show()
    assert _shown(w.op_panel.mask_layer) and not _shown(w.op_panel.kernel_layer)
    # no mask layer picked
    assert w.simulate() is None and "mask" in notes()[-1]
    # a Labels layer of the wrong shape
    wrong = viewer.add_labels(np.ones((32, 32), dtype=np.int32), name="wrong")
    w.op_panel.mask_layer.value = wrong
    assert w.simulate() is None and "shape" in notes()[-1]
    # an empty Shapes layer: nothing drawn
    empty = viewer.add_shapes(name="nothing")
    w.op_panel.mask_layer.value = empty
    assert w.simulate() is None and "no shapes" in notes()[-1]
    n_layers = len(viewer.layers)
    # a rectangle drawn on a Shapes layer: only its inside is measured
    rect = viewer.add_shapes([np.array([[10, 10], [10, 40], [40, 40], [40, 10]])],
                             shape_type="rectangle", name="rect")
    w.op_panel.mask_layer.value = rect
    meas = w.simulate()[0]
    assert len(viewer.layers) == n_layers + 2
    inside = np.zeros((64, 64), bool)
    inside[12:38, 12:38] = True
    np.testing.assert_allclose(meas.data[inside], image64[inside], atol=1e-6)
    assert np.all(meas.data[:8] == 0) and np.all(meas.data[:, 45:] == 0)
    assert meas.metadata["invrec"]["arrays"]["mask_array"].shape == (64, 64)
