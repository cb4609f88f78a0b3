"""Open napari with the blurred-atoms sample and the Reconstruct dock ready to run.

The first screen must leave the canvas room at 1280x1024: Reconstruct, Compare runs and
Uncertainty & hallucinations share one dock area as tabs (Reconstruct in front); Simulate
measurement and Train network are one click away in the Plugins menu. The preselected method
(:func:`napari_invrec.core.methods.registry.default_method`) improves on the measurement.
"""

from __future__ import annotations

#: docked at start, as tabs of the right dock area (the first is in front)
TABBED = ("Reconstruct", "Compare runs", "Uncertainty & hallucinations")
#: the plugin's other docks (Plugins menu)
MENU_ONLY = ("Simulate measurement", "Train network")
WIDGETS = TABBED + MENU_ONLY
#: starting width of the tabbed dock area, px (the canvas gets the rest)
DOCK_WIDTH = 380


def open_viewer(sample: str = "atoms-blur", *, show: bool = True):
    """Create a viewer with ``sample`` opened and the :data:`TABBED` docks as tabs."""
    import napari

    viewer = napari.Viewer(title="napari-invrec", show=show)
    viewer.open_sample("napari-invrec", sample)
    docks = [viewer.window.add_plugin_dock_widget("napari-invrec", name, tabify=True)[0]
             for name in TABBED]
    from qtpy.QtCore import Qt, QTimer

    docks[0].raise_()
    QTimer.singleShot(0, docks[0].raise_)  # again once shown: the last tab added is in front
    viewer.window._qt_window.resizeDocks(docks[:1], [DOCK_WIDTH], Qt.Horizontal)
    viewer.reset_view()
    return viewer


def main() -> None:
    """Entry point of ``python -m napari_invrec`` (``make run``)."""
    import napari

    open_viewer()
    napari.run()
