"""Watching a run in napari: solver speed against headless, and GUI event-loop stalls.

A 5 ms ``QTimer`` heartbeat runs on the GUI thread while the Reconstruct dock runs ``tv-fista``
on Gaussian-blurred atoms (sigma 2, noise 0.02) at 256 and 1024 px, then ``langevin-tv`` (a
stochastic method: std and samples layers) at 256 px. Reported, each against its target:

* ``ratio``: solver speed inside napari over headless speed, per step, at the same torch thread
  count (the dock's :func:`~napari_invrec.engine.device.gui_thread_budget`), with the same
  inputs (reference, normalisation); per-step times are taken in the thread that runs the
  solver, between its first and last step. The headless run is drained in this process with the
  viewer idle, once before and once after the napari run (their mean is the baseline, so that
  a change of machine load during the section shows in both). Target >= 0.8.
* ``streaming stall``: the longest gap between beats while iterates stream (from the second
  preview to the last step). Target < 33 ms (a 30 Hz display never waits longer).
* ``start stall``: Run (which adds the live layer and the hidden placeholder of the iterate
  history, a 3-D layer) and the first preview's draw (the first
  draw of a new layer compiles its shaders): once per run, reported apart.
* ``end-of-run stall``: the longest gap from the last step until every result layer is shown.
  Target < 50 ms.
* ``previews/s``: live-layer updates drawn per second while streaming (the preview's rate).

The section runs once under this environment's Qt binding (PyQt6 from ``make``) and once more
under PyQt5 when ``make venv-qt5`` has built ``.venv-qt5`` (the same packages with PyQt5, as
``napari[all]`` and many lab installs bring): each run prints its binding and OpenGL renderer.

Two baselines are measured in the same session, with no solver running: ``frame``, one
256 px image-layer update drawn on the canvas (median of 5, the floor of any live preview on
this display; the table's ``frame`` column is the same at each run's image size, beside the
measurement layer, as the live layer is), and ``add layer``, the longest stall of napari
adding one 2-D image layer with explicit contrast limits (median of 3, the floor of showing
any new layer), and of adding one ``150 x 256 x 256`` stack to a viewer of 2-D layers (napari
then also builds a dims slider: the floor of showing an iterate history).
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import time

INTERVAL_MS = 5
RATIO_TARGET = 0.8
STREAM_TARGET_MS = 33.0
END_TARGET_MS = 50.0
SIZES = {256: 300, 1024: 20}  # image size -> tv-fista iterations
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QT5_VENV = ".venv-qt5"  # the PyQt5 environment `make venv-qt5` builds beside .venv


def _run_loop(until, timeout: float = 300.0) -> list[float]:
    """Run the Qt event loop with a heartbeat until ``until()`` is true; beat times."""
    from qtpy.QtCore import QEventLoop, QTimer

    beats: list[float] = [time.perf_counter()]
    stop_at = beats[0] + timeout
    loop = QEventLoop()
    timer = QTimer()
    timer.setInterval(INTERVAL_MS)

    def beat() -> None:
        beats.append(time.perf_counter())
        if until() or beats[-1] > stop_at:
            loop.quit()

    timer.timeout.connect(beat)
    timer.start()
    loop.exec_() if hasattr(loop, "exec_") else loop.exec()
    timer.stop()
    return beats


def _settle(seconds: float) -> None:
    end = time.perf_counter() + seconds
    _run_loop(lambda: time.perf_counter() > end)


def _max_gap(beats: list[float], t0: float = -1e18, t1: float = 1e18) -> float:
    """Longest gap between beats (less the interval) that ends after ``t0`` and begins before
    ``t1``."""
    gaps = [1e3 * (b - a) - INTERVAL_MS for a, b in zip(beats, beats[1:]) if b > t0 and a < t1]
    return max(gaps) if gaps else 0.0


def _timed(run, times: list[float]):
    """``run`` (the engine's run function) recording ``perf_counter`` at every step."""

    def gen(*args, **kwargs):
        inner = run(*args, **kwargs)
        while True:
            try:
                prog = next(inner)
            except StopIteration as stop:
                return stop.value
            times.append(time.perf_counter())
            yield prog

    return gen


def _per_step_ms(times: list[float]) -> float:
    return 1e3 * (times[-1] - times[0]) / max(len(times) - 1, 1)


def _frame_ms(viewer, size: int = 256) -> float:
    """Median time of one ``size`` px image-layer update drawn, in this window (no solver)."""
    import numpy as np
    from qtpy.QtWidgets import QApplication

    app = QApplication.instance()
    probe = viewer.add_image(np.zeros((size, size), np.float32), name="probe",
                             contrast_limits=(0, 1))
    app.processEvents()
    frames = []
    for i in range(5):
        t = time.perf_counter()
        probe.data = np.random.default_rng(i).random((size, size), dtype=np.float32)
        app.processEvents()
        frames.append(1e3 * (time.perf_counter() - t))
    viewer.layers.remove(probe)
    _settle(0.3)
    return statistics.median(frames)


def _add_layer_ms(viewer, shape: tuple[int, ...], repeats: int) -> float:
    """Median stall of napari adding one image layer of ``shape`` (contrast limits given) to
    a viewer showing 2-D layers (a 3-D layer adds a dims slider)."""
    import numpy as np
    from qtpy.QtCore import QTimer

    img = np.random.default_rng(0).random(shape, dtype=np.float32)
    stalls = []
    for i in range(repeats):
        QTimer.singleShot(50, lambda i=i: viewer.add_image(img, name=f"add probe {i}",
                                                           contrast_limits=(0, 1)))
        end = time.perf_counter() + 0.5
        stalls.append(_max_gap(_run_loop(lambda end=end: time.perf_counter() > end)))
        viewer.layers.remove(f"add probe {i}")
        _settle(0.3)
    return statistics.median(stalls)


def _measurement(viewer, size: int):
    """Ground truth and blurred measurement layers of ``size`` px atoms; the measurement layer."""
    from napari.layers import Layer

    from napari_invrec import api
    from napari_invrec.core.data import atoms
    from napari_invrec.core.operators import NoiseParams
    from napari_invrec.engine.layers import measurement_layer

    truth = atoms(size)
    op = api.make_operator("blur", truth.shape, kernel="gaussian", sigma=2.0)
    y = api.simulate(truth, op, sigma=0.02, seed=0)
    gt = f"atoms {size} (ground truth)"
    viewer.add_image(truth, name=gt, colormap="gray")
    layer = Layer.create(*measurement_layer(y, op, NoiseParams(sigma=0.02, seed=0),
                                            name=f"atoms {size} · blur", ground_truth=gt))
    return viewer.add_layer(layer)


def _headless_ms(widget) -> float:
    """The dock's current run drained in this thread, viewer idle: ms per step."""
    import numpy as np

    from napari_invrec.engine.device import gui_thread_budget
    from napari_invrec.engine.runner import run

    y = np.asarray(widget.measurement.value.data)
    op = widget._operator(y.shape)
    times: list[float] = []
    for _ in _timed(run, times)(y, op, str(widget.method.value), widget.method_form.params(),
                                reference=widget._reference(op.shape, None),
                                threads=gui_thread_budget(), normalise=widget.units.mode):
        pass
    return _per_step_ms(times)


def _napari_run(widget) -> dict:
    """Run the dock; per-step time in the worker, stalls and live updates on the GUI thread."""
    from napari_invrec._widgets import reconstruct as rec

    viewer = widget.viewer
    times: list[float] = []
    marks: dict = {"first": None, "last": None, "updates": 0}

    def count(*_):  # a preview set on the live layer (the first one replaces its blank)
        marks["updates"] += 1
        if marks["updates"] == 2:
            marks["first"] = time.perf_counter()

    def on_inserted(event) -> None:
        if event.value.name.endswith("[live]"):
            event.value.events.set_data.connect(count)

    original = rec.run_engine
    rec.run_engine = _timed(original, times)
    viewer.layers.events.inserted.connect(on_inserted)
    try:
        t0 = time.perf_counter()
        worker = widget.run()
        run_call = 1e3 * (time.perf_counter() - t0)
        worker.yielded.connect(lambda _: marks.update(last=time.perf_counter()))
        beats = _run_loop(lambda: not widget.controller.running)
    finally:
        rec.run_engine = original
        viewer.layers.events.inserted.disconnect(on_inserted)
    first, last = marks["first"] or beats[0], marks["last"] or beats[-1]
    # streaming: the gaps that begin once the first preview is drawn; before that (Run adding
    # the live layer, the first draw of its visual) is the start stall
    streaming = [1e3 * (b - a) - INTERVAL_MS for a, b in zip(beats, beats[1:])
                 if first <= a < last]
    return {"ms": _per_step_ms(times), "steps": len(times),
            "start": max(run_call, _max_gap(beats, -1e18, first)),
            "stream": max(streaming, default=0.0), "end": _max_gap(beats, last),
            "rate": (marks["updates"] - 2) / max(last - first, 1e-9)}


def _clear_results(viewer) -> None:
    for layer in list(viewer.layers):
        viewer.layers.remove(layer)
    _settle(0.3)


def measure() -> dict:
    import napari

    from napari_invrec._widgets.reconstruct import ReconstructWidget
    from napari_invrec.engine.device import gui_thread_budget

    viewer = napari.Viewer(show=True)
    widget = ReconstructWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Reconstruct")
    _settle(1.0)
    import qtpy

    out: dict = {"binding": f"{qtpy.API_NAME} {qtpy.QT_VERSION}", "gl": _gl_renderer(viewer),
                 "frame_ms": _frame_ms(viewer), "add_ms": _add_layer_ms(viewer, (256, 256), 3),
                 "add3_ms": _add_layer_ms(viewer, (150, 256, 256), 3),
                 "threads": gui_thread_budget(), "sizes": {}}
    for size, iters in SIZES.items():
        layer = _measurement(viewer, size)
        widget.measurement.value = layer
        widget.method.value = "tv-fista"
        widget.method_form.set_values({"iters": iters})
        frame = _frame_ms(viewer, size)
        before = _headless_ms(widget)
        r = _napari_run(widget)
        r["headless"] = 0.5 * (before + _headless_ms(widget))
        r["iters"] = iters
        r["frame"] = frame
        out["sizes"][size] = r
        _clear_results(viewer)
    layer = _measurement(viewer, 256)
    widget.measurement.value = layer
    widget.method.value = "langevin-tv"
    widget.method_form.set_values({"iters": 60, "burn_in": 20, "n_samples": 8})
    out["langevin"] = _napari_run(widget)
    out["langevin"]["layers"] = len(viewer.layers) - 2
    viewer.close()
    return out


def _verdict(ok: bool) -> str:
    return "meets" if ok else "MISSES"


def _gl_renderer(viewer) -> str:
    """The OpenGL renderer the viewer's canvas draws with (e.g. llvmpipe under Xvfb)."""
    try:
        from vispy.gloo import gl

        return str(gl.glGetParameter(gl.GL_RENDERER))
    except Exception as exc:  # noqa: BLE001 - informative only
        return f"unknown ({type(exc).__name__})"


def _interpreters() -> list[str]:
    """This interpreter, then the PyQt5 environment's when ``make venv-qt5`` has built it."""
    found = [sys.executable]
    qt5 = os.path.join(REPO, QT5_VENV, "bin", "python")
    if os.path.exists(qt5) and os.path.realpath(os.path.dirname(qt5)) != \
            os.path.realpath(os.path.dirname(sys.executable)):
        found.append(qt5)
    else:
        print(f"== gui under PyQt5: skipped (no {QT5_VENV}; `make venv-qt5` builds one)")
    return found


def main() -> None:
    if "--inner" not in sys.argv:
        xvfb = [] if os.environ.get("DISPLAY") else ["xvfb-run", "-a", "-s",
                                                     "-screen 0 1920x1080x24"]
        if xvfb and shutil.which("xvfb-run") is None:
            print("== gui: skipped (no display and no xvfb-run; install xvfb)")
            return
        for python in _interpreters():
            subprocess.run([*xvfb, python, os.path.abspath(__file__), "--inner"], check=False)
        return
    load = open("/proc/loadavg").read().split()[0] if os.path.exists("/proc/loadavg") else "?"
    r = measure()
    print(f"== gui: watching tv-fista in napari under {r['binding']} (OpenGL: {r['gl']}; "
          f"Gaussian blur of atoms, torch threads {r['threads']}, load average {load})")
    print(f"baselines (viewer idle): frame {r['frame_ms']:.1f} ms (one 256 px layer update "
          f"drawn)   add layer {r['add_ms']:.1f} ms (napari adding one 2-D layer), "
          f"{r['add3_ms']:.1f} ms (a 150x256x256 stack, the first 3-D layer)")
    print(f"{'size':>5} {'iters':>5} {'headless':>9} {'napari':>9} {'ratio':>6}  "
          f"{'frame':>8}  {'streaming stall':>16}  {'end-of-run stall':>17}  {'previews/s':>10}  "
          f"{'start stall':>11}")
    for size, s in r["sizes"].items():
        ratio = s["headless"] / max(s["ms"], 1e-9)
        print(f"{size:>5} {s['iters']:>5} {s['headless']:>6.1f} ms {s['ms']:>6.1f} ms "
              f"{ratio:>6.2f}  {s['frame']:>5.1f} ms  {s['stream']:>13.1f} ms  "
              f"{s['end']:>14.1f} ms  {s['rate']:>10.1f}  {s['start']:>8.1f} ms")
    lg = r["langevin"]
    print(f"langevin-tv 256 px, 8 samples ({lg['layers']} result layers: result, iterates, "
          f"std, samples): streaming stall {lg['stream']:.1f} ms, end-of-run stall "
          f"{lg['end']:.1f} ms")
    print("(start stall: Run adding the live layer and the history's placeholder, and the first "
          "draw, once per run; compare with 'add layer')")
    ratios = [s["headless"] / max(s["ms"], 1e-9) for s in r["sizes"].values()]
    stream = max([s["stream"] for s in r["sizes"].values()] + [lg["stream"]])
    end = max([s["end"] for s in r["sizes"].values()] + [lg["end"]])
    print(f"targets: speed ratio >= {RATIO_TARGET} (worst {min(ratios):.2f}): "
          f"{_verdict(min(ratios) >= RATIO_TARGET)}   streaming stall < {STREAM_TARGET_MS:.0f} "
          f"ms (worst {stream:.1f}): {_verdict(stream < STREAM_TARGET_MS)}   end-of-run stall "
          f"< {END_TARGET_MS:.0f} ms (worst {end:.1f}): {_verdict(end < END_TARGET_MS)}")


if __name__ == "__main__":
    main()
