"""Compare dock widget: runs table, side-by-side grid, convergence plot, hallucination maps.

Thin: every number comes from :mod:`napari_invrec.engine.compare`; this module only reads the
form, shows tables and plots, and adds layers on the main thread. Layers with malformed plugin
metadata are not offered as runs or references (:mod:`._meta`). Rank, under the table
(:class:`~._quality.RankPanel`), fills the ground-truth-free estimate column and orders the
runs best first.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import ComboBox, Container, Label, PushButton, ToggleButton
from qtpy.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHeaderView,
    QTableWidget,
    QTableWidgetItem,
)

from ..core.errors import InvRecError
from ..engine.compare import (
    MAP_KINDS,
    RunInfo,
    check_map_inputs,
    find_runs,
    hallucination_map,
    layer_image,
    map_layer,
    metric_rows,
)
from ._dock import DockContainer
from ._meta import checked_meta, layer_kind, layer_meta, usable_layers
from ._notify import guarded, notify_info, report_error
from ._quality import RankPanel
from ._runs import dock_alive, run_once
from .plots import PlotCanvas, style_legend

if TYPE_CHECKING:
    import napari

#: table columns: header -> (row key, format). The scores come first, so that a narrow dock
#: shows them without scrolling; the estimate (no ground truth) sits beside PSNR and SSIM
COLUMNS = (("run", "name", "{}"), ("PSNR", "psnr", "{:.2f}"), ("SSIM", "ssim", "{:.3f}"),
           ("est. (no GT)", "estimate", "{}"), ("residual", "residual", "{:.3g}"),
           ("time (s)", "time_s", "{:.2f}"), ("method", "method", "{}"),
           ("parameters", "params", "{}"))


def _grid(viewer: Any) -> Any:
    """The viewer's grid model (``viewer.canvas.grid`` since napari 0.9, ``viewer.grid`` before)."""
    canvas = getattr(viewer, "canvas", None)
    return canvas.grid if canvas is not None and hasattr(canvas, "grid") else viewer.grid


def _show_error(message: str) -> None:
    from napari.utils.notifications import show_error

    show_error(message)


def _copy(a: Any) -> Any:
    return None if a is None else np.array(a, copy=True)


