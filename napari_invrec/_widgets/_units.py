"""The Reconstruct dock's units panel: normalisation mode and the measurement's noise level.

Methods run on normalised data and return the input's units
(:mod:`napari_invrec.engine.normalise`); the panel says what "1" means in the input's units,
shows the noise std estimated from the data (:func:`napari_invrec.engine.noise_level.
noise_estimate`) and fills the method parameters that are a noise level with it. No maths
here: the numbers come from the engine.
"""

from __future__ import annotations

from typing import Any

from magicgui.widgets import ComboBox, Container, Label

from ..engine.normalise import NORMALISE_MODES

__all__ = ["UnitsPanel"]


def _fmt(v: float) -> str:
    return f"{v:.3g}"


class UnitsPanel(Container):
    """Normalise combo + a line with the data's range and noise level.

    Attributes
    ----------
    estimate
        The last :func:`~napari_invrec.engine.noise_level.noise_estimate` (``None`` if none).
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(labels=True, **kwargs)
        self.margins = (0, 0, 0, 0)
        self.normalise = ComboBox(
            value="auto", choices=list(NORMALISE_MODES), name="normalise", label="normalise",
            tooltip="solve on data scaled to about 0..1 and return the input's units; "
                    "weights and noise levels are then relative to that range (auto: unless "
                    "the data already lie in 0..1)")
        self.info = Label(value="", name="units_info", label="data")
        self.info.native.setWordWrap(True)
        self.extend([self.normalise, self.info])
        self.estimate: dict | None = None

    @property
    def mode(self) -> str:
        """The selected normalisation mode."""
        return str(self.normalise.value)

    def update(self, y: Any, op: Any) -> None:
        """Estimate the noise of measurement ``y`` (operator ``op``) and describe the units."""
        from ..engine.noise_level import noise_estimate

        est = noise_estimate(y, op, self.mode)
        self.estimate = est
        parts = []
        if est["applied"]:
            lo, hi = est["offset"], est["offset"] + est["scale"]
            parts.append(f"parameters are relative to 0..1 = {_fmt(lo)}..{_fmt(hi)} "
                         "in the data's units")
        if est["sigma"] is None:
            parts.append("noise level: not estimable from this measurement")
        elif est["applied"]:
            parts.append(f"noise σ ≈ {_fmt(est['sigma_normalised'])} (= {_fmt(est['sigma'])} "
                         "in the data's units), estimated from the data")
        else:
            parts.append(f"noise σ ≈ {_fmt(est['sigma'])}, estimated from the data")
        self.info.value = " · ".join(parts)

    def clear(self, why: str) -> None:
        """No estimate (no measurement, or an operator that cannot be built yet)."""
        self.estimate = None
        self.info.value = f"noise level: {why}" if why else ""

    def fill(self, form: Any) -> list[str]:
        """Set the noise-level fields of the method ``form`` to the estimate (within their
        bounds); returns the names of the fields set."""
        from ..engine.noise_level import noise_values

        if not self.estimate or self.estimate.get("sigma_normalised") is None:
            return []
        values = noise_values(form.params_cls, float(self.estimate["sigma_normalised"]))
        form.set_values(values)
        return sorted(values)
