"""Reconstruct: run a method on a measurement layer in the background and show the result.

A measurement simulated by the plugin carries its operator (``metadata["invrec"]``), which is
rebuilt as it is and shown read-only; for other ("real") data the user picks the operator. The
run is :func:`napari_invrec.engine.runner.run` in a ``GeneratorWorker``: a single live layer
follows the throttled previews, and at the end the live layer is replaced by the result layers
(:func:`napari_invrec.engine.layers.result_layers`). Cancel stops between two steps and adds
nothing; errors become notifications. 3-D measurement layers (``(T, H, W)`` stacks, typically
dask) are reconstructed plane by plane in one of :data:`STACK_MODES`.
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
from ._inputs import LayerCombo, OperatorPanel, heading, labelled, layer_by_name
from ._notify import error_message, guarded, notify_error, notify_info
from ._runs import DisplayThrottle, RunController
from .forms import ParamsForm, applicable_values

__all__ = ["ReconstructWidget", "STACK_MODES", "run_engine"]

PLANE, LAZY, EAGER = "plane in view", "all planes (lazy)", "all planes now"
STACK_MODES = (PLANE, LAZY, EAGER)
_TOTAL_FIELDS = ("iters", "n_iters", "steps", "n_steps", "iterations")


def _total(values: dict) -> int:
    """Number of steps announced by a method's params (0 = unknown)."""
    for k in _TOTAL_FIELDS:
        if isinstance(values.get(k), int):
            return int(values[k])
    return 0


def _describe(spec: dict) -> str:
    """``"blur (kernel=gaussian, sigma=2)"`` for an operator spec."""
    from ..api import operator_params

    name = spec.get("operator", "?")
    try:
        vals = applicable_values(operator_params(name), {
            k: v for k, v in spec.get("params", {}).items() if not isinstance(v, dict)})
    except InputError:
        vals = {}
    inner = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                      for k, v in vals.items())
    return f"{name} ({inner})" if inner else name


