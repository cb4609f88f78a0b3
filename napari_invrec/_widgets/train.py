"""Train: train a denoiser (supervised or self-supervised) in the background, then use it.

The widget only reads its fields into a :class:`~napari_invrec.engine.training.TrainSpec`;
:func:`~napari_invrec.engine.training.prepare_training` checks it on the main thread (bad input
becomes a notification before anything starts) and
:func:`~napari_invrec.engine.training.execute_training` runs in a ``GeneratorWorker`` through
:class:`~napari_invrec._widgets._runs.RunController` (progress in napari's activity dock,
Cancel between two steps). A live plot shows the training loss and the validation PSNR. When
the weights are saved and registered, every open parameter form re-reads its choices
(:func:`~napari_invrec._widgets.forms.refresh_choices`), so the new network appears at once in
the Reconstruct widget's ``denoiser`` combo. Input layers are only read.

With data "measurement layer" an unrolled network learns from the user's own measurements (a
measurement layer, one or a stack, with the operator it carries) by SSDU or equivariant
imaging: no image is needed anywhere.
"""

from __future__ import annotations

import time
from typing import Any

import napari
import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FloatSpinBox,
    Label,
    LineEdit,
    PushButton,
    SpinBox,
)

from ..core.errors import InputError
from ..core.operators.degradation import SCHEDULE_OPERATORS
from ..core.operators.registry import OPERATORS
from ._dock import DockContainer
from ._inputs import LayerCombo, OperatorPanel, heading, labelled
from ._notify import guarded, notify_info, report_error
from ._pacing import DisplayThrottle
from ._runs import RunController, dock_alive
from .plots import DARK, PlotCanvas

__all__ = ["TrainWidget", "TASK_CHOICES", "SOURCES", "LAYER", "FOLDER"]

TASK_CHOICES = [("supervised denoiser", "denoiser"),
                ("self-supervised (Noise2Self)", "noise2self"),
                ("generative prior: VAE (csgm)", "vae"),
                ("end-to-end network for one operator", "end-to-end"),
                ("unrolled network for one operator", "unrolled"),
                ("network + learned acquisition (MRI pattern, phase masks)", "acquisition"),
                ("incremental diffusion (Dirac): blur or inpaint", "dirac")]
LAYER, FOLDER, MEASUREMENTS = "image layer", "folder", "measurement layer"
SOURCES = ("atoms", "phantoms", "mixed", "natural", "general", LAYER, FOLDER, MEASUREMENTS)
_WIDTH_KW = {"drunet": {"scales": 3, "blocks": 1}, "dncnn": {"depth": 8},
             "vae": {"latent_channels": 8}, "learned-admm": {"stages": 6, "depth": 4},
             "unrolled-pgd": {"stages": 6, "depth": 4}, "varnet": {"cascades": 6, "scales": 3},
             "humus-net": {"cascades": 6, "scales": 3, "blocks": 2, "heads": 4, "window": 8},
             "unet": {"scales": 4}, "swinir": {"groups": 2, "depth": 4, "heads": 4, "window": 8},
             "cgan": {"scales": 4}, "mcnn": {"depth": 3}, "dirac": {"scales": 4},
             "unrolled-phase": {"stages": 6, "depth": 4}}
DENOISER_ARCHS, VAE_ARCHS = ("drunet", "dncnn"), ("vae",)
UNROLLED_ARCHS = ("learned-admm", "unrolled-pgd", "varnet", "humus-net")
END_TO_END_ARCHS = ("unet", "swinir", "cgan", "mcnn")
INIT_CHOICES = [("adjoint A^H y", "adjoint"), ("pseudo-inverse A^+ y", "pinv")]
ACQUISITION_ARCHS = ("varnet",)
#: phase retrieval (the one non-linear operator a network is trained for) has its own network
PHASE_ARCHS = ("unrolled-phase",)
#: operators whose acquisition is learned (an MRI sampling pattern, coded diffraction masks)
ACQUISITION_OPERATORS = ("mri", "phase")
SUPERVISION_CHOICES = [("ground truth", "supervised"), ("measurements only (SSDU)", "ssdu"),
                       ("measurements only (EI)", "ei")]


