"""The Compare runs dock after Rank: five runs of one measurement ordered without ground truth.

``xvfb-run -a -s "-screen 0 1920x1080x24" .venv/bin/python scripts/screenshot_rank.py``
writes ``screenshots/compare_rank_1920x1080.png`` and ``..._1280x1024.png`` (one process per
size: a fresh window, as a user gets). The measurement is a held-out photograph (scikit-image's
``cell``, 128 px) with half of its pixels missing and noise; five runs are made in the
Reconstruct dock (tv-fista at three weights, pnp-admm, the adjoint), then Compare's Rank
estimates and orders them from the measurement alone. Prints the ranking line and the table.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SIZES = ((1280, 1024), (1920, 1080))
RUNS = (("tv-fista", {"lam": 3e-4, "iters": 80}), ("tv-fista", {"lam": 3e-3, "iters": 80}),
        ("tv-fista", {"lam": 3e-2, "iters": 80}), ("pnp-admm", {"iters": 30}),
        ("adjoint", {}))


def _pump(app, seconds: float = 0.4) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        app.processEvents()
        time.sleep(0.02)


def _wait(app, busy) -> None:
    while busy():
        app.processEvents()
        time.sleep(0.02)


def _measurement_layers() -> list[tuple]:
    from napari_invrec import api
    from napari_invrec.core.data.heldout import heldout_image
    from napari_invrec.core.operators import NoiseParams
    from napari_invrec.engine.layers import measurement_layer

    x = heldout_image("cell", 128)
    op = api.make_operator("inpaint", x.shape, device="cpu", keep=0.5, seed=3)
    y = api.simulate(x, op, sigma=0.03, seed=7)
    truth = (x, {"name": "cell (ground truth)", "colormap": "gray"}, "image")
    return [truth, measurement_layer(y, op, NoiseParams(sigma=0.03, seed=7),
                                     name="cell · inpaint 50 %",
                                     ground_truth="cell (ground truth)")]


def shoot(width: int, height: int, out: Path) -> None:
    """Make the runs, press Rank in Compare, wait, save the window."""
    import napari
    from qtpy.QtCore import Qt
    from qtpy.QtWidgets import QApplication

    from napari_invrec._widgets.launch import DOCK_WIDTH

    viewer = napari.Viewer(title="napari-invrec")
    for data, kw, _ in _measurement_layers():
        viewer.add_image(data, **kw)
    win = viewer.window._qt_window
    win.resize(width, height)
    win.showNormal()
    app = QApplication.instance()
    rec_dock, rec = viewer.window.add_plugin_dock_widget("napari-invrec", "Reconstruct",
                                                         tabify=True)
    cmp_dock, cmp = viewer.window.add_plugin_dock_widget("napari-invrec", "Compare runs",
                                                         tabify=True)
    win.resizeDocks([rec_dock], [DOCK_WIDTH], Qt.Horizontal)
    _pump(app)
    rec_dock.raise_()
    for method, values in RUNS:
        rec.method.value = method
        rec.method_form.set_values(values)
        rec.run()
        _wait(app, lambda: rec.controller.running)
        print(f"  {rec.status.value}")
    cmp_dock.raise_()
    _pump(app)
    t0 = time.perf_counter()
    cmp.rank.rank()
    _wait(app, lambda: cmp.rank.controller.running)
    print(f"{width}x{height}: rank took {time.perf_counter() - t0:.1f} s")
    print(f"  {cmp.rank.line.value}")
    for i in range(cmp.table.rowCount()):
        print("  | " + " | ".join(cmp.table.item(i, j).text()
                                  for j in range(cmp.table.columnCount())))
    best = cmp.rank.order[0] if cmp.rank.order else None
    for layer in viewer.layers:  # the top-ranked result on the canvas
        layer.visible = layer.name == best
    if best is not None:
        viewer.layers.selection.active = viewer.layers[best]
    viewer.reset_view()
    from napari._qt.dialogs.qt_notification import NapariQtNotification

    for toast in win.findChildren(NapariQtNotification):  # the runs' notifications
        toast.close()
    _pump(app, 1.0)
    win.grab().save(str(out))
    viewer.close()


def main() -> None:
    if len(sys.argv) == 3:
        w, h = int(sys.argv[1]), int(sys.argv[2])
        shoot(w, h, ROOT / "screenshots" / f"compare_rank_{w}x{h}.png")
        return
    for w, h in SIZES:
        subprocess.run([sys.executable, __file__, str(w), str(h)], check=True)


if __name__ == "__main__":
    main()