class CompareWidget(DockContainer):
    """Compare finished runs against a reference image.

    Parameters
    ----------
    viewer
        The napari viewer whose result layers are compared.
    """

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self._viewer = viewer
        self._updating = False
        self._ref_auto = True
        self.runs: list[RunInfo] = []
        self.rows: list[dict] = []
        self._grid_saved: dict[str, Any] | None = None
        self._worker: Any = None

        # callables, so that napari's reset_choices (on layer events) re-reads them
        self._reference = ComboBox(label="reference", choices=self._image_names, nullable=True,
                                   tooltip="image the metrics and maps compare against "
                                           "(ground truth, or another result)")
        self._refresh_btn = PushButton(text="Refresh")
        self._grid_btn = ToggleButton(text="Side by side (grid)",
                                      tooltip="grid view of the reference and the selected "
                                              "runs, with linked contrast limits")
        buttons = Container(widgets=[self._refresh_btn, self._grid_btn], layout="horizontal",
                            labels=False)
        self._map_kind = ComboBox(label="map", choices=list(MAP_KINDS))
        self._map_run = ComboBox(label="run", choices=self._run_names)
        self._map_btn = PushButton(text="Compute")
        maps = Container(widgets=[Label(value="<b>Hallucination map</b>"), self._map_kind,
                                  self._map_run, self._map_btn])
        for combo in (self._reference, self._map_run):  # long layer names must not widen
            combo.native.setSizeAdjustPolicy(  # the dock past the canvas
                QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
            combo.native.setMinimumContentsLength(12)
        self._status = Label(value="")
        self.extend([self._reference, buttons, maps, self._status])

        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels([c[0] for c in COLUMNS])
        self.table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.ExtendedSelection)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeToContents)
        self.table.setMinimumHeight(120)
        self.plot = PlotCanvas()
        self.rank = RankPanel(self)  # Rank (no ground truth) + the order it found
        layout = self.body.layout()
        layout.insertWidget(2, self.table, 1)
        layout.insertWidget(3, self.rank.native)
        layout.insertWidget(4, self.plot, 2)

        self._refresh_btn.changed.connect(self.refresh)
        self._grid_btn.changed.connect(self._on_grid_toggled)
        self._map_btn.changed.connect(self.compute_map)
        self._reference.changed.connect(self._on_reference_changed)
        self.table.itemSelectionChanged.connect(self._on_selection)
        viewer.layers.events.inserted.connect(self._on_layers_changed)
        viewer.layers.events.removed.connect(self._on_layers_changed)
        self.native.destroyed.connect(self._disconnect)
        self.refresh()

    # ------------------------------------------------------------------ state
    def _disconnect(self, *_: Any) -> None:
        self.rank.controller.shutdown()
        for ev in (self._viewer.layers.events.inserted, self._viewer.layers.events.removed):
            ev.disconnect(self._on_layers_changed)

    @guarded
    def _on_layers_changed(self, event: Any = None) -> None:
        layer = getattr(event, "value", None)
        kind = None if layer is None else layer_kind(layer)
        if kind == "live":  # it becomes the run's result layer when the run ends (renamed)
            layer.events.name.connect(self._on_live_renamed)
        if kind in ("live", "history", "extra", "std", "samples", "hallucination"):
            return  # nothing to compare changed; keeps long runs from re-scoring every layer
        self.refresh()

    @guarded
    def _on_live_renamed(self, event: Any = None) -> None:
        layer = getattr(event, "source", None)
        if layer is None or layer_kind(layer) == "live":
            return
        layer.events.name.disconnect(self._on_live_renamed)
        self.refresh()

    def _run_names(self, *_: Any) -> list[str]:
        return [r.name for r in self.runs]

    def _image_names(self, *_: Any) -> list[str]:
        from napari.layers import Image

        return [layer.name for layer in usable_layers(self._viewer.layers)
                if isinstance(layer, Image)]

    def _default_reference(self, names: list[str]) -> str | None:
        for run in self.runs:
            if run.ground_truth and run.ground_truth in names:
                return run.ground_truth
        return None

    def reference_array(self) -> np.ndarray | None:
        """Image of the chosen reference layer (complex result image if stored), or ``None``."""
        name = self._reference.value
        if name is None or name not in self._viewer.layers:
            return None
        layer = self._viewer.layers[name]
        return layer_image(layer.data, {"invrec": checked_meta(layer)})

    @guarded
    def refresh(self, *_: Any) -> None:
        """Re-read the result layers, reference choices, metrics table and convergence plot."""
        self.runs = self.rank.ordered(find_runs(usable_layers(self._viewer.layers)))
        names = self._image_names()
        self._updating = True
        try:
            current = self._reference.value
            self._reference.reset_choices()
            if current in names or (current is None and not self._ref_auto):
                self._reference.value = current
            else:
                self._reference.value = self._default_reference(names)
            run_current = self._map_run.value
            self._map_run.reset_choices()
            if run_current in self._map_run.choices:
                self._map_run.value = run_current
        finally:
            self._updating = False
        self._update_metrics()
        self.rank.update_line(self.runs)
        self._plot_convergence()

    def _on_reference_changed(self, *_: Any) -> None:
        if not self._updating:
            self._ref_auto = False  # the user chose: keep their choice on later refreshes
            self._update_metrics()

    # ------------------------------------------------------------------ table
    def _update_metrics(self) -> None:
        try:
            self.rows = metric_rows(self.runs, self.reference_array())
        except InvRecError as err:
            _show_error(str(err))
            self.rows = []
        self.table.setRowCount(len(self.rows))
        for i, row in enumerate(self.rows):
            tip = f"{row['name']}\n{self.runs[i].params_text(10_000)}"
            for key in ("estimate_note", "note"):
                if row.get(key):
                    tip += f"\n{row[key]}"
            for j, (_, key, fmt) in enumerate(COLUMNS):
                value = row.get(key)
                item = QTableWidgetItem("–" if value is None else fmt.format(value))
                item.setToolTip(tip)
                self.table.setItem(i, j, item)
        self._fit_table()
        ref = self._reference.value
        self._status.value = (f"{len(self.runs)} run(s)" + (f" vs {ref!r}" if ref else
                                                               "; choose a reference"))

    def _fit_table(self, most: int = 6) -> None:
        """Tall enough for up to ``most`` rows without scrolling (the plots take the rest)."""
        t = self.table
        rows = sum(t.rowHeight(i) for i in range(min(t.rowCount(), most)))
        t.setMinimumHeight(max(120, t.horizontalHeader().sizeHint().height() + rows
                               + t.horizontalScrollBar().sizeHint().height()
                               + 2 * t.frameWidth() + 2))

    def selected_runs(self) -> list[str]:
        """Names of the runs selected in the table (all runs when none is selected)."""
        rows = sorted({i.row() for i in self.table.selectionModel().selectedRows()})
        names = [self.runs[i].name for i in rows if i < len(self.runs)]
        return names or [r.name for r in self.runs]

    def _on_selection(self) -> None:
        rows = self.table.selectionModel().selectedRows()
        if rows and rows[0].row() < len(self.runs):
            self._map_run.value = self.runs[rows[0].row()].name

    # ------------------------------------------------------------------ plot
    def _plot_convergence(self) -> None:
        with_psnr = [r for r in self.runs if r.metric_history.get("psnr")]
        axes = self.plot.reset(2 if with_psnr else 1)
        ax = axes[0]
        positive = False
        for run in self.runs:
            res = run.metric_history.get("residual")
            if res:
                ax.plot(np.arange(1, len(res) + 1), res, label=run.name, linewidth=1.2,
                        marker="o" if len(res) < 3 else None, markersize=4)
                positive = positive or any(v > 0 for v in res)
        if positive:
            ax.set_yscale("log")
        ax.set_ylabel("residual ‖Ax−y‖/‖y‖", fontsize=8)
        if ax.lines:
            style_legend(ax.legend(fontsize=7, loc="upper right"))
        else:
            ax.text(0.5, 0.5, "no runs with a metric history", ha="center", va="center",
                    transform=ax.transAxes, color="#a0a4ab", fontsize=8)
        if with_psnr:
            for run in with_psnr:
                p = run.metric_history["psnr"]
                axes[1].plot(np.arange(1, len(p) + 1), p, label=run.name, linewidth=1.2,
                             marker="o" if len(p) < 3 else None, markersize=4)
            axes[1].set_ylabel("PSNR (dB)", fontsize=8)
        axes[-1].set_xlabel("step", fontsize=8)
        self.plot.draw()

    @property
    def residual_axes(self) -> Any:
        """The axes holding one residual curve per run."""
        return self.plot.figure.axes[0]

    # ------------------------------------------------------------------ grid
    def _on_grid_toggled(self, on: bool) -> None:
        if on:
            self.grid_on()
        else:
            self.grid_off()

    def grid_on(self) -> None:
        """Grid mode with only the reference and the selected runs visible, limits linked."""
        from napari.experimental import link_layers

        if self._grid_saved is not None:
            return
        names = ([self._reference.value] if self._reference.value else []) + self.selected_runs()
        shown = [self._viewer.layers[n] for n in dict.fromkeys(names) if n in self._viewer.layers]
        grid = _grid(self._viewer)
        self._grid_saved = {"visible": {id(layer): layer.visible for layer in self._viewer.layers},
                            "enabled": grid.enabled, "stride": grid.stride, "linked": shown}
        for layer in self._viewer.layers:
            layer.visible = layer in shown
        grid.stride = 1
        grid.enabled = True
        self._viewer.reset_view()
        if len(shown) > 1:
            link_layers(shown, ("contrast_limits",))
            shown[0].contrast_limits = list(shown[0].contrast_limits)
            for layer in shown[1:]:
                layer.contrast_limits = list(shown[0].contrast_limits)
        if not self._grid_btn.value:
            self._grid_btn.value = True

    def grid_off(self) -> None:
        """Leave grid mode: unlink contrast limits, restore visibility and the grid settings."""
        from napari.experimental import unlink_layers

        saved, self._grid_saved = self._grid_saved, None
        if self._grid_btn.value:
            self._grid_btn.value = False
        if saved is None:
            return
        linked = [layer for layer in saved["linked"] if layer in self._viewer.layers]
        if len(linked) > 1:
            unlink_layers(linked, ("contrast_limits",))
        for layer in self._viewer.layers:
            if id(layer) in saved["visible"]:
                layer.visible = saved["visible"][id(layer)]
        grid = _grid(self._viewer)
        grid.stride = saved["stride"]
        grid.enabled = saved["enabled"]
        self._viewer.reset_view()

    # ------------------------------------------------------------------ maps
    def compute_map(self, *_: Any) -> Any:
        """Start computing the chosen map in a worker; the layer is added when it returns.

        Returns the worker (``None`` when the form is incomplete: a notification says why).
        The map is not added if the run's layer was removed or the viewer closed meanwhile.
        """
        kind, run_name = self._map_kind.value, self._map_run.value
        run = next((r for r in self.runs if r.name == run_name), None)
        if run is None:
            _show_error("choose a run (a result layer) for the hallucination map")
            return None
        try:
            ref = self.reference_array()
            check_map_inputs(kind, run.result, ref, run.measurement)
        except InvRecError as err:
            _show_error(str(err))
            return None
        run_layer = self._viewer.layers[run.name] if run.name in self._viewer.layers else None
        scale = run_layer.scale if run_layer is not None else None
        ref_name = self._reference.value

        def done(data: np.ndarray) -> None:
            if run_layer is not None and run_layer not in self._viewer.layers:
                notify_info(f"the {kind} map of {run.name!r} was not added: the run's layer "
                            "was removed")
                return
            self._add_map(map_layer(kind, run.name, data, reference_name=ref_name,
                                    scale=scale))

        # copies: the worker never reads a layer's buffer
        self._worker = run_once(hallucination_map, kind, run.meta, _copy(run.result),
                                _copy(ref), _copy(run.measurement), on_return=done,
                                on_error=self._on_error, alive=dock_alive(self, self._viewer))
        return self._worker

    def _on_error(self, err: BaseException) -> None:
        report_error(err, prefix="hallucination map failed: ")

    def _add_map(self, layer_tuple: tuple) -> None:
        data, kwargs, _ = layer_tuple
        name = kwargs["name"]
        layers = self._viewer.layers
        if name in layers and (layer_meta(layers[name]) or {}).get("kind") == "hallucination":
            layer = layers[name]
            layer.data = data
            layer.colormap = kwargs["colormap"]
            layer.contrast_limits = kwargs["contrast_limits"]
            layer.metadata = kwargs["metadata"]
            return
        self._viewer.add_image(data, **kwargs)
