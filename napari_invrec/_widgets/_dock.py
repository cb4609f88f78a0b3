"""The top-level container of every napari-invrec dock: its contents scroll.

A dock's form can be taller than the screen (the Train dock with an unrolled network and
SSDU settings needs about 1120 px, a 1280x1024 screen leaves about 950), and two docks stacked
on one side share the height. Qt's main window cannot be shorter than the sum of its docks'
minimum heights, so a form that does not scroll pushes the window, and its buttons, off the
screen.

magicgui's own ``scrollable=True`` does not survive docking: napari docks ``widget.native``,
which for a scrollable container is the widget inside the scroll area. Here ``native`` is the
scroll area itself, sized to show the whole form when there is room (a plain ``QScrollArea``
asks for at most 24 lines), and :attr:`DockContainer.body` is the widget holding the layout,
for the Qt widgets (plots, tables) that a dock adds next to its magicgui ones.
"""

from __future__ import annotations

from typing import Any

from magicgui.widgets import Container
from qtpy.QtCore import QSize, Qt
from qtpy.QtWidgets import QFrame, QScrollArea, QSizePolicy, QWidget

__all__ = ["DockContainer", "FormScroll"]

#: the height (px) a dock's form may shrink to before the dock stops shrinking
MIN_VISIBLE_HEIGHT = 160


class FormScroll(QScrollArea):
    """A vertical scroll area around one form that asks for the form's full size.

    Parameters
    ----------
    body
        The form; it keeps its width (no horizontal scroll bar) and scrolls vertically.
    """

    def __init__(self, body: QWidget) -> None:
        super().__init__()
        self.setWidgetResizable(True)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        self.setWidget(body)
        self._stretched = False

    def showEvent(self, event: Any) -> None:  # noqa: N802 - Qt's name
        """On first show, end a form without a growing part (plot, table) with a stretch, so
        that a dock taller than its form keeps the rows together at the top."""
        if not self._stretched:
            self._stretched = True
            layout = self.widget().layout()
            growing = (QSizePolicy.Policy.Expanding, QSizePolicy.Policy.MinimumExpanding)
            items = (layout.itemAt(i).widget() for i in range(layout.count()))
            if not any(w is not None and w.sizePolicy().verticalPolicy() in growing
                       for w in items):
                layout.addStretch(1)
        super().showEvent(event)

    def _bar(self) -> int:
        return self.verticalScrollBar().sizeHint().width()

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt's name
        """The form's own size hint, plus room for the scroll bar."""
        hint = self.widget().sizeHint()
        return QSize(hint.width() + self._bar(), hint.height())

    def minimumSizeHint(self) -> QSize:  # noqa: N802 - Qt's name
        """The form's minimum width (plus the scroll bar) and a short height."""
        hint = self.widget().minimumSizeHint()
        return QSize(hint.width() + self._bar(), min(hint.height(), MIN_VISIBLE_HEIGHT))


class DockContainer(Container):
    """A vertical magicgui ``Container`` whose contents scroll inside its dock.

    Parameters
    ----------
    **kwargs
        Passed to :class:`magicgui.widgets.Container`.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._scroll = FormScroll(super().native)
        self._scroll._magic_widget = self  # napari's dock finds the magicgui widget by it

    @property
    def native(self) -> QWidget:
        """The scroll area (what napari puts into the dock); the bare form until it exists."""
        return self.__dict__.get("_scroll") or super().native

    def reveal(self, widget: Any) -> None:
        """Scroll the form so that ``widget`` (a magicgui or Qt widget of this dock) is in
        view, e.g. the progress of a run just started from a form scrolled to its top."""
        self._scroll.ensureWidgetVisible(getattr(widget, "native", widget), 0, 0)

    @property
    def body(self) -> QWidget:
        """The widget inside the scroll area that holds the dock's layout."""
        return super().native
