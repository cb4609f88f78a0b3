"""The first screen of ``make run``, after one press of Run, at the screen sizes users have.

``xvfb-run -a -s "-screen 0 1920x1080x24" .venv/bin/python scripts/screenshot_start.py``
writes ``screenshots/napari_invrec_start_1280x1024.png`` and ``..._1920x1080.png`` (one
process per size: a fresh window, as a user gets) and prints the canvas width and the run.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SIZES = ((1280, 1024), (1920, 1080))


def shoot(width: int, height: int, out: Path) -> None:
    """Open the viewer as ``make run`` does, resize, press Run, wait, save the window."""
    from qtpy.QtWidgets import QApplication

    from napari_invrec._widgets.launch import open_viewer

    viewer = open_viewer()
    win = viewer.window._qt_window
    win.resize(width, height)
    win.showNormal()
    app = QApplication.instance()
    for _ in range(20):
        app.processEvents()
        time.sleep(0.02)
    _, rec = viewer.window.add_plugin_dock_widget("napari-invrec", "Reconstruct")
    rec.run_button.clicked.emit(True)
    while rec.controller.running:
        app.processEvents()
        time.sleep(0.02)
    viewer.layers["atoms (ground truth)"].visible = False
    viewer.reset_view()
    for _ in range(20):
        app.processEvents()
        time.sleep(0.02)
    canvas = viewer.window._qt_viewer.canvas.native.width()
    print(f"{width}x{height}: canvas {canvas} px wide; {rec.status.value}")
    win.grab().save(str(out))
    viewer.close()


def main() -> None:
    if len(sys.argv) == 3:
        w, h = int(sys.argv[1]), int(sys.argv[2])
        shoot(w, h, ROOT / "screenshots" / f"napari_invrec_start_{w}x{h}.png")
        return
    for w, h in SIZES:
        subprocess.run([sys.executable, __file__, str(w), str(h)], check=True)


if __name__ == "__main__":
    main()
