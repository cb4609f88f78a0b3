"""Simulate measurement: ``y = N(A x)`` from an image layer, as a new measurement layer.

The measurement layer carries the operator spec, noise parameters, array parameters and the
name of the ground-truth layer (:func:`napari_invrec.engine.layers.measurement_layer`), so the
Reconstruct widget can invert it as it is. Simulating a 256 px image takes milliseconds, so it
runs on the main thread. The input layer is only read.
"""

from __future__ import annotations

from typing import Any

import napari
from magicgui.widgets import CheckBox, Label, PushButton

from ..core.validation import check_image_array
from ._dock import DockContainer
from ._inputs import LayerCombo, OperatorPanel, heading, labelled
from ._notify import guarded, notify_info
from .forms import ParamsForm

__all__ = ["SimulateWidget"]


class SimulateWidget(DockContainer):
    """Dock widget: pick an image, an operator and a noise model, add the measurement layer.

    Parameters
    ----------
    viewer
        The napari viewer.
    """

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        from napari.layers import Image

        from ..api import list_operators
        from ..core.operators.noise import NoiseParams

        super().__init__(labels=False)
        self.viewer = viewer
        self.image = LayerCombo(viewer, (Image), name="image", label="image",
                                tooltip="ground-truth image x (2-D, single channel)")
        self.op_panel = OperatorPanel(viewer, list_operators(), name="op_panel")
        if "blur" in list_operators():
            self.op_panel.operator.value = "blur"
        self.noise_form = ParamsForm(NoiseParams, name="noise")
        self.rescale = CheckBox(value=False, name="rescale", label="rescale integer images",
                                tooltip="divide integer images by their dtype's maximum "
                                        "(e.g. 255) instead of refusing them")
        self.simulate_button = PushButton(text="Simulate", name="simulate_button")
        self.status = Label(value="", name="status")
        self.extend([labelled(self.image, name="image_box"), heading("operator"),
                     self.op_panel, heading("noise"), self.noise_form, self.rescale,
                     self.simulate_button, self.status])
        self.status.native.setWordWrap(True)
        self.simulate_button.changed.connect(self.simulate)

    @guarded
    def simulate(self, *_: Any) -> list[Any] | None:
        """Simulate from the current settings; returns the added layers (``None`` on error)."""
        import napari.layers
        import numpy as np
        import torch

        from ..api import simulate as api_simulate
        from ..core.errors import InputError
        from ..engine.layers import measurement_layer

        layer = self.image.value
        if layer is None:
            raise InputError("no image layer: open an image or a sample (File > Open Sample)")
        volume = (np.ndim(layer.data) == 3 and not getattr(layer, "rgb", False)
                  and 3 in self.op_panel.operator_class().spatial_ndims)
        arr = check_image_array(layer.data, f"layer {layer.name!r}",
                                rescale_integers=bool(self.rescale.value),
                                ndim=3 if volume else 2)
        op = self.op_panel.build(arr.shape)
        noise = self.noise_form.params()
        y = api_simulate(arr, op, noise=noise.model, sigma=noise.sigma, photons=noise.photons,
                         seed=noise.seed)
        summary = self.op_panel.summary()
        name = f"{layer.name} · {op.name}" + (f" {summary}" if summary else "")
        data, kwargs, ltype = measurement_layer(y, op, noise, name=name,
                                                ground_truth=layer.name)
        added = [self.viewer.add_layer(napari.layers.Layer.create(data, kwargs, ltype))]
        # the operator's extra views of y (sampling mask, coil images, RSS...), hidden at first
        y_t = torch.from_numpy(np.ascontiguousarray(y))[None, None].to(op.device)
        with torch.no_grad():
            views = op.measurement_views(op.as_measurement(y_t))
        for view, arr in views.items():
            meta = {"invrec": {"kind": "view", "view": view, "of": added[0].name}}
            added.append(self.viewer.add_image(
                arr.detach().cpu().numpy(), name=f"{added[0].name} [{view}]", colormap="gray",
                visible=False, metadata=meta))
        self.status.value = f"added {added[0].name!r}"
        notify_info(f"simulated {added[0].name!r} ({op.name}, {noise.model} noise)")
        return added
