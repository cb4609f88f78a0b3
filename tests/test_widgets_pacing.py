"""Watching a run costs it little and its end does not freeze the GUI (Reconstruct dock).

Structural properties, no wall-clock bounds: the result layers are added in separate turns of
the event loop, the live layer becomes the result layer (no layer is removed), the iterate
history reaches napari without a copy and with explicit contrast limits, napari's activity
progress is not opened for a run that shows its own, and GUI updates are paced by what they
cost, their repaints included.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers import reconstruct_dock

pytestmark = pytest.mark.gui


def _dock(make_napari_viewer, operator="inpaint", **op_params):
    from napari_invrec.core.data import shepp_logan

    return reconstruct_dock(make_napari_viewer(), shepp_logan(64), operator, **op_params)


def _capture_result(monkeypatch) -> list:
    """Patch the dock's engine run so that the test sees the Result it returned."""
    from napari_invrec._widgets import reconstruct as rec

    seen: list = []
    original = rec.run_engine

    def recording(*args, **kwargs):
        res = yield from original(*args, **kwargs)
        seen.append(res)
        return res

    monkeypatch.setattr(rec, "run_engine", recording)
    return seen


def test_result_layers_arrive_one_per_event_loop_turn(make_napari_viewer, qtbot, wait_idle,
                                                      monkeypatch):
    """The live layer becomes the result, the hidden history placeholder added at Run becomes
    the history, std and samples are added: each in an event-loop turn of its own."""
    from qtpy.QtCore import QTimer

    seen = _capture_result(monkeypatch)
    viewer, w = _dock(make_napari_viewer, keep=0.7)
    w.method.value = "langevin-tv"  # result, iterates, std and samples layers
    w.method_form.set_values({"n_samples": 4, "iters": 12, "burn_in": 4})
    turns = {"n": 0}
    ticker = QTimer()  # a zero timer fires on every pass of the event loop
    ticker.setInterval(0)
    ticker.timeout.connect(lambda: turns.__setitem__("n", turns["n"] + 1))
    inserted, removed, renamed, shown = [], [], [], []
    viewer.layers.events.inserted.connect(
        lambda e: inserted.append((e.value.name, turns["n"], e.value)))
    viewer.layers.events.removed.connect(lambda e: removed.append(e.value.name))
    w.run()
    name = "langevin-tv · inpaint"
    live = next(lay for lay in viewer.layers if lay.name.endswith("[live]"))
    placeholder = viewer.layers[f"{name} [iterates]"]  # there from Run on, hidden
    assert not placeholder.visible and viewer.layers.selection.active is live
    live.events.name.connect(lambda e: renamed.append(turns["n"]))
    placeholder.events.visible.connect(lambda e: shown.append(turns["n"]))
    ticker.start()
    try:
        wait_idle(w)
    finally:
        ticker.stop()
    assert viewer.layers[name] is live and live.metadata["invrec"]["kind"] == "result"
    hist = viewer.layers[f"{name} [iterates]"]
    assert hist is placeholder and hist.visible and hist.metadata["invrec"]["kind"] == "history"
    assert viewer.dims.range[0].stop >= len(hist.data) - 1  # the slider reaches every step
    assert removed == []  # nothing removed: no gc pass
    added = [(n, t) for n, t, _ in inserted if n not in (live.name, hist.name)
             and not n.endswith("[live]")]
    assert sorted(n for n, _ in added) == sorted(f"{name} [{k}]" for k in ("std", "samples"))
    stamps = [renamed[-1], shown[-1]] + [t for _, t in added]
    # the event loop ran between any two of them: each was shown in a turn of its own
    assert len(set(stamps)) == len(stamps) and stamps == sorted(stamps), stamps
    assert len(seen) == 1 and w.runs and w.runs[0]["layers"][0] == name


