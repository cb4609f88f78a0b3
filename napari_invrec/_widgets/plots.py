"""A small matplotlib canvas for dock widgets, styled to sit in napari's dark theme.

No maths here: callers hand in finished numbers and draw them on :attr:`PlotCanvas.figure`.
"""

from __future__ import annotations

from typing import Any

from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg as FigureCanvas
from matplotlib.figure import Figure
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QSizePolicy, QVBoxLayout, QWidget

from ._runs import widget_alive

#: colours close to napari's dark theme (background, panel, text, grid)
DARK = {
    "figure": "#262930",
    "axes": "#1e2025",
    "text": "#f0f1f2",
    "muted": "#a0a4ab",
    "grid": "#414851",
}

#: line colours that stay readable on the dark background
DARK_CYCLE = ["#4fc3f7", "#ffb74d", "#81c784", "#e57373", "#ba68c8", "#fff176",
              "#4db6ac", "#f06292", "#a1887f", "#90a4ae"]


def style_axes(ax: Any) -> None:
    """Dark-theme an axes: dark face, light ticks, labels, title, spines and a faint grid."""
    ax.set_facecolor(DARK["axes"])
    ax.set_prop_cycle(color=DARK_CYCLE)
    ax.tick_params(colors=DARK["muted"], which="both", labelsize=8)
    for side in ("left", "right", "top", "bottom"):
        ax.spines[side].set_color(DARK["grid"])
    ax.xaxis.label.set_color(DARK["text"])
    ax.yaxis.label.set_color(DARK["text"])
    ax.title.set_color(DARK["text"])
    ax.grid(True, color=DARK["grid"], linewidth=0.5, alpha=0.7)


def style_legend(legend: Any) -> None:
    """Dark-theme a legend (no-op for ``None``)."""
    if legend is None:
        return
    frame = legend.get_frame()
    frame.set_facecolor(DARK["figure"])
    frame.set_edgecolor(DARK["grid"])
    for text in legend.get_texts():
        text.set_color(DARK["text"])


class PlotCanvas(QWidget):
    """A QWidget holding one matplotlib :class:`~matplotlib.figure.Figure` on a Qt canvas.

    Parameters
    ----------
    parent
        Parent widget.
    height
        Preferred height in pixels.

    Attributes
    ----------
    figure
        The figure (built without pyplot, so no global state is touched).
    canvas
        Its ``FigureCanvasQTAgg``.
    """

    def __init__(self, parent: QWidget | None = None, *, height: int = 260) -> None:
        super().__init__(parent)
        self.figure = Figure(figsize=(4, 3), dpi=90, facecolor=DARK["figure"],
                             layout="constrained")
        self.canvas = FigureCanvas(self.figure)
        self.canvas.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Expanding)
        self.canvas.setMinimumHeight(height)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.canvas)
        self._pending = False

    def reset(self, nrows: int = 1) -> list[Any]:
        """Clear the figure and return ``nrows`` fresh, dark-styled axes sharing the x axis."""
        self.figure.clear()
        axes = []
        for i in range(nrows):
            ax = self.figure.add_subplot(nrows, 1, i + 1, sharex=axes[0] if axes else None)
            style_axes(ax)
            axes.append(ax)
        return axes

    def draw(self) -> None:
        """Redraw the canvas on the next turn of the event loop (once for any number of calls
        before it), unless the dock was closed by then (matplotlib's own ``draw_idle`` then
        prints a traceback from its timer)."""
        if not self._pending:
            self._pending = True
            QTimer.singleShot(0, self._draw_pending)

    def _draw_pending(self) -> None:
        self._pending = False
        try:
            self.canvas.draw()
        except RuntimeError:  # the Qt widget was deleted before or during the draw (a
            if widget_alive(self.canvas):  # garbage-collected dock): nothing left to draw on
                raise
