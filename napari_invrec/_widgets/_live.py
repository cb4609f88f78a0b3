"""The live layer of a Reconstruct run (the iterate as it is computed) and the placeholder
of its iterate history.

Both are added before the solver starts, the history's hidden: napari adding a 3-D layer (its
controls, visual and a dims slider) stalls the event loop for 130-200 ms on a software-OpenGL
display, which at the end of a run is the freeze the user waits through, and at Run blends
into the click. The live layer is fed previews as its :class:`~._pacing.DisplayThrottle`
allows (each written into the layer's own array, so napari redraws without recomputing
extents and dims). At the end the live layer becomes the result layer and the placeholder
the history layer (:func:`~._results.show_steps`), or both are removed (cancel, error). A
layer the user removes stays removed for the rest of the run (a removed placeholder: the
history is added as a new layer).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from ._pacing import DisplayThrottle

__all__ = ["LiveLayer"]


class LiveLayer:
    """The live layer of one run at a time in ``viewer``.

    Attributes
    ----------
    layer
        The napari layer, or ``None`` (before a run, after it, or once the user removed it).
    history
        The hidden placeholder of the run's iterate history, or ``None``.
    throttle
        Paces the previews: at most 30 a second and ~10 % of the event loop's time, their
        repaints included.
    """

    def __init__(self, viewer: Any) -> None:
        self.viewer = viewer
        self.layer: Any = None
        self.history: Any = None
        self.throttle = DisplayThrottle(max_hz=30.0, duty=0.1, repaints=True)
        self._blank = False  # the layer shows no preview yet
        self._limits_given = False

    def start(self, name: str, shape: tuple[int, ...],
              contrast: tuple[float, float] | None, history: bool = False) -> None:
        """Add the blank live layer of run ``name`` (``contrast``: the reference's limits,
        kept for the whole run; ``None``: taken from the first preview) and, with
        ``history``, the hidden placeholder of its iterate history (the live layer stays the
        selected one)."""
        self._limits_given = contrast is not None
        self.history = None
        self.layer = self.viewer.add_image(
            np.zeros(shape, np.float32), name=f"{name} [live]", colormap="gray",
            metadata={"invrec": {"kind": "live"}}, contrast_limits=contrast or (0.0, 1.0))
        self._blank = True
        if history:
            self.history = self.viewer.add_image(
                np.zeros((1, *shape), np.float32), name=f"{name} [iterates]",
                colormap="gray", visible=False, metadata={"invrec": {"kind": "pending"}},
                contrast_limits=contrast or (0.0, 1.0))
            self.viewer.layers.selection.active = self.layer

    def wants(self, last: bool) -> bool:
        """Whether a preview should be shown now (never again once the user removed the
        layer; at the last step always)."""
        if self.layer is not None and self.layer not in self.viewer.layers:
            self.layer = None  # removed by the user: not shown again in this run
        return self.layer is not None and self.throttle.ready(last)

    def show(self, preview: np.ndarray) -> None:
        """Show ``preview``: copied into the layer's own array (never the worker's, which
        may be a view of the solver's state) and redrawn; its cost paces the next one."""
        started = time.perf_counter()
        data = self.layer.data
        if (isinstance(data, np.ndarray) and data.shape == preview.shape
                and np.can_cast(preview.dtype, data.dtype, casting="same_kind")):
            np.copyto(data, preview, casting="same_kind")
            self.layer.refresh(extent=False)
        else:  # a preview unlike the placeholder (never in practice): a copy of its own
            self.layer.data = np.array(preview, dtype=np.float32)
        if self._blank:  # the placeholder's limits were a guess: the first preview's
            self._blank = False
            if not self._limits_given:
                self.layer.reset_contrast_limits()
        self.throttle.done(started)

    def take(self) -> tuple[Any, Any]:
        """The live layer, to become the result layer, and the history placeholder (``None``
        if the user removed the live layer, or there is no placeholder); the run no longer
        owns them (:func:`~._results.show_steps` adds anew what the user removed since)."""
        taken = self.layer, self.history
        self.layer = self.history = None
        return taken

    def remove(self) -> None:
        """Remove the live layer and the placeholder (a cancelled or failed run adds
        nothing)."""
        for layer in (self.layer, self.history):
            if layer is not None and layer in self.viewer.layers:
                self.viewer.layers.remove(layer)
        self.layer = self.history = None