def test_cancel_removes_the_live_layer_and_the_history_placeholder(make_napari_viewer,
                                                                  wait_idle):
    viewer, w = _dock(make_napari_viewer, "blur", sigma=1.5)
    w.method.value = "tv-fista"
    w.method_form.set_values({"iters": 100000})
    before = [lay.name for lay in viewer.layers]
    w.run()
    assert viewer.layers["tv-fista · blur [iterates]"].visible is False
    w.cancel()
    wait_idle(w)
    assert [lay.name for lay in viewer.layers] == before


def test_history_reaches_napari_without_a_copy(make_napari_viewer, wait_idle, monkeypatch):
    seen = _capture_result(monkeypatch)
    viewer, w = _dock(make_napari_viewer, "blur", sigma=1.5)
    w.method.value = "tv-fista"
    w.method_form.set_values({"iters": 30})
    w.run()
    wait_idle(w)
    (res,) = seen
    hist = viewer.layers["tv-fista · blur [iterates]"]
    assert np.shares_memory(hist.data, res.iterates)  # the engine's array, as it is
    assert res.iterates.base is not None  # itself a view of the history's store
    # limits given by the worker thread (the stack's range), not computed by napari later
    lo, hi = hist.contrast_limits
    assert lo == pytest.approx(float(res.iterates.min()))
    assert hi == pytest.approx(float(res.iterates.max()))


def test_previews_are_written_into_the_live_layers_own_array(make_napari_viewer, wait_idle,
                                                             monkeypatch):
    """Each preview is copied into one array the live layer owns (napari then re-slices
    without recomputing extents and dims), the slice napari shows is that preview, and the
    layer never holds an array the worker handed over."""
    from napari_invrec._widgets import reconstruct as rec

    previews: list = []  # (the worker's array, a copy of it) per preview yielded
    original = rec.run_engine

    def recording(*args, **kwargs):
        gen = original(*args, **kwargs)
        try:
            prog = next(gen)
            while True:
                if prog.preview is not None:
                    previews.append((prog.preview, np.array(prog.preview, copy=True)))
                prog = gen.send((yield prog))
        except StopIteration as stop:
            return stop.value

    monkeypatch.setattr(rec, "run_engine", recording)
    viewer, w = _dock(make_napari_viewer, "blur", sigma=1.5)
    w.method.value = "tv-fista"
    w.method_form.set_values({"iters": 40})
    shown: list = []  # (id of the layer's array, its values, napari's slice at 3 pixels)
    placeholder: list = []  # id of the array the live layer was created with
    pixels = [(5, 7), (32, 32), (60, 41)]

    def on_inserted(event) -> None:
        live = event.value
        if live.name.endswith("[live]"):
            placeholder.append(id(live.data))
            live.events.set_data.connect(lambda _: shown.append(
                (id(live.data), np.array(live.data, copy=True),
                 [live.get_value(p) for p in pixels])))

    viewer.layers.events.inserted.connect(on_inserted)
    w.run()
    wait_idle(w)
    (first,) = placeholder
    ids = [i for i, _, _ in shown]
    # every preview went into the placeholder's array; the last event is the result's data
    # (the live layer becomes the result layer)
    assert len(previews) >= 3 and ids[:-1] == [first] * (len(ids) - 1)
    assert first not in {id(p) for p, _ in previews}  # never the worker's own array
    copies = [c for _, c in previews]
    drawn = [(v, s) for i, v, s in shown[:-1] if v.any()]  # the blank placeholder aside
    assert len(drawn) >= 2
    for values, sliced in drawn:
        assert any(np.array_equal(values, c) for c in copies)  # a preview, whole
        assert sliced == [values[p] for p in pixels]  # and napari re-sliced it


