"""Open napari with the plugin's dock widgets and the blurred-atoms sample loaded."""

from __future__ import annotations

WIDGETS = ("Simulate measurement", "Reconstruct", "Compare runs", "Train network",
           "Uncertainty & hallucinations")


def open_viewer(sample: str = "atoms-blur", *, show: bool = True):
    """Create a viewer with the plugin's widgets docked and ``sample`` opened."""
    import napari

    viewer = napari.Viewer(title="napari-invrec", show=show)
    viewer.open_sample("napari-invrec", sample)
    for name in WIDGETS:
        viewer.window.add_plugin_dock_widget("napari-invrec", name)
    return viewer


def main() -> None:
    """Entry point of ``python -m napari_invrec`` (``make run``)."""
    import napari

    open_viewer()
    napari.run()
