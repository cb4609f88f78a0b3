"""Reconstruct: run a method on a measurement layer in the background and show the result.

A measurement simulated by the plugin carries its operator (``metadata["invrec"]``), which is
rebuilt as it is and shown read-only; for other ("real") data the user picks the operator. The
run is :func:`napari_invrec.engine.runner.run` in a ``GeneratorWorker``: a single live layer
follows the throttled previews (until the user removes it; their pace bounds the share of GUI
time they take, :mod:`._pacing`), and at the end the live layer becomes the result layer and the
other result layers (:func:`napari_invrec.engine.layers.result_layers`, built in the worker
thread) are added one per event-loop turn (:mod:`._results`). Cancel stops
between two steps and adds nothing; errors become notifications. Run snapshots its inputs (the
measurement, mask/kernel and reference layers are copied), so editing a layer mid-run changes
nothing and the provenance describes what ran. Closing the viewer or the dock mid-run quits the
worker and touches no layer. 3-D measurement layers (``(T, H, W)`` stacks, typically dask) are
reconstructed plane by plane in one of :data:`STACK_MODES` (:mod:`._stack_runs`).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import napari
import numpy as np
from magicgui.widgets import ComboBox, Container, Label, ProgressBar, PushButton, SpinBox

from ..core.errors import InputError
from ..engine.device import gui_thread_budget
from ..engine.runner import prepare_measurement
from ..engine.runner import run as run_engine
from ._batch import choose_and_start as batch_folder
from ._dock import DockContainer
from ._inputs import LayerCombo, OperatorPanel, heading, labelled, layer_by_name
from ._levels import LevelReadout
from ._live import LiveLayer
from ._meta import checked_meta, layer_kind, layer_meta
from ._notify import guarded, notify_error, notify_info, notify_warning, report_error
from ._pacing import DisplayThrottle
from ._quality import QualityRow
from ._results import show_steps
from ._runs import RunController, dock_alive
from ._stack_runs import EAGER, LAZY, PLANE, STACK_MODES, VOLUME, StackRuns
from ._units import UnitsPanel
from .forms import ParamsForm, applicable_values

__all__ = ["ReconstructWidget", "STACK_MODES", "run_engine"]

_TOTAL_FIELDS = ("iters", "n_iters", "steps", "n_steps", "iterations")


def _total(values: dict) -> int:
    """Number of steps announced by a method's params (0 = unknown)."""
    for k in _TOTAL_FIELDS:
        if isinstance(values.get(k), int):
            return int(values[k])
    return 0


def _run_shown(name: str, scale: Any, provenance: dict, *args: Any, **kwargs: Any) -> Any:
    """:func:`run_engine` ``(*args, **kwargs)`` (looked up when called), then its result layer
    tuples with explicit contrast limits, built here in the worker thread: returns
    ``(result, layers)``."""
    from ..engine.layers import result_layers, with_contrast_limits

    result = yield from run_engine(*args, **kwargs)
    result.provenance.update(provenance or {})
    return result, with_contrast_limits(result_layers(result, name=name, scale=scale))


def _describe(spec: dict) -> str:
    """``"blur (kernel=gaussian, sigma=2)"`` for an operator spec."""
    from ..api import operator_params

    name = spec.get("operator", "?")
    try:
        vals = applicable_values(operator_params(name), {
            k: v for k, v in (spec.get("params") or {}).items() if not isinstance(v, dict)})
    except InputError:
        vals = {}
    given = [k for k, v in (spec.get("params") or {}).items() if isinstance(v, dict)]
    if any("mask" in k for k in given):  # a given mask overrides the sampling pattern
        vals = {k: v for k, v in vals.items()
                if k not in ("pattern", "seed", "acceleration", "keep", "mask")}
    inner = ", ".join([f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                       for k, v in vals.items()] + [f"{k.removesuffix('_array')} given"
                                                    for k in given])
    return f"{name} ({inner})" if inner else name


