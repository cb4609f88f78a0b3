"""GUI tests of the docks' frame: every form scrolls, so no dock pushes the window off screen."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.gui

DOCKS = ("Simulate measurement", "Reconstruct", "Compare runs", "Train network",
         "Uncertainty & hallucinations")


def _settle(qtbot) -> None:
    """Let nested layouts (a form inside its scroll area) finish over several event turns."""
    qtbot.wait(50)


def _in_view(scroll, widget) -> bool:
    """Whether ``widget`` lies wholly inside the scroll area's visible part."""
    top = widget.mapTo(scroll.viewport(), widget.rect().topLeft()).y()
    return 0 <= top and top + widget.height() <= scroll.viewport().height()


@pytest.mark.parametrize("name", DOCKS)
def test_dock_holds_its_form_in_a_scroll_area(make_napari_viewer, qtbot, name):
    from napari_invrec._widgets._dock import MIN_VISIBLE_HEIGHT, FormScroll

    viewer = make_napari_viewer()
    dock, widget = viewer.window.add_plugin_dock_widget("napari-invrec", name)
    _settle(qtbot)
    assert isinstance(dock.widget(), FormScroll)
    assert dock.widget().widget() is widget.body
    assert dock.inner_widget() is widget  # napari still finds the magicgui widget
    assert dock.widget().minimumSizeHint().height() <= MIN_VISIBLE_HEIGHT
    assert not dock.widget().horizontalScrollBar().isVisible()


def test_train_dock_taller_than_the_screen_still_fits(make_napari_viewer, qtbot):
    """The Train form for an unrolled MRI network with SSDU is taller than a 1024 px screen;
    the window's minimum height stays below it and the hidden rows are reached by scrolling."""
    viewer = make_napari_viewer(show=True)
    dock, w = viewer.window.add_plugin_dock_widget("napari-invrec", "Train network")
    w.task.value = "unrolled"
    w.op_panel.operator.value = "mri"
    w.supervision.value = "ssdu"
    _settle(qtbot)
    assert not w.split_samples.native.isHidden()
    form_height = w.body.minimumSizeHint().height()
    window = viewer.window._qt_window
    assert window.minimumSizeHint().height() < 1024 < form_height + 200
    window.resize(1280, 1024 - 100)  # room left for the title bar and a panel
    _settle(qtbot)
    scroll = dock.widget()
    assert scroll.height() < form_height
    assert scroll.verticalScrollBar().isVisible()
    scroll.ensureWidgetVisible(w.train_button.native)
    _settle(qtbot)
    assert _in_view(scroll, w.train_button.native)


def test_short_form_keeps_its_rows_together(make_napari_viewer, qtbot):
    """A dock taller than its form (no plot or table to grow) ends the form with a stretch:
    the rows keep their natural height instead of spreading over the dock."""
    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.resize(1280, 1024)
    _, w = viewer.window.add_plugin_dock_widget("napari-invrec", "Simulate measurement")
    _settle(qtbot)
    layout = w.body.layout()
    assert layout.itemAt(layout.count() - 1).spacerItem() is not None
    rows = [w.body.layout().itemAt(i).widget() for i in range(layout.count() - 1)]
    used = sum(r.height() for r in rows if r is not None and not r.isHidden())
    assert w.body.height() > used + 50  # room left over, taken by the stretch


def test_a_run_scrolls_its_progress_into_view(make_napari_viewer, qtbot, wait_idle):
    """A run started from a form scrolled to its top brings its progress into view."""
    from helpers import reconstruct_dock

    from napari_invrec.core.data import shepp_logan

    viewer, w = reconstruct_dock(make_napari_viewer(show=True), shepp_logan(64), "blur",
                                 sigma=1.5)
    dock = viewer.window.add_dock_widget(w, name="Reconstruct")
    viewer.window._qt_window.resize(1280, 700)
    _settle(qtbot)
    scroll = dock.widget()
    scroll.verticalScrollBar().setValue(0)
    _settle(qtbot)
    assert scroll.verticalScrollBar().maximum() > 0  # the form is taller than the dock
    assert not _in_view(scroll, w.status.native)
    w.method.value = "tv-fista"
    w.run()
    _settle(qtbot)
    assert _in_view(scroll, w.status.native)
    wait_idle(w)
