"""The live layer of a Reconstruct run: the iterate as it is computed.

It is added blank before the solver starts (adding a layer while the solver runs would stall
the event loop mid-stream), fed previews as its :class:`~._pacing.DisplayThrottle` allows
(each written into the layer's own array, so napari redraws without recomputing extents and
dims), and at the end either becomes the result layer (:func:`~._results.show_steps`) or is
removed (cancel, error). A live layer the user removes stays removed for the rest of the run.
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
    throttle
        Paces the previews: at most 30 a second and ~10 % of the event loop's time, their
        repaints included.
    """

    def __init__(self, viewer: Any) -> None:
        self.viewer = viewer
        self.layer: Any = None
        self.throttle = DisplayThrottle(max_hz=30.0, duty=0.1, repaints=True)
        self._dropped = False  # the user removed this run's live layer
        self._blank = False  # the layer shows no preview yet
        self._limits_given = False

    def start(self, name: str, shape: tuple[int, ...],
              contrast: tuple[float, float] | None) -> None:
        """Add the blank live layer of run ``name`` (``contrast``: the reference's limits,
        kept for the whole run; ``None``: taken from the first preview)."""
        self._dropped, self._limits_given = False, contrast is not None
        self._add(name, shape, contrast)

    def _add(self, name: str, shape: tuple[int, ...],
             contrast: tuple[float, float] | None) -> None:
        self.layer = self.viewer.add_image(
            np.zeros(shape, np.float32), name=f"{name} [live]", colormap="gray",
            metadata={"invrec": {"kind": "live"}}, contrast_limits=contrast or (0.0, 1.0))
        self._blank = True

    def wants(self, last: bool) -> bool:
        """Whether a preview should be shown now (never again once the user removed the
        layer; at the last step always)."""
        if self.layer is not None and self.layer not in self.viewer.layers:
            self.layer, self._dropped = None, True
        return not self._dropped and self.throttle.ready(last)

    def show(self, preview: np.ndarray, name: str) -> None:
        """Show ``preview``: copied into the layer's own array (never the worker's, which
        may be a view of the solver's state) and redrawn; its cost paces the next one."""
        started = time.perf_counter()
        if self.layer is None:
            self._add(name, preview.shape, None)
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

    def take(self) -> Any:
        """The layer, to become the result layer (``None`` if the user removed it); the
        run no longer owns it."""
        layer, self.layer = (None if self._dropped else self.layer), None
        return layer

    def remove(self) -> None:
        """Remove the layer (a cancelled or failed run adds nothing)."""
        if self.layer is not None and self.layer in self.viewer.layers:
            self.viewer.layers.remove(self.layer)
        self.layer = None
