"""A z-stack deconvolved in 3-D, in napari's 3-D view next to its measurement.

``xvfb-run -a -s "-screen 0 1920x1080x24" .venv/bin/python scripts/screenshot_volume.py``
writes ``screenshots/volume_3d_1920x1080.png`` and ``..._1280x1024.png`` (one process per
size). The data is the plugin's ``cells-zstack`` sample (32 x 128 x 128, 3-D Gaussian PSF
with sigma 1.5 in-plane and 3 along z, Poisson noise); the Reconstruct dock runs it as a whole
volume with ``richardson-lucy`` (30 iterations); the canvas shows the measurement and the
result side by side (grid mode, maximum-intensity projection, tilted so that z is visible).
Prints the run's status line.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SIZES = ((1280, 1024), (1920, 1080))


def _pump(app, seconds: float = 0.4) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        app.processEvents()
        time.sleep(0.02)


def shoot(width: int, height: int, out: Path) -> None:
    """Run the deconvolution in the dock, switch to 3-D, save the window."""
    import napari
    from qtpy.QtCore import Qt
    from qtpy.QtWidgets import QApplication

    from napari_invrec._sample_data import cells_zstack
    from napari_invrec._widgets.launch import DOCK_WIDTH

    viewer = napari.Viewer(title="napari-invrec")
    for data, kw, _ in cells_zstack():
        viewer.add_image(data, **kw)
    win = viewer.window._qt_window
    win.resize(width, height)
    win.showNormal()
    app = QApplication.instance()
    dock, rec = viewer.window.add_plugin_dock_widget("napari-invrec", "Reconstruct")
    win.resizeDocks([dock], [DOCK_WIDTH], Qt.Horizontal)
    _pump(app)
    rec.measurement.value = viewer.layers["cells · 3-D blur"]
    print(f"{width}x{height}: stack mode {rec.stack_mode.value!r}")
    rec.method.value = "richardson-lucy"
    rec.method_form.set_values({"iters": 30})
    rec.run()
    while rec.controller.running:
        app.processEvents()
        time.sleep(0.02)
    print(f"  {rec.status.value}")
    shown = ("cells · 3-D blur", "richardson-lucy · blur")
    for layer in viewer.layers:
        layer.visible = layer.name in shown
        if layer.name in shown:
            layer.rendering = "mip"
            layer.colormap = "inferno"
            layer.contrast_limits = (0.0, 0.8)
    viewer.grid.enabled = True
    viewer.grid.shape = (1, 2)
    viewer.dims.ndisplay = 3
    viewer.camera.angles = (-25.0, 40.0, 120.0)
    viewer.reset_view()
    viewer.layers.selection.active = viewer.layers["richardson-lucy · blur"]
    from napari._qt.dialogs.qt_notification import NapariQtNotification

    for toast in win.findChildren(NapariQtNotification):
        toast.close()
    _pump(app, 1.5)
    win.grab().save(str(out))
    viewer.close()


def main() -> None:
    if len(sys.argv) == 3:
        w, h = int(sys.argv[1]), int(sys.argv[2])
        shoot(w, h, ROOT / "screenshots" / f"volume_3d_{w}x{h}.png")
        return
    for w, h in SIZES:
        subprocess.run([sys.executable, __file__, str(w), str(h)], check=True)


if __name__ == "__main__":
    main()
