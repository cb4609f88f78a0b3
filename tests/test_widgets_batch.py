"""GUI tests of "Batch folder..." in the Reconstruct dock: a folder sent to the batch engine."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from napari_invrec import api

pytestmark = pytest.mark.gui

SIZE = 48


@pytest.fixture()
def setup(make_napari_viewer, tmp_path):
    """A viewer with a simulated measurement (its operator drives the batch), the dock, and a
    folder of 4 measurements of the same size."""
    from napari_invrec._widgets.reconstruct import ReconstructWidget
    from napari_invrec.core.data import shepp_logan
    from napari_invrec.core.operators import NoiseParams
    from napari_invrec.engine.layers import measurement_layer

    x = shepp_logan(SIZE)
    op = api.make_operator("blur", x.shape, sigma=1.5)
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(4):
        tifffile.imwrite(folder / f"y{i}.tif", api.simulate(x, op, sigma=0.02, seed=i))
    viewer = make_napari_viewer()
    y = api.simulate(x, op, sigma=0.02, seed=9)
    data, kw, _ = measurement_layer(y, op, NoiseParams(sigma=0.02, seed=9), name="y")
    viewer.add_image(data, **kw)
    dock = ReconstructWidget(viewer)
    dock.method.value = "tv-fista"
    return viewer, dock, folder


def _snapshot(viewer):
    return [(layer.name, np.array(layer.data, copy=True)) for layer in viewer.layers]


def test_batch_folder_writes_outputs_and_touches_no_layer(setup, tmp_path, wait_idle, notes):
    from napari_invrec._widgets._batch import start_batch
    from napari_invrec.formats.saved import read_saved

    viewer, dock, folder = setup
    dock.method_form.set_values({"iters": 8, "lam": 0.01})
    before = _snapshot(viewer)
    worker = start_batch(dock, folder, tmp_path / "out")
    assert worker is not None and not dock.run_button.enabled
    wait_idle(dock)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [f"y{i}.tif" for i in
                                                                    range(4)]
    prov = read_saved(tmp_path / "out" / "y0.tif").invrec["provenance"]
    assert prov["method"] == "tv-fista" and prov["params"]["iters"] == 8
    assert any("batch: 4 done of 4 inputs" in n for n in notes())
    after = _snapshot(viewer)
    assert [n for n, _ in after] == [n for n, _ in before]
    assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(before, after))
    assert dock.progress.value == dock.progress.max == 4 and dock.run_button.enabled


def test_batch_folder_cancel(setup, tmp_path, wait_idle, notes):
    from napari_invrec._widgets._batch import start_batch

    viewer, dock, folder = setup
    dock.method_form.set_values({"iters": 100000})
    n_layers = len(viewer.layers)
    assert start_batch(dock, folder, tmp_path / "out") is not None
    dock.cancel()
    wait_idle(dock, timeout=20000)
    assert any("batch cancelled after" in n for n in notes())
    assert not list((tmp_path / "out").iterdir())
    assert len(viewer.layers) == n_layers


def test_batch_folder_refusals_say_why(setup, tmp_path, notes):
    from napari_invrec._widgets._batch import start_batch

    viewer, dock, folder = setup
    (tmp_path / "file").write_text("x")
    assert start_batch(dock, folder, tmp_path / "file") is None
    assert start_batch(dock, tmp_path / "missing", tmp_path / "out") is None
    text = notes()
    assert any("batch: output folder" in n and "is a file" in n for n in text)
    assert any("does not exist" in n for n in text)
    assert not dock.controller.running


def test_batch_button_asks_for_the_folders(setup, tmp_path, wait_idle, monkeypatch):
    from qtpy.QtWidgets import QFileDialog

    viewer, dock, folder = setup
    dock.method_form.set_values({"iters": 4})
    answers = iter([str(folder), str(tmp_path / "out")])
    monkeypatch.setattr(QFileDialog, "getExistingDirectory",
                        staticmethod(lambda *a, **k: next(answers)))
    dock.batch_button.clicked()
    wait_idle(dock)
    assert len(list((tmp_path / "out").iterdir())) == 4