def _layer_array(layer: Any, meta: dict) -> Any:
    """The measurement array of a layer: the complex data it carries, else its data (the
    full-resolution level of a multiscale layer)."""
    if meta.get("complex_data") is not None:
        return meta["complex_data"]
    return layer.data[0] if getattr(layer, "multiscale", False) else layer.data


def _pixel_size(layer: Any, meta: dict, op: Any) -> list[float] | None:
    """Physical pixel size of the result: the file's spacing when the measurement is on the
    image grid (``None``: napari's default of 1)."""
    spacing = (meta.get("units") or {}).get("spacing")
    n = len(op.shape)
    if spacing and len(spacing) >= n and tuple(op.measurement_shape) == tuple(op.shape):
        return [float(v) for v in spacing[-n:]]
    return None


class ReconstructWidget(StackRuns, DockContainer):
    """Dock widget: measurement + operator + method + device -> background run -> result layers.

    Attributes
    ----------
    runs
        Finished runs: dicts with ``method``, ``params``, ``metrics``, ``time_s``, ``layers``.
    controller
        The :class:`~napari_invrec._widgets._runs.RunController` of the current run.
    """

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        from napari.layers import Image

        from ..api import list_operators
        from ..engine.device import available_devices

        super().__init__(labels=False)
        self.viewer = viewer
        self.runs: list[dict] = []
        self._alive = dock_alive(self, viewer)
        self.controller = RunController(alive=self._alive)
        # GUI updates while a run streams take at most ~15 % of the event loop's time, their
        # repaints included (the live layer's 10 %, the text's 5 %): the rest is the solver's
        self.live = LiveLayer(viewer)
        self._text_throttle = DisplayThrottle(max_hz=10.0, duty=0.05, repaints=True)
        self._showing: Any = None  # the Turns adding the last run's result layers
        self._run_info: dict = {}
        LevelReadout.install(viewer)  # the slider of a dirac run reads as its levels
        self.measurement = LayerCombo(viewer, (Image,), name="measurement", label="measurement",
                                      tooltip="measurement y (2-D, a (T, H, W) stack, or a "
                                              "(D, H, W) volume)")
        self.op_label = Label(value="", name="op_label")
        self.op_panel = OperatorPanel(viewer, list_operators(), name="op_panel")
        self.stack_mode = ComboBox(value=PLANE, choices=self._stack_modes, name="stack_mode",
                                   label="stack mode",
                                   tooltip="how to reconstruct a 3-D layer: as a volume (3-D "
                                           "physics) or plane by plane")
        self.method = ComboBox(choices=self._method_choices, name="method", label="method")
        self.method_form = ParamsForm(self._method_params(), name="method_params")
        self.quality = QualityRow(self)  # Auto / Best for this data (no ground truth)
        self.units = UnitsPanel(name="units_panel")
        self.device = ComboBox(value="auto", choices=["auto", *available_devices()],
                               name="device", label="device")
        self.seed = SpinBox(value=0, min=0, max=2 ** 31 - 1, name="seed", label="seed",
                            tooltip="seed of stochastic methods and random initialisations")
        self.reference = LayerCombo(viewer, (Image,), optional=True, name="reference",
                                    label="reference",
                                    tooltip="ground truth for PSNR/SSIM at every step")
        self.budget = SpinBox(value=256, min=1, max=65536, name="budget",
                              label="history budget (MB)",
                              tooltip="memory for stored iterates; older steps are thinned")
        self.run_button = PushButton(text="Run", name="run_button")
        self.pause_button = PushButton(text="Pause", name="pause_button", enabled=False)
        self.cancel_button = PushButton(text="Cancel", name="cancel_button", enabled=False)
        self.batch_button = PushButton(text="Batch folder...", name="batch_button",
                                       tooltip="reconstruct every file of a folder into another")
        buttons = Container(widgets=[self.run_button, self.pause_button, self.cancel_button,
                                     self.batch_button],
                            layout="horizontal", labels=False, name="buttons")
        self.progress = ProgressBar(value=0, min=0, max=1, name="progress")
        self.status = Label(value="", name="status")
        self.extend([labelled(self.measurement, self.stack_mode, name="data_box"),
                     heading("operator"), self.op_label, self.op_panel,
                     heading("method"), labelled(self.method, name="method_box"),
                     self.method_form, self.quality, self.units,
                     labelled(self.device, self.seed, self.reference, self.budget,
                              name="settings_box"),
                     buttons, self.progress, self.status])
        self.status.native.setWordWrap(True)
        self.op_label.native.setWordWrap(True)
        self.measurement.changed.connect(self._on_measurement)
        self.op_panel.operator.changed.connect(self._refresh_methods)
        self.method.changed.connect(self._on_method)
        self.stack_mode.changed.connect(self._refresh_methods)
        self.stack_mode.changed.connect(self._refresh_units)
        self.units.normalise.changed.connect(self._refresh_units)
        self.op_panel.operator.changed.connect(self._refresh_units)
        self.run_button.changed.connect(self.run)
        self.pause_button.changed.connect(self.toggle_pause)
        self.cancel_button.changed.connect(self.cancel)
        self.batch_button.changed.connect(lambda *_: batch_folder(self))
        viewer.layers.events.inserted.connect(self._on_inserted)
        self.native.destroyed.connect(self._on_destroyed)
        for layer in reversed(viewer.layers):
            if self._select_if_measurement(layer):
                break
        self._on_measurement()

    def _on_destroyed(self, *_: Any) -> None:
        """The dock is deleted: quit its worker and stop following the viewer's layers."""
        self.controller.shutdown()
        try:
            self.viewer.layers.events.inserted.disconnect(self._on_inserted)
        except (TypeError, ValueError, RuntimeError):
            pass

    # ------------------------------------------------------------------ form state
    def _meta(self) -> dict:
        """The measurement's plugin metadata for the form (``{}`` if absent or malformed; Run
        refuses a malformed one with :func:`~._meta.checked_meta`)."""
        layer = self.measurement.value
        return (layer_meta(layer) or {}) if layer is not None else {}

    def _stored_spec(self) -> dict | None:
        meta = self._meta()
        return meta.get("operator") if meta.get("kind") == "measurement" else None

    def operator_name(self) -> str:
        """Operator of the current measurement (stored spec, else the operator combo)."""
        spec = self._stored_spec()
        return spec["operator"] if spec else str(self.op_panel.operator.value)

    def _method_choices(self, _: Any = None) -> list[str]:
        from ..api import list_methods
        from ..core.methods import METHODS

        try:
            names = list_methods(self.operator_name())
        except InputError:
            return []
        return [m for m in names if METHODS[m].volumes] if self._is_volume() else names

    def _method_params(self) -> type:
        from ..api import method_params

        return method_params(self.method.value) if self.method.value else _NoParams

    def _select_if_measurement(self, layer: Any) -> bool:
        if layer_kind(layer) != "measurement":  # malformed metadata: never picked by itself
            return False
        self.measurement.value = layer
        return True

    @guarded
    def _on_inserted(self, event: Any) -> None:
        """A new measurement layer (e.g. just simulated) becomes the selected measurement."""
        if not self.controller.running:
            self._select_if_measurement(event.value)

    def _measurement_ndim(self) -> int:
        """Axes of one measurement of the current operator (2, or 3 for coils/patterns)."""
        from ..core.operators import OPERATORS

        spec = self._stored_spec()
        if spec is not None:
            return len(spec.get("measurement_shape") or spec["shape"])
        name = self.operator_name()
        if name not in OPERATORS:
            return 2
        try:
            params = self.op_panel.params()
        except InputError:
            params = OPERATORS[name].params()
        return OPERATORS[name].cls.measurement_ndim(params)

    def _has_extra_axis(self) -> bool:
        """Whether the layer has one axis more than a 2-D measurement of the operator."""
        layer = self.measurement.value
        return (layer is not None and not getattr(layer, "rgb", False)
                and layer.ndim == self._measurement_ndim() + 1)

    def _takes_volumes(self) -> bool:
        """Whether the operator family has 3-D physics (and the measurement is an image)."""
        from ..core.operators import OPERATORS

        name = self.operator_name()
        return (name in OPERATORS and 3 in OPERATORS[name].cls.spatial_ndims
                and self._measurement_ndim() == 2)

    def _stack_modes(self, _: Any = None) -> list[str]:
        return [VOLUME, *STACK_MODES] if self._takes_volumes() else list(STACK_MODES)

    def _is_volume(self) -> bool:
        """A 3-D layer run as one volume."""
        return self._has_extra_axis() and self.stack_mode.value == VOLUME

    def _is_stack(self) -> bool:
        """A 3-D layer run plane by plane."""
        return self._has_extra_axis() and self.stack_mode.value != VOLUME

    def _refresh_stack_modes(self) -> None:
        """Offer the volume mode where the physics is 3-D; pick it by default, once per layer
        and operator (a choice the user made then stays), for data in memory: a lazy (dask)
        layer keeps the plane in view, so that opening a large series reads one plane."""
        layer = self.measurement.value
        key = (id(layer), self.operator_name())
        with self.stack_mode.changed.blocked():
            self.stack_mode.reset_choices()
            if VOLUME in self.stack_mode.choices:
                lazy = layer is not None and not isinstance(_layer_array(layer, {}), np.ndarray)
                if key != getattr(self, "_stack_mode_for", None):
                    self.stack_mode.value = PLANE if lazy else VOLUME
            elif self.stack_mode.value not in self.stack_mode.choices:
                self.stack_mode.value = PLANE
        self._stack_mode_for = key
        self.stack_mode.visible = self._has_extra_axis()

    @guarded
    def _on_measurement(self, *_: Any) -> None:
        layer = self.measurement.value
        if layer is not None:
            try:
                checked_meta(layer)
            except InputError as err:  # chosen, but unusable: say why (Run refuses it too)
                notify_error(str(err), self.status)
        spec = self._stored_spec()
        self.op_label.value = (f"operator: {_describe(spec)}, as stored with the measurement"
                               if spec else "")
        self.op_label.visible = spec is not None
        self.op_panel.visible = spec is None
        gt = layer_by_name(self.viewer, self._meta().get("ground_truth"))
        if gt is not None and gt is not self.measurement.value:
            self.reference.value = gt
        self._refresh_methods()
        self._refresh_units()

    @guarded
    def _refresh_units(self, *_: Any) -> None:
        """Describe the selected measurement's units and noise level; fill the method's
        noise-level fields with the estimate."""
        try:
            y, op = self._current_plane()
            self.units.update(y, op)
        except InputError as err:
            self.units.clear(str(err).split(";")[0])
            return
        self.units.fill(self.method_form)

    def _current_plane(self) -> tuple[Any, Any]:
        """The measurement in view (one plane of a stack) and its operator."""
        from ..engine.stack import plane_chunks

        layer = self.measurement.value
        if layer is None:
            raise InputError("no measurement")
        meta = checked_meta(layer)
        data = _layer_array(layer, meta)
        if self._is_stack():
            data = plane_chunks(data)[self._plane_index(layer)].compute()
        y = np.asarray(data)
        return y, self._operator(y.shape, y, meta)

    @guarded
    def _refresh_methods(self, *_: Any) -> None:
        from ..core.methods.registry import default_method

        self._refresh_stack_modes()
        self.method.reset_choices()
        operator = self.operator_name()
        if operator != getattr(self, "_methods_for", None):  # a new operator: its default
            self._methods_for = operator
            preferred = default_method(operator)
            if preferred in self.method.choices:
                self.method.value = preferred
        if self._form_is_stale():
            self._on_method()

    def _form_defaults(self) -> dict:
        """The selected method's defaults on the measurement's operator family (e.g. dpir's
        40 iterations on MRI): what a new method form starts from."""
        from ..api import method_defaults

        try:
            return (method_defaults(self.method.value, self.operator_name())
                    if self.method.value else {})
        except InputError:  # the method does not take this operator: the form refuses later
            return {}

    def _form_is_stale(self) -> bool:
        """Whether the method form was built for another method than the selected one."""
        try:
            return self.method_form.params_cls is not self._method_params()
        except InputError:
            return True

    def _on_method(self, *_: Any) -> None:
        """Rebuild the method form for the selected method; if that fails, an empty form takes
        its place (Run then refuses: it never meets another method's form)."""
        try:
            form = ParamsForm(self._method_params(), values=self._form_defaults(),
                              name="method_params")
        except Exception as exc:  # noqa: BLE001 - reported; the old form must go regardless
            report_error(exc, self.status, prefix=f"the form of {self.method.value!r} could "
                                                  "not be built: ")
            form = ParamsForm(_NoParams, name="method_params")
        idx = self.index(self.method_form)
        self.remove(self.method_form)
        self.method_form = form
        self.insert(idx, self.method_form)
        self.units.fill(self.method_form)

    def budget_bytes(self) -> int:
        """The iterate-history budget of the form, bytes (every kind of run uses it)."""
        return int(self.budget.value) * 2 ** 20

    # ------------------------------------------------------------------ inputs
    def _operator(self, measurement_shape: tuple[int, ...], measurement: Any = None,
                  meta: dict | None = None) -> Any:
        """The operator for one measurement of ``measurement_shape`` (real data: array
        parameters the family derives from ``measurement``, e.g. estimated coil maps), from the
        measurement's checked metadata ``meta`` (default: the selected layer's)."""
        from ..core.operators.registry import operator_from_spec
        from ..engine.device import choose_device

        meta = self._meta() if meta is None else meta
        spec = meta.get("operator") if meta.get("kind") == "measurement" else None
        if spec is None:
            cls = self.op_panel.operator_class()
            params = self.op_panel.params()
            image_shape = cls.image_shape_for(tuple(measurement_shape), params)
            derived = ({} if measurement is None
                       else cls.arrays_from_measurement(params, measurement))
            return self.op_panel.build(image_shape, device=str(self.device.value), **derived)
        stored = tuple(spec.get("measurement_shape") or spec["shape"])
        if stored != tuple(measurement_shape):
            raise InputError(f"the stored operator is for measurements of shape {stored} but "
                             f"the layer holds {tuple(measurement_shape)}")
        arrays = {k: np.array(v, copy=True) for k, v in (meta.get("arrays") or {}).items()}
        return operator_from_spec(spec, arrays or None, measurement=measurement,
                                  device=choose_device(str(self.device.value)))

    def _plane_index(self, layer: Any) -> int:
        pos = layer.world_to_data(self.viewer.dims.point)
        return int(np.clip(round(float(pos[0])), 0, _layer_array(layer, {}).shape[0] - 1))

    def _reference(self, shape: tuple[int, ...], plane: int | None) -> np.ndarray | None:
        from ..core.validation import check_image_array

        ref = self.reference.value
        if ref is None:
            return None
        data = ref.data
        if plane is not None and np.ndim(data) == 3:
            data = data[plane]
        arr = check_image_array(data, f"reference {ref.name!r}", complex_ok=True,
                                ndim=len(shape))
        if arr.shape != tuple(shape):
            raise InputError(f"reference {ref.name!r} has shape {arr.shape} but the image is "
                             f"{tuple(shape)}; pick another reference or 'none'")
        return np.array(arr, copy=True)  # a snapshot: editing the layer mid-run changes nothing

    # ------------------------------------------------------------------ actions
    @guarded
    def run(self, *_: Any, provenance: dict | None = None, note: str = "") -> Any:
        """Start a run from the current settings; returns the worker (``None`` if refused).
        ``provenance`` entries are added to the result's record (e.g. the search that chose
        the settings) and ``note`` to the closing status line."""
        from ..core.validation import check_image_array
        from ..engine.layers import run_name
        from ..engine.stack import plane_chunks

        if self.controller.running:
            raise InputError("a run is already in progress; wait for it or Cancel it first")
        layer = self.measurement.value
        if layer is None:
            raise InputError("no measurement layer: simulate one or open an image")
        meta = checked_meta(layer)  # malformed metadata: refused, with the reason
        data = _layer_array(layer, meta)
        shape = tuple(data.shape)  # never np.size/np.asarray here: a dask stack stays lazy
        m_ndim = self._measurement_ndim()
        if getattr(layer, "rgb", False) or len(shape) not in (m_ndim, m_ndim + 1) or 0 in shape:
            check_image_array(data, f"layer {layer.name!r}", ndim=m_ndim)  # says why
        stack = len(shape) == m_ndim + 1 and not self._is_volume()
        if stack and m_ndim != 2 and self.stack_mode.value != PLANE:
            raise InputError(f"layer {layer.name!r} is a stack of {m_ndim}-D measurements "
                             f"{shape}: only stack mode {PLANE!r} reconstructs those; pick it")
        if not self.method.value:
            raise InputError(f"no method supports the operator {self.operator_name()!r}")
        if self._form_is_stale():
            self._on_method()
            if self._form_is_stale():
                raise InputError(f"the parameter form of {self.method.value!r} could not be "
                                 "built; pick the method again or another method")
        # snapshot: the worker never reads a layer's buffer, so editing a layer mid-run
        # changes nothing and the provenance describes what ran (dask stacks are immutable)
        if stack and isinstance(data, np.ndarray):
            data = data.copy()
        y = None if stack else np.array(data, copy=True)
        plane = None
        if stack and self.stack_mode.value == PLANE:  # only the plane in view is computed;
            plane = self._plane_index(layer)  # its data may build the operator (coil maps)
            y = np.array(plane_chunks(data)[plane].compute(), copy=True)
        op = self._operator(shape[1:] if stack else shape, y, meta)
        method = str(self.method.value)
        params = self.method_form.params()
        name = run_name(method, op.name)
        if stack:
            if self.stack_mode.value == LAZY:
                return self._add_lazy(data, op, method, name)
            if self.stack_mode.value == EAGER:
                return self._start_eager(data, op, method, name)
            name = f"{name} [plane {plane}]"
        prepare_measurement(y, op)  # NaN, shape, dtype: refuse before any worker starts
        ref = self.reference.value
        if plane is not None and ref is not None and np.ndim(ref.data) == len(shape) == 4:
            # a file's reference broadcast over the coil axis (napari aligns trailing axes)
            reference = np.array(check_image_array(ref.data[plane, 0], f"reference "
                                                    f"{ref.name!r}"), copy=True)
            if reference.shape != tuple(op.shape):
                raise InputError(f"reference {ref.name!r} is {reference.shape[0]} x "
                                 f"{reference.shape[1]} but the image is {op.shape[0]} x "
                                 f"{op.shape[1]}; pick another reference or 'none'")
        else:
            reference = self._reference(op.shape, plane)
        gt = meta.get("ground_truth") or (self.reference.value.name
                                          if self.reference.value is not None else None)
        self._run_info = {"name": name, "method": method, "params": params, "step": 0,
                          "t0": time.perf_counter(), "contrast": self._contrast(),
                          "scale": _pixel_size(layer, meta, op),
                          "provenance": provenance or {}, "note": note}
        self.live.start(name, tuple(op.shape), self._run_info["contrast"],  # not mid-run
                        history=_total(self.method_form.values()) > 1)
        self._set_running(True)
        return self.controller.start(
            _run_shown, name, self._run_info["scale"], provenance or {},
            y, op, method, params, seed=int(self.seed.value), reference=reference,
            budget_bytes=self.budget_bytes(), noise=meta.get("noise"),
            threads=gui_thread_budget(), normalise=self.units.mode,
            ground_truth=gt, total=_total(self.method_form.values()), desc=name,
            on_yield=self._on_progress, on_return=self._on_result, on_error=self._on_error,
            on_cancel=self._on_cancel, on_finish=self._on_finish, on_pause=self._on_pause,
            cancellable=True, activity=False)  # the dock's own bar: no status-bar animation

    def _contrast(self) -> tuple[float, float] | None:
        ref = self.reference.value
        return tuple(ref.contrast_limits) if ref is not None else None

    def toggle_pause(self, *_: Any) -> None:
        """Pause or resume the running worker."""
        self.controller.toggle_pause()

    def cancel(self, *_: Any) -> None:
        """Stop the running worker before its next step."""
        if self.controller.running:
            self.status.value = "cancelling..."
            self.controller.cancel()

    # ------------------------------------------------------------------ worker slots
    def _set_running(self, running: bool) -> None:
        self.run_button.enabled = not running
        self.pause_button.enabled = running
        self.cancel_button.enabled = running
        self.pause_button.text = "Pause"
        self.quality.set_running(running)
        if running:
            self.progress.value = 0
            self.reveal(self.status)  # the run's progress, below the form's buttons
            self.live.throttle.reset()
            self._text_throttle.reset()

    def _on_pause(self, paused: bool) -> None:
        self.pause_button.text = "Resume" if paused else "Pause"
        if paused:
            self.status.value = f"paused at step {self._run_info.get('step', 0)}"

    def _on_progress(self, prog: Any) -> None:
        """One step: the status text and the live layer, each when its throttle allows, never
        both in one slot but at the last step (each repaints the window: one stall, not two)."""
        self._run_info["step"] = prog.step
        last = prog.step >= prog.total
        live = prog.preview is not None and self.live.wants(last)
        if (last or not live) and self._text_throttle.ready(last):
            started = time.perf_counter()
            self.progress.max = max(int(prog.total), 1)
            self.progress.value = min(int(prog.step), self.progress.max)
            text = [f"step {prog.step}/{prog.total}"]
            for k in ("residual", "psnr"):
                if k in prog.metrics:
                    text.append(f"{k} {prog.metrics[k]:.4g}")
            self.status.value = " · ".join(text)
            self._text_throttle.done(started)
        if live:
            self.live.show(prog.preview)

    def _on_result(self, payload: tuple) -> None:
        """Show the finished run: the live layer becomes the result layer, then each other
        layer, the step slider and the closing line follow in event-loop turns of their own;
        the run counts as running until they are all shown."""
        from ._turns import Turns

        result, layers = payload
        live, history = self.live.take()
        added: list = []
        steps = show_steps(self.viewer, layers, live, added, history)
        if len(result.steps) > 1:  # history layers: show the final step, not the first
            steps.append(lambda: self.viewer.dims.set_current_step(0, len(result.steps) - 1))
        steps.append(lambda: self._record(result, added))
        release = self.controller.hold()

        def failed(exc: BaseException) -> None:
            report_error(exc, self.status, prefix=f"{self._run_info.get('name', 'run')}: "
                                                  "showing the result failed: ")

        self._showing = Turns(steps, alive=self._alive, on_error=failed,
                              on_done=release).start()

    def _record(self, result: Any, added: list) -> None:
        """The finished run in :attr:`runs` and the closing notification."""
        from ..core.params import to_dict

        info = self._run_info
        secs = time.perf_counter() - info["t0"]
        self.runs.append({"method": info["method"], "params": to_dict(info["params"]),
                          "metrics": dict(result.metrics), "time_s": secs,
                          "layers": [lay.name for lay in added]})
        shown = [k for k in ("psnr", "ssim", "residual") if k in result.metrics]
        metrics = " · ".join(f"{k} {result.metrics[k]:.4g}" for k in shown)
        steps = int(result.provenance.get("timings", {}).get("steps", len(result.steps)))
        note = f" · {info['note']}" if info.get("note") else ""
        line = f"{info['name']}: {steps} steps in {secs:.2f} s · {metrics}{note}"
        warned = result.provenance.get("warnings")
        if warned:
            notify_warning(f"{line} · {'; '.join(warned)}", self.status)
        else:
            notify_info(line, self.status)

    def _on_error(self, exc: BaseException) -> None:
        self.live.remove()
        report_error(exc, self.status, prefix=f"{self._run_info.get('name', 'run')} failed: ")

    def _on_cancel(self) -> None:
        self.live.remove()
        notify_info(f"{self._run_info.get('name', 'run')} cancelled at step "
                    f"{self._run_info.get('step', 0)}; nothing was added", self.status)

    def _on_finish(self) -> None:
        self._set_running(False)


@dataclasses.dataclass
class _NoParams:
    """Stand-in params class while no method is available (renders an empty form)."""
