"""Stack runs of the Reconstruct dock: a ``(T, H, W)`` measurement reconstructed plane by plane.

A 3-D layer of an operator family with 3-D physics (blur with a 3-D PSF, denoising,
inpainting) may instead run as one volume (:data:`VOLUME`, an ordinary run of the whole
array); that is the default for those families.

:class:`StackRuns` is a mixin of :class:`~napari_invrec._widgets.reconstruct.ReconstructWidget`
for two of the :data:`STACK_MODES` (the third, the plane in view, is an ordinary run of one
plane): a lazy layer whose planes are reconstructed when napari shows them
(:func:`~napari_invrec.engine.stack.reconstruct_lazy`) and an eager background run over every
plane (:func:`~napari_invrec.engine.stack.reconstruct_eager`). Both use the dock's settings,
the iterate-history budget included, and a stack the caller has already snapshotted.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from ..engine.device import gui_thread_budget
from ._notify import notify_info

__all__ = ["StackRuns", "STACK_MODES", "PLANE", "LAZY", "EAGER", "VOLUME"]

PLANE, LAZY, EAGER = "plane in view", "all planes (lazy)", "all planes now"
VOLUME = "whole volume (3-D)"
STACK_MODES = (PLANE, LAZY, EAGER)


class StackRuns:
    """Lazy and eager stack runs (mixed into the Reconstruct dock, whose attributes it uses:
    ``viewer``, ``controller``, ``method_form``, ``seed``, ``measurement``, ``reference``,
    ``progress``, ``status`` and :meth:`budget_bytes`)."""

    def _stack_kwargs(self) -> dict:
        return {"seed": int(self.seed.value), "history_budget": self.budget_bytes(),
                "threads": gui_thread_budget(), "normalise": self.units.mode,
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
            cancellable=True, activity=False, **self._stack_kwargs())
