"""Layer inputs shared by the Simulate and Reconstruct widgets.

* :class:`LayerCombo` lists the viewer's layers of some types and follows additions, removals
  and renames;
* :func:`mask_from_layer` / :func:`kernel_from_layer` turn a Labels/Shapes or Image layer into
  the array parameter of an operator (``mask_array``, ``kernel_array``);
* :class:`OperatorPanel` is the operator combo, its generated form and the optional mask/kernel
  layer combos; :meth:`OperatorPanel.build` makes the operator for an image shape.

Array parameters are the operator params fields declared with ``gui=False``; a field whose name
contains ``mask`` is fed from the mask combo and one containing ``kernel`` from the kernel combo,
when the field's ``when`` condition holds. A new operator needs no code here.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
from magicgui.widgets import ComboBox, Container, Label

from ..core.errors import InputError
from ..core.validation import check_image_array, check_mask_array
from .forms import ParamsForm

__all__ = ["LayerCombo", "OperatorPanel", "mask_from_layer", "kernel_from_layer",
           "layer_by_name", "array_roles", "labelled", "heading"]


def heading(text: str) -> Label:
    """A bold section title."""
    return Label(value=f"<b>{text}</b>", name=f"{text.replace(' ', '_')}_heading")


def labelled(*widgets: Any, name: str) -> Container:
    """A borderless labelled column of ``widgets``, for use inside an unlabelled container.

    Dock widgets are unlabelled columns of such groups, generated forms and buttons, so that a
    nested form does not sit behind an empty label column.
    """
    box = Container(widgets=list(widgets), labels=True, name=name)
    box.margins = (0, 0, 0, 0)
    return box


def layer_by_name(viewer: Any, name: str | None) -> Any:
    """The layer called ``name`` in ``viewer``, or ``None``."""
    if not name:
        return None
    for layer in viewer.layers:
        if layer.name == name:
            return layer
    return None


class LayerCombo(ComboBox):
    """Combo box of the viewer's layers of ``types`` (the values are the layer objects).

    Parameters
    ----------
    viewer
        The napari viewer.
    types
        Layer classes to list.
    optional
        Start the list with ``"none"`` (value ``None``).
    """

    def __init__(self, viewer: Any, types: tuple[type, ...], *, optional: bool = False,
                 **kwargs: Any) -> None:
        self._viewer = viewer
        self._types = types
        self._optional = optional
        super().__init__(choices=self._layer_choices, nullable=optional, **kwargs)
        events = viewer.layers.events
        for ev in (events.inserted, events.removed, events.moved, events.reordered):
            ev.connect(self._refresh)
        events.inserted.connect(self._watch_name)
        for layer in viewer.layers:
            layer.events.name.connect(self._refresh)

    def _layer_choices(self, _: Any = None) -> list[tuple[str, Any]]:
        out = [("none", None)] if self._optional else []
        out += [(lay.name, lay) for lay in self._viewer.layers if isinstance(lay, self._types)]
        return out

    def _watch_name(self, event: Any) -> None:
        event.value.events.name.connect(self._refresh)

    def _refresh(self, *_: Any) -> None:
        try:
            self.reset_choices()
        except RuntimeError:  # the Qt widget was deleted before the viewer
            pass


def mask_from_layer(layer: Any, shape: tuple[int, int]) -> np.ndarray:
    """0/1 float32 mask of ``shape`` from a Labels layer (nonzero) or Shapes layer (inside).

    Raises
    ------
    InputError
        Wrong layer type, wrong shape, or a mask that keeps no pixel.
    """
    from napari.layers import Labels, Shapes

    name = f"mask layer {layer.name!r}"
    if isinstance(layer, Labels):
        data = np.asarray(layer.data)
    elif isinstance(layer, Shapes):
        if len(layer.data) == 0:
            raise InputError(f"{name} has no shapes; draw the measured region first")
        data = np.asarray(layer.to_masks(mask_shape=tuple(shape))).any(axis=0)
    else:
        raise InputError(f"{name} must be a Labels or Shapes layer")
    return check_mask_array(data, tuple(shape), name)


def kernel_from_layer(layer: Any) -> np.ndarray:
    """A float32 kernel from an Image layer: 2-D, or a 3-D PSF for volumes (the operator
    normalises it and says if it does not fit the image)."""
    ndim = 3 if np.ndim(layer.data) == 3 and not getattr(layer, "rgb", False) else 2
    return check_image_array(layer.data, f"kernel layer {layer.name!r}", ndim=ndim)


def array_roles(params_cls: type) -> dict[str, dataclasses.Field]:
    """``{"mask": field, "kernel": field}``: the array (``gui=False``) fields of a params class."""
    out: dict[str, dataclasses.Field] = {}
    for f in dataclasses.fields(params_cls):
        if f.metadata.get("gui", True):
            continue
        for role in ("mask", "kernel"):
            if role in f.name and role not in out:
                out[role] = f
    return out


class OperatorPanel(Container):
    """Operator combo, its parameter form and the mask/kernel layer combos.

    Parameters
    ----------
    viewer
        The napari viewer (for the layer combos).
    operators
        Operator names to offer.
    """

    def __init__(self, viewer: Any, operators: list[str], **kwargs: Any) -> None:
        from napari.layers import Image, Labels, Shapes

        super().__init__(labels=False, **kwargs)
        self.margins = (0, 0, 0, 0)
        self.operator = ComboBox(name="operator", label="operator", choices=operators,
                                 tooltip="forward model A of y = A(x) + noise")
        self.form = ParamsForm(self._params_cls(), name="operator_params")
        self.mask_layer = LayerCombo(viewer, (Labels, Shapes), optional=True, name="mask_layer",
                                     label="mask from layer",
                                     tooltip="Labels (nonzero) or Shapes (inside) = measured "
                                             "pixels; used by a custom mask")
        self.kernel_layer = LayerCombo(viewer, (Image,), optional=True, name="kernel_layer",
                                       label="kernel from layer",
                                       tooltip="image of the point-spread function; used by a "
                                               "custom kernel")
        self.extend([labelled(self.operator, name="operator_box"), self.form,
                     labelled(self.mask_layer, self.kernel_layer, name="layer_box")])
        self.operator.changed.connect(self._on_operator)
        self.form.changed.connect(self._update_layer_combos)
        self._update_layer_combos()

    # ------------------------------------------------------------------ state
    @property
    def name_value(self) -> str:
        """Selected operator name."""
        return str(self.operator.value)

    def _params_cls(self) -> type:
        from ..api import operator_params

        return operator_params(self.operator.value)

    def _on_operator(self, *_: Any) -> None:
        form = ParamsForm(self._params_cls(), name="operator_params")  # before the old one goes
        idx = self.index(self.form)
        self.remove(self.form)
        self.form = form
        self.form.changed.connect(self._update_layer_combos)
        self.insert(idx, self.form)
        self._update_layer_combos()

    def _role_active(self, role: str) -> bool:
        f = array_roles(self.form.params_cls).get(role)
        if f is None:
            return False
        return self.form.condition_met(f.metadata.get("when"))

    def _update_layer_combos(self, *_: Any) -> None:
        self.mask_layer.visible = self._role_active("mask")
        self.kernel_layer.visible = self._role_active("kernel")

    def operator_class(self) -> type:
        """The selected operator family's class."""
        from ..core.operators import OPERATORS

        return OPERATORS[self.name_value].cls

    def params(self) -> Any:
        """The form's values as the family's params dataclass (array fields left unset)."""
        from ..core.params import make_params

        return make_params(self.form.params_cls, **self.form.values())

    # ------------------------------------------------------------------ building
    def arrays(self, shape: tuple[int, int]) -> dict[str, np.ndarray]:
        """Array parameters from the mask/kernel layers for an image of ``shape``: copies, so
        that editing a layer later cannot change an operator built from it."""
        roles = array_roles(self.form.params_cls)
        out = {}
        if self._role_active("mask") and self.mask_layer.value is not None:
            out[roles["mask"].name] = mask_from_layer(self.mask_layer.value, shape)
        if self._role_active("kernel") and self.kernel_layer.value is not None:
            out[roles["kernel"].name] = kernel_from_layer(self.kernel_layer.value)
        return {k: np.array(v, copy=True) for k, v in out.items()}

    def build(self, shape: tuple[int, ...], device: str | None = None, **arrays: Any) -> Any:
        """The operator for images of ``shape`` (``device``: ``None``/``"auto"`` = best): a
        volume for a family with 3-D physics, else the last two axes;
        ``arrays`` adds array parameters (e.g. coil maps estimated from the measurement).

        Raises
        ------
        InputError
            Bad parameter, bad mask/kernel layer, or a custom array that was not provided.
        """
        from ..api import make_operator

        keep = 3 if len(shape) == 3 and 3 in self.operator_class().spatial_ndims else 2
        shape = tuple(int(s) for s in shape[-keep:])  # a volume, or one plane of a stack
        params = {**self.form.values(), **self.arrays(shape), **arrays}
        roles = array_roles(self.form.params_cls)
        for role, f in roles.items():
            when = f.metadata.get("when")
            if when and self.form.condition_met(when) and f.name not in params:
                where = ("an Image layer in 'kernel from layer'" if role == "kernel" else
                         "a Labels or Shapes layer in 'mask from layer'")
                raise InputError(f"{self.name_value} with a custom {role} needs a {role}: "
                                 f"pick {where}")
        return make_operator(self.name_value, shape, device=device, **params)

    def summary(self) -> str:
        """Short text of the settings, e.g. ``"gaussian sigma=1.5"`` (for layer names)."""
        parts = []
        for k, v in self.form.values().items():
            if k == "seed" or (isinstance(v, (int, float)) and not isinstance(v, bool) and v == 0):
                continue
            if isinstance(v, str):
                parts.append(v)
            elif isinstance(v, float):
                parts.append(f"{k}={v:g}")
            else:
                parts.append(f"{k}={v}")
        return " ".join(parts[:2])