def test_reconstruct_run_opens_no_activity_progress(make_napari_viewer, qtbot, wait_idle,
                                                    monkeypatch):
    """napari's activity progress animates its status bar (a window repaint per frame): the
    dock, which has its own bar, does not open one."""
    from napari_invrec._widgets import _pacing

    opened = []
    original = _pacing.ProgressPacer.__init__

    def spy(self, *args, **kwargs):
        opened.append(1)
        original(self, *args, **kwargs)

    monkeypatch.setattr(_pacing.ProgressPacer, "__init__", spy)
    viewer, w = _dock(make_napari_viewer, "blur", sigma=1.5)
    w.method.value = "tv-fista"
    w.method_form.set_values({"iters": 20})
    w.run()
    wait_idle(w)
    assert opened == [] and w.progress.value == 20


def test_progress_pacer_updates_the_bar_far_less_than_every_step(make_napari_viewer):
    from napari_invrec._widgets._pacing import ProgressPacer

    make_napari_viewer()
    pacer = ProgressPacer(total=1000, desc="test", max_hz=4.0)
    updates = []
    pacer.pbar.events.value.connect(lambda e: updates.append(e.value))
    for _ in range(1000):
        pacer.step()
    pacer.close()
    assert 1 <= len(updates) < 100  # at most 4 a second: not one per step
    assert updates == sorted(updates) and updates[-1] <= 1000


def test_throttle_waits_for_the_repaint_before_the_next_update(qtbot):
    """With ``repaints`` the cost of an update is known only once Qt has run the repaints it
    caused; until then no other update is allowed, then the next waits cost / duty."""
    import time

    from napari_invrec._widgets._pacing import DisplayThrottle

    th = DisplayThrottle(max_hz=1e6, duty=0.5, repaints=True)
    assert th.ready()
    started = time.perf_counter()
    th.done(started)
    assert not th.ready() and th.ready(force=True)
    qtbot.waitUntil(lambda: th.last_cost is not None, timeout=2000)
    assert th._next == pytest.approx(started + th.last_cost / 0.5)
    qtbot.waitUntil(th.ready, timeout=2000)


def test_throttle_without_repaints_bounds_the_duty(monkeypatch):
    from napari_invrec._widgets import _pacing

    clock = {"t": 100.0}
    monkeypatch.setattr(_pacing.time, "perf_counter", lambda: clock["t"])
    th = _pacing.DisplayThrottle(max_hz=30.0, duty=0.1)
    clock["t"] = 100.2  # an update that cost 0.2 s
    th.done(100.0)
    clock["t"] = 101.9
    assert not th.ready()  # 0.2 s may take at most 10 % of the 2 s from its start
    clock["t"] = 102.01
    assert th.ready()


@pytest.mark.parametrize("stored", [0, 5])
def test_history_placeholder_is_filled_or_removed(make_napari_viewer, stored):
    """The hidden placeholder takes a history of any length (the dims slider then reaches its
    last step) and is removed when the run stored none."""
    from napari_invrec._widgets._results import show_steps

    viewer = make_napari_viewer()
    live = viewer.add_image(np.zeros((8, 8), np.float32), name="r [live]")
    placeholder = viewer.add_image(np.zeros((1, 8, 8), np.float32), name="r [iterates]",
                                   visible=False)
    meta = {"invrec": {"kind": "result"}}
    layers = [(np.ones((8, 8), np.float32), {"name": "r", "metadata": meta,
                                             "contrast_limits": (0.0, 1.0)}, "image")]
    if stored:
        stack = np.random.default_rng(0).random((stored, 8, 8), dtype=np.float32)
        layers.append((stack, {"name": "r [iterates]", "metadata": {"invrec": {
            "kind": "history"}}, "contrast_limits": (0.0, 1.0)}, "image"))
    added: list = []
    for step in show_steps(viewer, layers, live, added, placeholder):
        step()
    if stored:
        assert added == [live, placeholder] and placeholder.visible
        assert placeholder.data is stack and viewer.dims.range[0].stop == stored - 1
        assert [lay.name for lay in viewer.layers] == ["r", "r [iterates]"]
    else:
        assert added == [live] and [lay.name for lay in viewer.layers] == ["r"]