class TrainWidget(DockContainer):
    """Dock widget: task, data, network and schedule -> background training -> new weights.

    Attributes
    ----------
    controller
        The :class:`RunController` of the current training run.
    history
        ``{"step": [...], "loss": [...], "val_step": [...], "val_psnr": [...]}`` of the
        current (or last) run, as plotted.
    last_entry
        The :class:`~napari_invrec.core.models.registry.WeightsEntry` of the last finished run.
    """

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        from napari.layers import Image

        from ..api import list_operators
        from ..engine.device import available_devices
        from ..engine.training import SIGMA_DISTS, SSDU_SPLIT

        super().__init__(labels=False)
        self.viewer = viewer
        self.controller = RunController(alive=dock_alive(self, viewer))
        self.history: dict[str, list] = {}
        self.last_entry: Any = None
        self._info: dict = {}
        self._throttle = DisplayThrottle(max_hz=5.0, duty=0.1)
        self.task = ComboBox(value="denoiser", choices=TASK_CHOICES, name="task", label="task",
                             tooltip="supervised: clean images + simulated Gaussian noise; "
                                     "self-supervised: learns from noisy images alone; VAE: "
                                     "the generator of csgm, from clean images")
        self.source = ComboBox(value="mixed", choices=list(SOURCES), name="source",
                               label="data", tooltip="synthetic atoms/phantoms, the allowed "
                               "scikit-image images, an image layer or a folder of images; "
                               "for an unrolled network, your measurements (a measurement "
                               "layer: one or a stack, with its operator)")
        self.layer = LayerCombo(viewer, (Image,), name="layer", label="layer",
                                tooltip="2-D single-channel image (for Noise2Self: the noisy "
                                        "data), or a measurement layer; only read")
        self.folder = LineEdit(value="", name="folder", label="folder",
                               tooltip="folder of .tif/.png/.npy images")
        self.augment = CheckBox(value=False, name="augment", label="vary scale, contrast",
                                tooltip="cut patches at 1/2-2x their size and vary gamma, "
                                "contrast, polarity and blur (data spec '+aug'), so that the "
                                "network does not learn one pixel size or intensity range")
        self.arch = ComboBox(value="drunet", choices=list(DENOISER_ARCHS), name="arch",
                             label="network")
        self.op_panel = OperatorPanel(viewer, list_operators(linear=True) + ["phase"],
                                      name="op_panel", visible=False)
        self.noise_sigma = FloatSpinBox(value=0.01, min=0.0, max=10.0, step=0.005,
                                        name="noise_sigma", label="measurement noise std",
                                        visible=False, tooltip="Gaussian noise of the "
                                        "simulated training measurements (images in [0, 1])")
        self.init = ComboBox(value="adjoint", choices=INIT_CHOICES, name="init",
                             label="network input", visible=False,
                             tooltip="the initial reconstruction the end-to-end network "
                             "maps to the image (recorded with the weights)")
        self.supervision = ComboBox(value="supervised", choices=SUPERVISION_CHOICES,
                                    name="supervision", label="learn from", visible=False,
                                    tooltip="ground truth, or the measurements alone (SSDU: "
                                    "their samples split into input and loss, inpaint and "
                                    "mri; EI: consistency and equivariance to rotations and "
                                    "shifts, any linear operator)")
        self.split = FloatSpinBox(value=SSDU_SPLIT, min=0.01, max=0.99, step=0.05,
                                  name="split", label="held-out fraction", visible=False,
                                  tooltip="SSDU: the fraction of each measurement's samples "
                                  "held out for the loss (the network sees the rest)")
        self.masks = SpinBox(value=1, min=1, max=16, name="masks",
                             label="splits per measurement", visible=False,
                             tooltip="SSDU: independent splits of each measurement per step "
                             "(multi-mask SSDU: more held-out samples per step, as many "
                             "times the work)")
        self.split_samples = CheckBox(value=False, name="split_samples",
                                      label="split single k-space samples", visible=False,
                                      tooltip="SSDU on MRI: hold out single samples rather "
                                      "than whole columns (a wider variety of input masks)")
        self.net_width = SpinBox(value=16, min=1, max=256, name="net_width", label="width",
                             tooltip="feature channels at the finest scale")
        self.steps = SpinBox(value=1000, min=1, max=10 ** 7, name="steps", label="steps")
        self.batch = SpinBox(value=16, min=1, max=4096, name="batch", label="batch")
        self.patch = SpinBox(value=48, min=8, max=1024, name="patch", label="patch (px)")
        self.sigma_min = FloatSpinBox(value=0.0, min=0.0, max=10.0, step=0.01, name="sigma_min",
                                      label="noise std min", tooltip="training noise levels "
                                      "(images in [0, 1]); supervised only")
        self.sigma_max = FloatSpinBox(value=0.2, min=0.0, max=10.0, step=0.01, name="sigma_max",
                                      label="noise std max")
        self.sigma_dist = ComboBox(value="uniform", choices=list(SIGMA_DISTS), name="sigma_dist",
                                   label="noise levels",
                                   tooltip="uniform, or log-uniform with loss weights for a "
                                   "diffusion score model spanning decades (min > 0)")
        self.beta = FloatSpinBox(value=1e-3, min=0.0, max=10.0, step=1e-3, name="beta",
                                 label="KL weight beta", visible=False,
                                 tooltip="VAE loss: ||x - G(z)||^2 + beta KL(q(z|x) || N(0, I))")
        self.lr = LineEdit(value="0.001", name="lr", label="learning rate",
                           tooltip="initial Adam learning rate (cosine-decayed)")
        self.seed = SpinBox(value=0, min=0, max=2 ** 31 - 1, name="seed", label="seed")
        self.device = ComboBox(value="auto", choices=["auto", *available_devices()],
                               name="device", label="device")
        self.weights_name = LineEdit(value="my-denoiser", name="weights_name", label="name",
                                     tooltip="name of the new weights (selectable as denoiser)")
        self.checkpoint = LineEdit(value="", name="checkpoint", label="checkpoint",
                                   tooltip="checkpoint file to write (empty: next to the "
                                           "weights)")
        self.resume = LineEdit(value="", name="resume", label="resume from",
                               tooltip="checkpoint to continue from (empty: start afresh)")
        self.init_weights = LineEdit(value="", name="init_weights", label="fine-tune from",
                                     tooltip="installed weights of the same network to start "
                                     "from (empty: a random initialisation)")
        self.train_button = PushButton(text="Train", name="train_button")
        self.cancel_button = PushButton(text="Cancel", name="cancel_button", enabled=False)
        buttons = Container(widgets=[self.train_button, self.cancel_button],
                            layout="horizontal", labels=False, name="buttons")
        self.status = Label(value="", name="status")
        self.extend([labelled(self.task, name="task_box"), heading("data"),
                     labelled(self.source, self.layer, self.folder, self.augment,
                              name="data_box"),
                     heading("network"), labelled(self.arch, self.net_width, name="net_box"),
                     self.op_panel,
                     labelled(self.noise_sigma, self.init, self.supervision, self.split,
                              self.masks, self.split_samples, name="noise_box"),
                     heading("schedule"),
                     labelled(self.steps, self.batch, self.patch, self.sigma_min,
                              self.sigma_max, self.sigma_dist, self.beta, self.lr, self.seed,
                              self.device,
                              name="schedule_box"),
                     heading("output"),
                     labelled(self.weights_name, self.checkpoint, self.resume,
                              self.init_weights, name="out_box"),
                     buttons, self.status])
        self.status.native.setWordWrap(True)
        self.plot = PlotCanvas(height=200)
        self.body.layout().addWidget(self.plot)
        self._reset_plot()
        self.task.changed.connect(self._on_task)
        self.source.changed.connect(self._on_source)
        self.op_panel.operator.changed.connect(self._on_task)  # phase has its own network
        self.supervision.changed.connect(self._on_task)  # SSDU's held-out fraction
        self.train_button.changed.connect(self.train)
        self.cancel_button.changed.connect(self.cancel)
        self.native.destroyed.connect(self.controller.shutdown)  # closing the dock quits it
        self._on_source()

    # ------------------------------------------------------------------ form state
    def _on_task(self, *_: Any) -> None:
        task = self.task.value
        n2s, vae, unrolled = task == "noise2self", task == "vae", task == "unrolled"
        acquisition, e2e, dirac = task == "acquisition", task == "end-to-end", task == "dirac"
        if n2s and self.source.value not in (LAYER, FOLDER):
            self.source.value = LAYER
        operator = self.op_panel.operator.value
        if acquisition and operator not in ACQUISITION_OPERATORS:
            self.op_panel.operator.value = operator = ACQUISITION_OPERATORS[0]
        if (e2e or dirac) and operator == "phase":  # they start from a linear A^H y
            self.op_panel.operator.value = operator = "blur"
        if dirac and self.op_panel.operator.value not in SCHEDULE_OPERATORS:
            self.op_panel.operator.value = SCHEDULE_OPERATORS[0]
        archs = (VAE_ARCHS if vae else ("drunet",) if n2s
                 else PHASE_ARCHS if (unrolled or acquisition) and operator == "phase"
                 else UNROLLED_ARCHS if unrolled
                 else ACQUISITION_ARCHS if acquisition else END_TO_END_ARCHS if e2e
                 else ("dirac",) if dirac else DENOISER_ARCHS)
        if (e2e or dirac) and self.source.value == MEASUREMENTS:  # they learn from images
            self.source.value = "natural"
        if tuple(self.arch.choices) != archs:
            self.arch.choices = archs
            self.arch.value = archs[0]
        noisy = task == "denoiser"
        self.sigma_min.visible = self.sigma_max.visible = self.sigma_dist.visible = noisy
        self.beta.visible = vae
        measured = self.source.value == MEASUREMENTS  # the operator is the layer's
        self.op_panel.visible = self.noise_sigma.visible = \
            (unrolled or acquisition or e2e or dirac) and not measured
        self.init.visible = e2e
        self.supervision.visible = unrolled
        self.augment.visible = self._augmentable()
        if unrolled and measured and self.supervision.value == "supervised":
            self.supervision.value = "ssdu"
        ssdu = unrolled and self.supervision.value == "ssdu"
        self.split.visible = self.masks.visible = self.split_samples.visible = ssdu

    def _augmentable(self) -> bool:
        """Whether the data are clean images that ``+aug`` may vary (not Noise2Self's noisy
        data, not measurements)."""
        return self.task.value != "noise2self" and self.source.value != MEASUREMENTS

    def _on_source(self, *_: Any) -> None:
        self.layer.visible = self.source.value in (LAYER, MEASUREMENTS)
        self.folder.visible = self.source.value == FOLDER
        self._on_task()

    def _data_spec(self) -> str:
        """The data spec of the current settings (``arrays:LAYER`` for an image layer,
        ``measurements:LAYER`` for a measurement layer)."""
        src = str(self.source.value)
        if src == MEASUREMENTS:
            return f"measurements:{self._measurement_layer().name}"
        aug = "+aug" if self._augmentable() and self.augment.value else ""
        return self._image_spec(src) + aug

    def _image_spec(self, src: str) -> str:
        if src == LAYER:
            layer = self.layer.value
            if layer is None:
                raise InputError("no image layer to train on: open an image or pick another "
                                 "data source")
            return f"arrays:{layer.name}"
        if src == FOLDER:
            if not self.folder.value.strip():
                raise InputError("give the folder of training images")
            return f"folder:{self.folder.value.strip()}"
        return src

    def _measurement_layer(self) -> Any:
        """The chosen layer, checked to be a measurement (with its operator)."""
        from ..engine.layers import invrec_meta

        layer = self.layer.value
        if layer is None:
            raise InputError("no measurement layer to learn from: simulate one (Simulate) or "
                             "open a measurement file")
        if invrec_meta(layer.metadata).get("kind") != "measurement":
            raise InputError(f"layer {layer.name!r} is not a measurement (it carries no "
                             "operator): pick a layer made by Simulate or read from a "
                             "measurement file")
        return layer

    def _measurements(self) -> Any:
        """A copy of the chosen measurement layer's data with its operator (``None`` unless
        the source is a measurement layer)."""
        from ..engine.layers import invrec_meta, measurement_from_layer
        from ..engine.measurement_training import MeasurementStack

        if str(self.source.value) != MEASUREMENTS:
            return None
        layer = self._measurement_layer()
        meta = invrec_meta(layer.metadata)
        data = np.array(measurement_from_layer(layer.data, layer.metadata), copy=True)
        return MeasurementStack(data, dict(meta["operator"]), dict(meta.get("arrays") or {}))

    def _arrays(self) -> np.ndarray | None:
        """A copy of the chosen layer's data (``None`` unless the source is a layer)."""
        layer = self.layer.value
        if str(self.source.value) != LAYER or layer is None:
            return None
        if getattr(layer, "rgb", False):
            raise InputError(f"layer {layer.name!r} is RGB; convert it to one channel "
                             "(e.g. skimage.color.rgb2gray) to train on it")
        return np.array(layer.data, copy=True)  # the worker never sees the layer's buffer

    def spec(self) -> Any:
        """The :class:`~napari_invrec.engine.training.TrainSpec` of the current settings.

        Raises
        ------
        InputError
            A learning rate that is not a positive number.
        """
        from ..engine.training import OPERATOR_TASKS, TrainSpec

        try:
            lr = float(self.lr.value)
        except ValueError:
            raise InputError(f"learning rate {self.lr.value!r} is not a number; enter e.g. "
                             "0.001") from None
        arch = str(self.arch.value)
        data = self._data_spec()
        task = str(self.task.value)
        simulated = task in OPERATOR_TASKS \
            and not data.startswith("measurements:")  # else the layer's operator, in the engine
        operator = {"operator": self.op_panel.name_value,
                    "op_params": dict(self.op_panel.form.values()),
                    "noise_sigma": float(self.noise_sigma.value)} if simulated else {}
        if task == "unrolled":
            operator["supervision"] = str(self.supervision.value)
            operator["split"] = float(self.split.value)
            operator["masks"] = int(self.masks.value)
            operator["split_lines"] = not bool(self.split_samples.value)
        if task == "end-to-end":
            operator["init"] = str(self.init.value)
        arch_kwargs = {"width": int(self.net_width.value), **_WIDTH_KW[arch]}
        if "operator" in operator and task in ("unrolled", "acquisition") \
                and arch != "unrolled-phase":  # the operator's real or complex images
            # (end-to-end and dirac networks see real images; unrolled-phase complex ones)
            arch_kwargs["complex_images"] = bool(
                OPERATORS[operator["operator"]].complex_image)
        return TrainSpec(task=task, arch=arch, **operator,
                         arch_kwargs=arch_kwargs,
                         data=data, steps=int(self.steps.value), batch=int(self.batch.value),
                         patch=int(self.patch.value), lr=lr, seed=int(self.seed.value),
                         sigma_min=float(self.sigma_min.value),
                         sigma_max=float(self.sigma_max.value),
                         sigma_dist=str(self.sigma_dist.value), beta=float(self.beta.value),
                         device=str(self.device.value),
                         val_every=max(1, int(self.steps.value) // 20),
                         name=self.weights_name.value.strip(),
                         checkpoint=self.checkpoint.value.strip() or None,
                         resume=self.resume.value.strip() or None,
                         init_weights=self.init_weights.value.strip() or None)

    # ------------------------------------------------------------------ actions
    @guarded
    def train(self, *_: Any) -> Any:
        """Check the settings and start training; returns the worker (``None`` if refused)."""
        from ..engine.device import gui_thread_budget
        from ..engine.training import execute_training, prepare_training

        if self.controller.running:
            raise InputError("a training run is in progress; wait for it or Cancel it first")
        spec = self.spec()
        plan = prepare_training(spec, arrays=self._arrays(), measurements=self._measurements())
        self._info = {"name": spec.name, "step": 0, "t0": time.perf_counter(),
                      "total": spec.steps}
        self.history = {"step": [], "loss": [], "val_step": [], "val_psnr": []}
        self._reset_plot()
        self._set_running(True)
        self.status.value = f"training {spec.name!r}..."
        return self.controller.start(
            execute_training, plan, threads=gui_thread_budget(), total=spec.steps,
            desc=f"train {spec.name}",
            on_yield=self._on_progress, on_return=self._on_result, on_error=self._on_error,
            on_cancel=self._on_cancel, on_finish=self._on_finish)

    def cancel(self, *_: Any) -> None:
        """Stop training before its next step; nothing is saved or registered."""
        if self.controller.running:
            self.status.value = "cancelling..."
            self.controller.cancel()

    # ------------------------------------------------------------------ worker slots
    def _set_running(self, running: bool) -> None:
        self.train_button.enabled = not running
        self.cancel_button.enabled = running
        if running:  # the loss plot, below the form, is what there is to watch now
            self.reveal(self.plot)

    def _on_progress(self, state: Any) -> None:
        h = self.history
        self._info["step"] = state.step
        h["step"].append(state.step)
        h["loss"].append(state.loss)
        if state.val_psnr is not None and (not h["val_step"] or h["val_psnr"][-1]
                                           != state.val_psnr):
            h["val_step"].append(state.step)
            h["val_psnr"].append(state.val_psnr)
        last = state.step >= state.total
        started = time.perf_counter()
        if self._throttle.ready(last):
            val = "" if state.val_psnr is None else f" · val PSNR {state.val_psnr:.2f} dB"
            self.status.value = (f"step {state.step}/{state.total} · loss {state.loss:.3g}"
                                 f"{val} · {state.elapsed:.1f} s")
            self._draw()
            self._throttle.done(started)

    def _on_result(self, entry: Any) -> None:
        from ..engine.training import OPERATOR_TASKS
        from .forms import refresh_choices

        self.last_entry = entry
        self._draw()
        refresh_choices()
        m = entry.metrics
        if "val_psnr" in m:
            fig = f"val PSNR {m['val_psnr']:.2f} dB"
            if "noisy_psnr" in m:
                fig += f" (noisy {m['noisy_psnr']:.2f} dB)"
        else:
            fig = f"val loss {m.get('val_loss', m['final_loss']):.4g}"
        op = (entry.operator or {}).get("operator")
        use = ("the csgm generator" if entry.task == "vae" else
               f"the weights of {entry.architecture} for {op}"
               if entry.task in OPERATOR_TASKS else
               "the noise2self method's network" if entry.training == "noise2self" else
               "a denoiser")
        notify_info(f"trained {entry.name}: {fig}; now selectable as {use}", self.status)

    def _on_error(self, exc: BaseException) -> None:
        report_error(exc, self.status, prefix=f"training {self._info.get('name', '')!r} failed: ")

    def _on_cancel(self) -> None:
        notify_info(f"training {self._info.get('name', '')!r} cancelled at step "
                    f"{self._info.get('step', 0)}; no weights were saved or registered "
                    "(resume from the checkpoint to continue)", self.status)

    def _on_finish(self) -> None:
        self._set_running(False)

    # ------------------------------------------------------------------ plot
    def _reset_plot(self) -> None:
        self._reset_plot_axes()
        self.plot.draw()

    def _draw(self) -> None:
        h = self.history
        ax_loss, ax_psnr = self._reset_plot_axes()
        if h.get("step"):
            ax_loss.plot(h["step"], h["loss"], linewidth=1.0)
            if min(h["loss"]) > 0:
                ax_loss.set_yscale("log")
        if h.get("val_step"):
            ax_psnr.plot(h["val_step"], h["val_psnr"], marker="o", markersize=3,
                         linewidth=1.2, color="#ffb74d")
        else:
            ax_psnr.text(0.5, 0.5, "no validation PSNR (no clean reference)",
                         ha="center", va="center", transform=ax_psnr.transAxes,
                         color=DARK["muted"], fontsize=8)
        self.plot.draw()

    def _reset_plot_axes(self) -> list[Any]:
        axes = self.plot.reset(2)
        axes[0].set_ylabel("loss", fontsize=8)
        axes[1].set_ylabel("val PSNR (dB)", fontsize=8)
        axes[1].set_xlabel("step", fontsize=8)
        return axes
