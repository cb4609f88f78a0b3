"""Uncertainty & hallucinations dock widget: trust maps, hotspot overlay, calibrated bands.

Thin: the maps, hotspots and calibration come from :mod:`napari_invrec.engine.trust` (which
reuses the Compare widget's :func:`~napari_invrec.engine.compare.hallucination_map`); this
module reads the form, starts workers and adds layers on the main thread. Layers with malformed
plugin metadata are not offered as runs, references or maps (:mod:`._meta`).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import ComboBox, Container, Label, PushButton

from ..core.analysis.hotspots import HotspotParams
from ..core.errors import InputError
from ..engine.calibration import IMAGES, CalibrateParams, calibration_steps
from ..engine.compare import RunInfo, find_runs, layer_image
from ..engine.trust import (
    STD,
    available_maps,
    band_layers,
    hotspot_layer,
    run_companions,
    trust_layer,
    trust_maps,
)
from ._dock import DockContainer
from ._inputs import heading, labelled, layer_by_name
from ._meta import checked_meta, layer_kind, layer_meta, usable_layers
from ._notify import guarded, notify_info, report_error
from ._runs import RunController, dock_alive, run_once
from .forms import ParamsForm

if TYPE_CHECKING:
    import napari

__all__ = ["TrustWidget"]


class TrustWidget(DockContainer):
    """Trust maps, hotspots and split-conformal bands for any finished run.

    The calibration's truths come from the form's ``source``: a synthetic generator, the
    Image layer chosen in ``cal_images`` (source ``images``) or the run's own result
    (``bootstrap``); the status line ends with the report's trust line.

    Attributes
    ----------
    controller
        :class:`RunController` of the calibration run.
    report
        The last :class:`~napari_invrec.engine.trust.CalibrationReport` (or ``None``).
    regions
        Region records of the last hotspot overlay.
    maps
        The last computed maps by kind (set when their layers are added).
    """

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__(labels=False)
        self.viewer = viewer
        self.controller = RunController(alive=dock_alive(self, viewer))
        self.report: Any = None
        self.regions: list = []
        self.maps: dict[str, np.ndarray] = {}
        self._map_worker: Any = None
        self._calib_run: RunInfo | None = None
        self.run = ComboBox(choices=self._run_names, name="run", label="run",
                            tooltip="a finished run (result layer)")
        self.reference = ComboBox(choices=self._image_names, nullable=True, name="reference",
                                  label="ground truth", tooltip="optional: enables the "
                                  "null-space map (I - P)(x_hat - x_true)")
        self.dc_reference = ComboBox(choices=self._run_names, nullable=True, name="dc_reference",
                                     label="data-consistent ref.", tooltip="optional: another "
                                     "run (e.g. min-norm, TV) for the null-space difference")
        self.maps_button = PushButton(text="Compute maps", name="maps_button")
        self.hot_map = ComboBox(choices=self._map_names, name="hot_map", label="map",
                                tooltip="trust map of the run to find hotspots in")
        self.hot_form = ParamsForm(HotspotParams, name="hot_form")
        self.hot_button = PushButton(text="Hotspot overlay", name="hot_button")
        self.cal_form = ParamsForm(CalibrateParams, name="cal_form")
        self.cal_images = ComboBox(choices=self._image_names, nullable=True, name="cal_images",
                                   label="reference images", tooltip="source 'images': a stack "
                                   "(N, H, W) of images like your data, in its units")
        self.cal_images_box = labelled(self.cal_images, name="cal_images_box")
        self.cal_button = PushButton(text="Calibrate", name="cal_button")
        self.cancel_button = PushButton(text="Cancel", name="cancel_button", enabled=False)
        self.status = Label(value="", name="status")
        self.status.native.setWordWrap(True)  # long reports must not widen the dock
        self.extend([labelled(self.run, self.reference, self.dc_reference, name="run_box"),
                     self.maps_button, heading("hotspots"), labelled(self.hot_map, name="hm"),
                     self.hot_form, self.hot_button, heading("calibration"), self.cal_form,
                     self.cal_images_box,
                     Container(widgets=[self.cal_button, self.cancel_button],
                               layout="horizontal", labels=False, name="cal_buttons"),
                     self.status])
        self.maps_button.changed.connect(self.compute_maps)
        self.hot_button.changed.connect(self.hotspots)
        self.cal_button.changed.connect(self.calibrate)
        self.cancel_button.changed.connect(self.cancel)
        self.run.changed.connect(self._on_run)
        self.cal_form.widget("source").changed.connect(self._on_source)
        events = viewer.layers.events
        for ev in (events.inserted, events.removed):
            ev.connect(self.refresh)
        self.native.destroyed.connect(self._disconnect)
        self.refresh()
        self._on_run()
        self._on_source()

    # ------------------------------------------------------------------ choices
    def _disconnect(self, *_: Any) -> None:
        self.controller.shutdown()
        for ev in (self.viewer.layers.events.inserted, self.viewer.layers.events.removed):
            ev.disconnect(self.refresh)

    def _runs(self) -> list[RunInfo]:
        return find_runs(usable_layers(self.viewer.layers))

    def _run_names(self, *_: Any) -> list[str]:
        return [layer.name for layer in self.viewer.layers if layer_kind(layer) == "result"]

    def _image_names(self, *_: Any) -> list[str]:
        from napari.layers import Image

        return [layer.name for layer in usable_layers(self.viewer.layers)
                if isinstance(layer, Image) and layer_kind(layer) in (None, "result")]

    def _map_names(self, *_: Any) -> list[str]:
        """The run's std layer (made with the run) and its map layers."""
        run = self.run.value
        result = layer_by_name(self.viewer, run)
        prov = (layer_meta(result) or {}).get("provenance") if result is not None else None
        out = []
        for layer in self.viewer.layers:
            meta = layer_meta(layer) or {}
            if (meta.get("kind") == "hallucination" and meta.get("run") == run) or (
                    meta.get("kind") == STD and prov and meta.get("provenance") == prov):
                out.append(layer.name)
        return out

    @guarded
    def refresh(self, *_: Any) -> None:
        """Re-read the runs, reference images and map layers."""
        try:
            for combo in (self.run, self.reference, self.dc_reference, self.hot_map,
                          self.cal_images):
                combo.reset_choices()
        except RuntimeError:  # the Qt widget was deleted before the viewer
            return

    @guarded
    def _on_run(self, *_: Any) -> None:
        run = self.selected_run()
        gt = run.ground_truth if run is not None else None
        if gt and gt in self.reference.choices and self.reference.value is None:
            self.reference.value = gt
        self.hot_map.reset_choices()

    def _on_source(self, *_: Any) -> None:
        """Offer the reference-images layer only for source ``images``."""
        self.cal_images_box.visible = self.cal_form.widget("source").value == IMAGES

    def selected_run(self) -> RunInfo | None:
        """The chosen run, or ``None``."""
        name = self.run.value
        return next((r for r in self._runs() if r.name == name), None)

    def _need_run(self) -> RunInfo:
        run = self.selected_run()
        if run is None:
            raise InputError("choose a run: a result layer made by napari-invrec's Reconstruct "
                             "widget (or the API)")
        if not run.provenance.get("operator"):
            raise InputError(f"{run.name!r} records no provenance; pick a result layer made by "
                             "napari-invrec")
        return run

    def _scale(self, name: str) -> Any:
        layer = layer_by_name(self.viewer, name)
        return None if layer is None else layer.scale

    def _image(self, name: str | None) -> np.ndarray | None:
        """A copy of the image of layer ``name`` (``None`` if there is none)."""
        layer = layer_by_name(self.viewer, name)
        if layer is None:
            return None
        return np.array(layer_image(layer.data, {"invrec": checked_meta(layer)}), copy=True)

    # ------------------------------------------------------------------ maps
    @guarded
    def compute_maps(self, *_: Any) -> Any:
        """Compute every available map of the run in a worker; returns the worker.

        The maps are not added if the run's layer was removed or the viewer closed meanwhile.
        """
        run = self._need_run()
        extra = run_companions(usable_layers(self.viewer.layers), run.provenance)
        inputs = {"std": extra.get("std"), "samples": extra.get("samples"),
                  "reference": self._image(self.reference.value),
                  "dc_reference": self._image(self.dc_reference.value),
                  "measurement": run.measurement}
        if not available_maps(**inputs):
            raise InputError(f"no map can be computed for {run.name!r}: choose a ground truth "
                             "or a data-consistent reference, or run a stochastic method")
        scale, ref_name = self._scale(run.name), self.reference.value
        dc_name, run_layer = self.dc_reference.value, layer_by_name(self.viewer, run.name)
        self.status.value = "computing maps..."
        self.maps = {}

        def done(maps: dict) -> None:
            if run_layer is None or run_layer not in self.viewer.layers:
                notify_info(f"the maps of {run.name!r} were not added: the run's layer was "
                            "removed", self.status)
                return
            self.maps = maps
            for kind, data in maps.items():
                if kind == STD:  # already shown: the run's own "[std]" layer
                    continue
                ref = dc_name if kind == "null-space difference" else ref_name
                self._put(trust_layer(kind, run.name, data, reference_name=ref, scale=scale))
            self.hot_map.reset_choices()
            notify_info(f"{len(maps)} map(s) of {run.name!r}: {', '.join(maps)}", self.status)

        def failed(exc: BaseException) -> None:
            report_error(exc, self.status, prefix="trust maps failed: ")

        inputs = {k: None if v is None else np.array(v, copy=True) for k, v in inputs.items()}
        self._map_worker = run_once(trust_maps, run.meta, np.array(run.result, copy=True),
                                    **inputs, on_return=done, on_error=failed,
                                    alive=dock_alive(self, self.viewer))
        return self._map_worker

    def _put(self, layer_tuple: tuple) -> Any:
        """Add a layer, or update the plugin's layer of the same name in place."""
        data, kwargs, ltype = layer_tuple
        old = layer_by_name(self.viewer, kwargs["name"])
        if old is not None and layer_kind(old) == kwargs["metadata"]["invrec"]["kind"]:
            self.viewer.layers.remove(old)
        add = getattr(self.viewer, f"add_{ltype}")
        return add(data, **kwargs)

    # ------------------------------------------------------------------ hotspots
    @guarded
    def hotspots(self, *_: Any) -> Any:
        """Hotspot overlay of the chosen map as a Labels layer; returns the layer."""
        run = self._need_run()
        name = self.hot_map.value
        layer = layer_by_name(self.viewer, name)
        if layer is None:
            raise InputError("compute the run's maps first, then choose one to find hotspots in")
        meta = checked_meta(layer)
        lt, self.regions = hotspot_layer(np.asarray(layer.data), self.hot_form.params(),
                                         run_name=run.name, map_name=meta.get("map", meta["kind"]),
                                         scale=self._scale(run.name))
        out = self._put(lt)
        top = (f"; top: area {self.regions[0].area} px, sum {self.regions[0].sum:.3g}"
               if self.regions else "")
        self.status.value = f"{len(self.regions)} hotspot(s) in {name!r}{top}"
        return out

    # ------------------------------------------------------------------ calibration
    def _noise(self, run: RunInfo) -> dict | None:
        noise = run.provenance.get("noise")
        if noise is None and run.measurement_layer:
            layer = layer_by_name(self.viewer, run.measurement_layer)
            noise = (layer_meta(layer) or {}).get("noise") if layer is not None else None
        return noise

    @guarded
    def calibrate(self, *_: Any) -> Any:
        """Start the calibration simulations in the background; returns the worker."""
        from ..engine.calibration import resolve_run

        if self.controller.running:
            raise InputError("a calibration is running; wait for it or Cancel it first")
        run = self._need_run()
        if "std" not in run_companions(usable_layers(self.viewer.layers), run.provenance):
            raise InputError(f"{run.name!r} has no std layer: calibrate a run of a stochastic "
                             "method (e.g. langevin-tv)")
        noise = self._noise(run)
        resolve_run(run, noise=noise)  # cheap checks with a clear message, before the thread
        p = self.cal_form.params()
        images = self._reference_images() if p.source == IMAGES else None
        run = dataclasses.replace(run, result=np.array(run.result, copy=True))  # a snapshot
        self._calib_run = run
        self.cal_button.enabled, self.cancel_button.enabled = False, True
        self.status.value = (f"calibrating {run.name!r} on {p.n_pairs} simulated pairs "
                             f"({p.source})...")
        return self.controller.start(
            calibration_steps, run, p, images=images, noise=noise,
            desc=f"calibrate {run.name}",
            on_yield=self._on_progress, on_return=self._on_calibrated,
            on_error=self._on_error, on_cancel=self._on_cancel, on_finish=self._on_finish)

    def _reference_images(self) -> Any:
        """The chosen reference layer's data (numpy copied; dask stays lazy, the engine crops
        and reads only the images it uses)."""
        layer = layer_by_name(self.viewer, self.cal_images.value)
        if layer is None:
            raise InputError("source 'images': choose the reference images layer, a stack "
                             "(N, H, W) of images like your data, in its units")
        data = layer.data
        return np.array(data, copy=True) if isinstance(data, np.ndarray) else data

    def cancel(self, *_: Any) -> None:
        """Stop the calibration before its next step."""
        if self.controller.running:
            self.status.value = "cancelling..."
            self.controller.cancel()

    def _on_progress(self, value: tuple) -> None:
        done, total = value
        if done == total or done % 20 == 0:
            self.status.value = f"calibration: step {done}/{total}"

    def _on_calibrated(self, report: Any) -> None:
        self.report = report
        run = self._calib_run
        std = (run_companions(usable_layers(self.viewer.layers), run.provenance).get("std")
               if run else None)
        if run is not None and std is not None:
            for lt in band_layers(report, run.result, std, run_name=run.name,
                                  scale=self._scale(run.name)):
                self._put(lt)
        notify_info(report.summary(), self.status)

    def _on_error(self, exc: BaseException) -> None:
        report_error(exc, self.status, prefix="calibration failed: ")

    def _on_cancel(self) -> None:
        notify_info("calibration cancelled", self.status)

    def _on_finish(self) -> None:
        self.cal_button.enabled, self.cancel_button.enabled = True, False
