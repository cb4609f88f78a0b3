"""The first screen of ``make run``: the image, room for the canvas, a method that helps."""

from __future__ import annotations

import numpy as np

from napari_invrec._widgets.launch import MENU_ONLY, TABBED, open_viewer


def test_first_screen_leaves_the_canvas_room_and_the_default_run_improves(qtbot, wait_idle):
    viewer = open_viewer(show=True)
    try:
        win = viewer.window._qt_window
        win.resize(1280, 1024)
        qtbot.wait(50)
        # the canvas keeps at least a third of the width at 1280 px (it was 0 px with five
        # docks in one column), and the window still fits the screen
        assert viewer.window._qt_viewer.canvas.native.width() >= 1280 // 3
        assert win.minimumSizeHint().width() <= 1280 and win.minimumSizeHint().height() <= 1024
        docked = " ".join(viewer.window._dock_widgets)
        assert all(name in docked for name in TABBED)
        assert not any(name in docked for name in MENU_ONLY)
        assert any(lay.visible and lay.data.ndim == 2 for lay in viewer.layers)

        _, rec = viewer.window.add_plugin_dock_widget("napari-invrec", "Reconstruct")
        assert rec.method.value == "tv-fista"
        assert rec.reference.value is not None
        measurement = rec.measurement.value
        before = np.array(measurement.data, copy=True)
        rec.run()
        wait_idle(rec, timeout=120000)
        assert rec.runs, rec.status.value
        psnr = rec.runs[-1]["metrics"]["psnr"]
        ref = np.asarray(rec.reference.value.data, dtype=np.float64)
        mse = np.mean((np.asarray(before, dtype=np.float64) - ref) ** 2)
        measured = 10 * np.log10((ref.max() - ref.min()) ** 2 / mse)
        assert psnr > measured + 3.0  # deblurring gains dB over the blurred measurement
        np.testing.assert_array_equal(measurement.data, before)  # input untouched
        # the iterate slider ends on the last stored step
        history = viewer.layers[rec.runs[-1]["layers"][1]]
        assert viewer.dims.current_step[0] == history.data.shape[0] - 1
    finally:
        viewer.close()
