"""Length units as file formats spell them, and the short names the layers use.

The ``units`` record of a layer (:func:`napari_invrec.engine.layers.units_record`) keeps one
length unit for all axes, spelled ``"mm"``, ``"um"``, ``"nm"``, ``"angstrom"``... Files spell
units their own way: OME-XML ``"µm"``/``"Å"``, OME-Zarr (NGFF) ``"micrometer"``/``"angstrom"``,
ImageJ ``"micron"``. :func:`short_unit` maps any of these to the short name and
:func:`common_spacing` converts spacings given in several units to one.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["METRES", "NGFF_NAMES", "common_spacing", "short_unit"]

#: metres per unit, by short name
METRES = {"m": 1.0, "cm": 1e-2, "mm": 1e-3, "um": 1e-6, "nm": 1e-9, "angstrom": 1e-10,
          "pm": 1e-12, "km": 1e3, "inch": 0.0254}

_ALIASES = {
    "meter": "m", "metre": "m", "centimeter": "cm", "centimetre": "cm",
    "millimeter": "mm", "millimetre": "mm", "micrometer": "um", "micrometre": "um",
    "micron": "um", "microns": "um", "\u00b5m": "um", "\u03bcm": "um", "nanometer": "nm",
    "nanometre": "nm", "\u00c5": "angstrom", "\u212b": "angstrom", "a": "angstrom",
    "picometer": "pm", "picometre": "pm", "kilometer": "km", "in": "inch",
}

#: NGFF (OME-Zarr) spelling of each short name
NGFF_NAMES = {"m": "meter", "cm": "centimeter", "mm": "millimeter", "um": "micrometer",
              "nm": "nanometer", "angstrom": "angstrom", "pm": "picometer", "km": "kilometer",
              "inch": "inch"}


def short_unit(name: str | None) -> str | None:
    """The short name of the length unit ``name`` (``"µm"`` -> ``"um"``), or ``None`` when it
    is missing or not a length unit napari-invrec knows (``"pixel"``, ``"second"``...)."""
    if not isinstance(name, str) or not name.strip():
        return None
    key = name.strip()
    if key in METRES:
        return key
    low = key.lower()
    if low in METRES:
        return low
    return _ALIASES.get(key, _ALIASES.get(low))


def common_spacing(spacing: Sequence[float], units: Sequence[str | None]
                   ) -> tuple[list[float], str]:
    """Express ``spacing`` (one value per axis, each in its own unit) in one unit.

    Axes without a known length unit (a time or channel axis, an unknown unit) keep their
    value as it is. The common unit is the last known one (the fastest axis, usually x).

    Returns
    -------
    spacing, unit
        The converted spacings and the common unit (``"pixel"`` when no axis has a length
        unit).
    """
    shorts = [short_unit(u) for u in units]
    known = [u for u in shorts if u is not None]
    if not known:
        return [float(s) for s in spacing], "pixel"
    unit = known[-1]
    out = [float(s) if u is None else float(s) * METRES[u] / METRES[unit]
           for s, u in zip(spacing, shorts, strict=True)]
    return out, unit
