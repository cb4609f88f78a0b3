"""The end of a run in the Reconstruct dock: its layers appear without freezing the GUI.

The worker thread builds the layer tuples (:func:`~napari_invrec.engine.layers.result_layers`)
with explicit contrast limits (:func:`~napari_invrec.engine.layers.with_contrast_limits`), so
napari never scans an iterate stack on the GUI thread, and the stacks are the run's own arrays
(the iterate history is handed over as a view of its store, no copy). The GUI thread then runs
:func:`show_steps` one per event-loop turn (:class:`~._turns.Turns`): the live layer becomes the
result layer in place (removing a layer runs a full ``gc.collect()`` in napari, hundreds of
milliseconds with torch loaded, and adding one builds a canvas visual and its controls), the
hidden placeholder added at Run becomes the iterate history, then each other layer is added
in a turn of its own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["adopt", "show_steps"]

#: layer attributes :func:`adopt` carries over from a result layer tuple
_ADOPTED = ("colormap", "blending", "scale")


def adopt(layer: Any, data: Any, kwargs: dict, *, grow: bool = False) -> bool:
    """Make ``layer`` (the live layer, a placeholder) the layer ``(data, kwargs)``: its data,
    metadata, name, contrast limits and display settings. Returns ``False`` (and changes
    nothing) when the shapes differ (with ``grow``, a placeholder's first axis may), so the
    caller adds a new layer instead."""
    old, new = tuple(layer.data.shape), tuple(data.shape)
    fits = (old[1:], len(old)) == (new[1:], len(new)) if grow else old == new
    if not fits:
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
               added: list | None = None, history: Any = None) -> list[Callable[[], None]]:
    """The GUI steps that put a run's ``layers`` (layer tuples, the result first) in ``viewer``,
    one layer per step; the first reuses the ``live`` layer when there is one (or removes it
    when it cannot be reused), and the layer named like the hidden placeholder ``history``
    is shown in it (the placeholder is removed when no layer takes it). Each layer shown is
    appended to ``added``."""
    from napari.layers import Layer

    added = [] if added is None else added

    def add(t: tuple) -> Callable[[], None]:
        return lambda: added.append(viewer.add_layer(Layer.create(*t)))

    def reuse(layer: Any, t: tuple, grow: bool = False) -> Callable[[], None]:
        def step() -> None:
            if layer in viewer.layers and adopt(layer, t[0], t[1], grow=grow):
                added.append(layer)
                return
            if layer in viewer.layers:  # rare (a result shaped unlike its previews)
                viewer.layers.remove(layer)
            add(t)()

        return step

    steps = [add(t) for t in layers]
    if live is not None and layers:
        steps[0] = reuse(live, layers[0])
    if history is not None:
        names = [t[1]["name"] for t in layers]
        if history.name in names[1:]:
            i = names.index(history.name, 1)
            fill = reuse(history, layers[i], grow=True)

            def show_history() -> None:
                # shown first: napari leaves the dims alone when a hidden layer's data grow
                history.visible = True
                fill()

            steps[i] = show_history
        else:  # the run stored no history after all
            steps.append(lambda: viewer.layers.remove(history)
                         if history in viewer.layers else None)
    return steps
