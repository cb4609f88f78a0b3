"""The degradation level of the iterate on show, for runs whose steps are levels (dirac).

A history layer whose metadata carries ``levels`` (one per stored step, from the run's
metric ``"t"``: 1 is the measurement, 0 the clean image) turns the viewer's step slider into
a degradation-level slider: :class:`LevelReadout` writes the level of the slice on show in
the canvas's text overlay and marks the last one as the stopping point. Other layers leave
the overlay alone.
"""

from __future__ import annotations

import weakref
from typing import Any

import numpy as np

from ._meta import layer_meta

__all__ = ["LevelReadout", "level_text"]

_INSTALLED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def level_text(levels: list[float], index: int) -> str:
    """The overlay line for slice ``index`` of a run with ``levels``."""
    i = int(np.clip(index, 0, len(levels) - 1))
    stop = " · stopping point" if i == len(levels) - 1 else ""
    return f"degradation t = {levels[i]:.2f} ({i + 1}/{len(levels)}){stop}"


def _text_overlay(viewer: Any) -> Any:
    overlays = getattr(getattr(viewer, "canvas", None), "overlays", None)
    return overlays.text if overlays is not None else viewer.text_overlay


class LevelReadout:
    """Keeps the text overlay on the level of the selected (else top visible) level run.

    One per viewer (:meth:`install`); it reads only the viewer's layers, so it outlives the
    dock that installed it harmlessly.
    """

    @classmethod
    def install(cls, viewer: Any) -> LevelReadout:
        """The viewer's readout, created on first use."""
        if viewer not in _INSTALLED:
            _INSTALLED[viewer] = cls(viewer)
        return _INSTALLED[viewer]

    def __init__(self, viewer: Any) -> None:
        self.viewer = viewer
        self.shown = False
        viewer.dims.events.current_step.connect(self.update)
        viewer.layers.selection.events.active.connect(self.update)
        viewer.layers.events.removed.connect(self.update)

    def _layer(self) -> Any:
        active = self.viewer.layers.selection.active
        candidates = [active] + list(reversed(self.viewer.layers))
        for layer in candidates:
            if layer is not None and layer.visible and (layer_meta(layer) or {}).get("levels"):
                return layer
        return None

    def update(self, *_: Any) -> None:
        """Show the level of the slice on show (or hide the line this readout wrote)."""
        overlay = _text_overlay(self.viewer)
        layer = self._layer()
        if layer is None:
            if self.shown:
                overlay.visible = False
                self.shown = False
            return
        levels = [float(v) for v in layer_meta(layer)["levels"]]
        index = round(float(layer.world_to_data(self.viewer.dims.point)[0]))
        overlay.text = level_text(levels, index)
        if not self.shown:  # top left, boxed: the corner napari's notifications leave free
            overlay.position, overlay.font_size = "top_left", 10
            if hasattr(overlay, "box"):
                overlay.box = True
        overlay.visible = True
        self.shown = True
