"""The end of a run in the Reconstruct dock: its layers appear without freezing the GUI.

The worker thread builds the layer tuples (:func:`~napari_invrec.engine.layers.result_layers`)
with explicit contrast limits (:func:`~napari_invrec.engine.layers.with_contrast_limits`), so
napari never scans an iterate stack on the GUI thread, and the stacks are the run's own arrays
(the iterate history is handed over as a view of its store, no copy). The GUI thread then runs
:func:`show_steps` one per event-loop turn (:class:`~._turns.Turns`): the live layer becomes the
result layer in place (removing a layer runs a full ``gc.collect()`` in napari, hundreds of
milliseconds with torch loaded, and adding one builds a canvas visual and its controls), then
each other layer is added in a turn of its own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["adopt_live", "show_steps"]

#: layer attributes :func:`adopt_live` carries over from a result layer tuple
_ADOPTED = ("colormap", "blending", "scale")


def adopt_live(layer: Any, data: Any, kwargs: dict) -> bool:
    """Make the live layer ``layer`` the result layer ``(data, kwargs)``: its data, metadata,
    name, contrast limits and display settings. Returns ``False`` (and changes nothing) when
    the shapes differ, so the caller adds a new layer instead."""
    if tuple(layer.data.shape) != tuple(data.shape):
        return False
    layer.data = data
    layer.metadata = kwargs.get("metadata", {})
    for key in _ADOPTED:
        if kwargs.get(key) is not None:
            setattr(layer, key, kwargs[key])
    limits = kwargs.get("contrast_limits")
    if limits is not None:
        lo, hi = (float(v) for v in limits)
        layer.contrast_limits_range = (lo, hi)
        layer.contrast_limits = (lo, hi)
    else:
        layer.reset_contrast_limits()
    layer.name = kwargs["name"]
    return True


def show_steps(viewer: Any, layers: list[tuple], live: Any = None,
               added: list | None = None) -> list[Callable[[], None]]:
    """The GUI steps that put a run's ``layers`` (layer tuples, the result first) in ``viewer``,
    one layer per step; the first reuses the ``live`` layer when there is one (or removes it
    when it cannot be reused). Each layer shown is appended to ``added``."""
    from napari.layers import Layer

    added = [] if added is None else added

    def add(t: tuple) -> Callable[[], None]:
        return lambda: added.append(viewer.add_layer(Layer.create(*t)))

    steps = [add(t) for t in layers]
    if live is not None and layers:
        data, kwargs, _ = layers[0]

        def first() -> None:
            if live in viewer.layers and adopt_live(live, data, kwargs):
                added.append(live)
                return
            if live in viewer.layers:  # rare (a result shaped unlike its previews)
                viewer.layers.remove(live)
            add(layers[0])()

        steps[0] = first
    return steps