class ReconstructWidget(Container):
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
        self.controller = RunController()
        self._live: Any = None
        self._live_throttle = DisplayThrottle(max_hz=30.0, duty=0.25)
        self._text_throttle = DisplayThrottle(max_hz=10.0, duty=0.1)
        self._run_info: dict = {}
        self.measurement = LayerCombo(viewer, (Image,), name="measurement", label="measurement",
                                      tooltip="measurement y (2-D, or a (T, H, W) stack)")
        self.op_label = Label(value="", name="op_label")
        self.op_panel = OperatorPanel(viewer, list_operators(), name="op_panel")
        self.stack_mode = ComboBox(value=PLANE, choices=list(STACK_MODES), name="stack_mode",
                                   label="stack mode", tooltip="how to reconstruct a stack")
        self.method = ComboBox(choices=self._method_choices, name="method", label="method")
        self.method_form = ParamsForm(self._method_params(), name="method_params")
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
        buttons = Container(widgets=[self.run_button, self.pause_button, self.cancel_button],
                            layout="horizontal", labels=False, name="buttons")
        self.progress = ProgressBar(value=0, min=0, max=1, name="progress")
        self.status = Label(value="", name="status")
        self.extend([labelled(self.measurement, self.stack_mode, name="data_box"),
                     heading("operator"), self.op_label, self.op_panel,
                     heading("method"), labelled(self.method, name="method_box"),
                     self.method_form,
                     labelled(self.device, self.seed, self.reference, self.budget,
                              name="settings_box"),
                     buttons, self.progress, self.status])
        self.status.native.setWordWrap(True)
        self.op_label.native.setWordWrap(True)
        self.measurement.changed.connect(self._on_measurement)
        self.op_panel.operator.changed.connect(self._refresh_methods)
        self.method.changed.connect(self._on_method)
        self.run_button.changed.connect(self.run)
        self.pause_button.changed.connect(self.toggle_pause)
        self.cancel_button.changed.connect(self.cancel)
        viewer.layers.events.inserted.connect(self._on_inserted)
        for layer in reversed(viewer.layers):
            if self._select_if_measurement(layer):
                break
        self._on_measurement()

    # ------------------------------------------------------------------ form state
    def _meta(self) -> dict:
        from ..engine.layers import invrec_meta

        layer = self.measurement.value
        return invrec_meta(layer.metadata) if layer is not None else {}

    def _stored_spec(self) -> dict | None:
        meta = self._meta()
        return meta.get("operator") if meta.get("kind") == "measurement" else None

    def operator_name(self) -> str:
        """Operator of the current measurement (stored spec, else the operator combo)."""
        spec = self._stored_spec()
        return spec["operator"] if spec else str(self.op_panel.operator.value)

    def _method_choices(self, _: Any = None) -> list[str]:
        from ..api import list_methods

        try:
            return list_methods(self.operator_name())
        except InputError:
            return []

    def _method_params(self) -> type:
        from ..api import method_params

        return method_params(self.method.value) if self.method.value else _NoParams

    def _select_if_measurement(self, layer: Any) -> bool:
        from ..engine.layers import invrec_meta

        if invrec_meta(layer.metadata).get("kind") != "measurement":
            return False
        self.measurement.value = layer
        return True

    def _on_inserted(self, event: Any) -> None:
        """A new measurement layer (e.g. just simulated) becomes the selected measurement."""
        try:
            if not self.controller.running:
                self._select_if_measurement(event.value)
        except RuntimeError:  # the widget was deleted before the viewer
            pass

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

    def _is_stack(self) -> bool:
        layer = self.measurement.value
        return (layer is not None and not getattr(layer, "rgb", False)
                and layer.ndim == self._measurement_ndim() + 1)

    def _on_measurement(self, *_: Any) -> None:
        spec = self._stored_spec()
        self.op_label.value = (f"operator: {_describe(spec)}, as stored with the measurement"
                               if spec else "")
        self.op_label.visible = spec is not None
        self.op_panel.visible = spec is None
        self.stack_mode.visible = self._is_stack()
        gt = layer_by_name(self.viewer, self._meta().get("ground_truth"))
        if gt is not None and gt is not self.measurement.value:
            self.reference.value = gt
        self._refresh_methods()

    def _refresh_methods(self, *_: Any) -> None:
        self.method.reset_choices()
        if self.method_form.params_cls is not self._method_params():
            self._on_method()

    def _on_method(self, *_: Any) -> None:
        idx = self.index(self.method_form)
        self.remove(self.method_form)
        self.method_form = ParamsForm(self._method_params(), name="method_params")
        self.insert(idx, self.method_form)

    # ------------------------------------------------------------------ inputs
    def _operator(self, measurement_shape: tuple[int, ...], measurement: Any = None) -> Any:
        """The operator for one measurement of ``measurement_shape`` (real data: array
        parameters the family derives from ``measurement``, e.g. estimated coil maps)."""
        from ..core.operators.registry import operator_from_spec
        from ..engine.device import choose_device

        spec = self._stored_spec()
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
        return operator_from_spec(spec, self._meta().get("arrays"),
                                  device=choose_device(str(self.device.value)))

    def _plane_index(self, layer: Any) -> int:
        pos = layer.world_to_data(self.viewer.dims.point)
        return int(np.clip(round(float(pos[0])), 0, layer.data.shape[0] - 1))

    def _reference(self, shape: tuple[int, int], plane: int | None) -> np.ndarray | None:
        from ..core.validation import check_image_array

        ref = self.reference.value
        if ref is None:
            return None
        data = ref.data
        if plane is not None and np.ndim(data) == 3:
            data = data[plane]
        arr = check_image_array(data, f"reference {ref.name!r}", complex_ok=True)
        if arr.shape != tuple(shape):
            raise InputError(f"reference {ref.name!r} has shape {arr.shape} but the image is "
                             f"{tuple(shape)}; pick another reference or 'none'")
        return arr

    # ------------------------------------------------------------------ actions
    @guarded
    def run(self, *_: Any) -> Any:
        """Start a run from the current settings; returns the worker (``None`` if refused)."""
        from ..core.validation import check_image_array
        from ..engine.layers import measurement_from_layer, run_name
        from ..engine.stack import plane_chunks

        if self.controller.running:
            raise InputError("a run is already in progress; wait for it or Cancel it first")
        layer = self.measurement.value
        if layer is None:
            raise InputError("no measurement layer: simulate one or open an image")
        data = measurement_from_layer(layer.data, layer.metadata)
        shape = tuple(data.shape)  # never np.size/np.asarray here: a dask stack stays lazy
        m_ndim = self._measurement_ndim()
        if getattr(layer, "rgb", False) or len(shape) not in (m_ndim, m_ndim + 1) or 0 in shape:
            check_image_array(data, f"layer {layer.name!r}", ndim=m_ndim)  # says why
        stack = len(shape) == m_ndim + 1
        if stack and m_ndim != 2:
            raise InputError(f"layer {layer.name!r} has shape {shape}: stacks of "
                             f"{m_ndim}-D measurements are not supported; pick one measurement")
        if not self.method.value:
            raise InputError(f"no method supports the operator {self.operator_name()!r}")
        op = self._operator(shape[1:] if stack else shape, None if stack else data)
        method = str(self.method.value)
        params = self.method_form.params()
        name = run_name(method, op.name)
        plane = None
        if stack:
            if self.stack_mode.value == LAZY:
                return self._add_lazy(data, op, method, name)
            if self.stack_mode.value == EAGER:
                return self._start_eager(data, op, method, name)
            plane = self._plane_index(layer)
            data = np.asarray(plane_chunks(data)[plane].compute())
            name = f"{name} [plane {plane}]"
        y = np.asarray(data)
        prepare_measurement(y, op)  # NaN, shape, dtype: refuse before any worker starts
        reference = self._reference(op.shape, plane)
        meta = self._meta()
        gt = meta.get("ground_truth") or (self.reference.value.name
                                          if self.reference.value is not None else None)
        self._run_info = {"name": name, "method": method, "params": params, "step": 0,
                          "t0": time.perf_counter(), "contrast": self._contrast()}
        self._set_running(True)
        return self.controller.start(
            run_engine, y, op, method, params, seed=int(self.seed.value), reference=reference,
            budget_bytes=int(self.budget.value) * 2 ** 20, noise=meta.get("noise"),
            threads=gui_thread_budget(),
            ground_truth=gt, total=_total(self.method_form.values()), desc=name,
            on_yield=self._on_progress, on_return=self._on_result, on_error=self._on_error,
            on_cancel=self._on_cancel, on_finish=self._on_finish, on_pause=self._on_pause)

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
        if running:
            self.progress.value = 0

    def _on_pause(self, paused: bool) -> None:
        self.pause_button.text = "Resume" if paused else "Pause"
        if paused:
            self.status.value = f"paused at step {self._run_info.get('step', 0)}"

    def _on_progress(self, prog: Any) -> None:
        self._run_info["step"] = prog.step
        last = prog.step >= prog.total
        started = time.perf_counter()
        if self._text_throttle.ready(last):
            self.progress.max = max(int(prog.total), 1)
            self.progress.value = min(int(prog.step), self.progress.max)
            text = [f"step {prog.step}/{prog.total}"]
            for k in ("residual", "psnr"):
                if k in prog.metrics:
                    text.append(f"{k} {prog.metrics[k]:.4g}")
            self.status.value = " · ".join(text)
            self._text_throttle.done(started)
        if prog.preview is None or not self._live_throttle.ready(last):
            return
        started = time.perf_counter()
        if self._live is None or self._live not in self.viewer.layers:
            kw = {"contrast_limits": self._run_info["contrast"]} if self._run_info.get(
                "contrast") else {}
            self._live = self.viewer.add_image(
                prog.preview, name=f"{self._run_info['name']} [live]", colormap="gray",
                metadata={"invrec": {"kind": "live"}}, **kw)
        else:
            self._live.data = prog.preview
        self._live_throttle.done(started)

    def _remove_live(self) -> None:
        if self._live is not None and self._live in self.viewer.layers:
            self.viewer.layers.remove(self._live)
        self._live = None

    def _on_result(self, result: Any) -> None:
        from napari.layers import Layer

        from ..core.params import to_dict
        from ..engine.layers import result_layers

        self._remove_live()
        info = self._run_info
        added = [self.viewer.add_layer(Layer.create(*t))
                 for t in result_layers(result, name=info["name"])]
        secs = time.perf_counter() - info["t0"]
        self.runs.append({"method": info["method"], "params": to_dict(info["params"]),
                          "metrics": dict(result.metrics), "time_s": secs,
                          "layers": [lay.name for lay in added]})
        shown = [k for k in ("psnr", "ssim", "residual") if k in result.metrics]
        metrics = " · ".join(f"{k} {result.metrics[k]:.4g}" for k in shown)
        steps = int(result.provenance.get("timings", {}).get("steps", len(result.steps)))
        notify_info(f"{info['name']}: {steps} steps in {secs:.2f} s · {metrics}", self.status)

    def _on_error(self, exc: BaseException) -> None:
        self._remove_live()
        notify_error(f"{self._run_info.get('name', 'run')} failed: {error_message(exc)}",
                     self.status)

    def _on_cancel(self) -> None:
        self._remove_live()
        notify_info(f"{self._run_info.get('name', 'run')} cancelled at step "
                    f"{self._run_info.get('step', 0)}; nothing was added", self.status)

    def _on_finish(self) -> None:
        self._set_running(False)

    # ------------------------------------------------------------------ stacks
    def _stack_kwargs(self) -> dict:
        return {"seed": int(self.seed.value), "history_budget": 2 ** 20,
                "threads": gui_thread_budget(),
                **self.method_form.values()}

    def _stack_meta(self, op: Any, method: str, mode: str) -> dict:
        from ..core.params import to_dict

        return {"invrec": {"kind": "stack", "mode": mode, "method": method,
                           "operator": op.spec(), "seed": int(self.seed.value),
                           "params": to_dict(self.method_form.params())}}

    def _stack_contrast(self, op: Any) -> tuple[float, float]:
        layer = self.measurement.value
        if self.reference.value is not None:
            return tuple(self.reference.value.contrast_limits)
        if not op.complex_measurement and layer is not None:
            return tuple(layer.contrast_limits)
        return (0.0, 1.0)

    def _add_lazy(self, data: Any, op: Any, method: str, name: str) -> Any:
        from ..engine.stack import reconstruct_lazy

        lazy = reconstruct_lazy(data, op, method, **self._stack_kwargs())
        # explicit contrast limits: napari would otherwise compute every plane to find them
        layer = self.viewer.add_image(lazy, name=f"{name} [lazy]", colormap="gray",
                                      contrast_limits=self._stack_contrast(op),
                                      metadata=self._stack_meta(op, method, "lazy"))
        notify_info(f"added {layer.name!r}: each plane is reconstructed when viewed",
                    self.status)
        return layer

    def _start_eager(self, data: Any, op: Any, method: str, name: str) -> Any:
        from ..engine.stack import reconstruct_eager

        n = int(np.prod(data.shape[:-2]))
        meta = self._stack_meta(op, method, "eager")
        self._run_info = {"name": f"{name} [all planes]", "method": method, "step": 0,
                          "t0": time.perf_counter(), "contrast": self._stack_contrast(op)}

        def on_plane(done_total: tuple[int, int]) -> None:
            done, total = done_total
            self._run_info["step"] = done
            self.progress.max = total
            self.progress.value = done
            self.status.value = f"plane {done}/{total}"

        def on_done(stack: np.ndarray) -> None:
            info = self._run_info
            layer = self.viewer.add_image(stack, name=info["name"], colormap="gray",
                                          contrast_limits=info["contrast"], metadata=meta)
            notify_info(f"{layer.name}: {n} planes in "
                        f"{time.perf_counter() - info['t0']:.2f} s", self.status)

        self._set_running(True)
        return self.controller.start(
            reconstruct_eager, data, op, method, total=n, desc=self._run_info["name"],
            on_yield=on_plane, on_return=on_done, on_error=self._on_error,
            on_cancel=self._on_cancel, on_finish=self._on_finish, on_pause=self._on_pause,
            **self._stack_kwargs())


@dataclasses.dataclass
class _NoParams:
    """Stand-in params class while no method is available (renders an empty form)."""
