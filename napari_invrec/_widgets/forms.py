"""Forms generated from params dataclasses, so that a new operator or method needs no widget code.

Each field declared with :func:`napari_invrec.core.params.param` and ``gui=True`` becomes one
widget, labelled with the field name and with the field's doc as tooltip:

* ``bool`` -> :class:`~magicgui.widgets.CheckBox`;
* ``choices`` -> :class:`~magicgui.widgets.ComboBox`; callable ``choices`` (e.g. the installed
  network weights) are re-read by the combo's ``reset_choices`` and, in every open form, by
  :func:`refresh_choices` (called after new weights are registered). A callable that raises
  (e.g. a broken weights manifest) gives the field's default as the only choice and one
  notification per form, so a form can always be built;
* ``int`` -> :class:`~magicgui.widgets.SpinBox` with the field's ``min``/``max``/``step``;
* ``float`` -> a :class:`~magicgui.widgets.LineEdit` parsed as a float. Regularisation weights,
  noise levels and photon counts span decades (``1e-4`` ... ``1e6``); a text field shows them in
  ``%g`` form (``0.005``, ``1e-05``, ``100``) and accepts any notation, where a spin box would
  either round small values or show long runs of zeros. Bounds are checked when the values are
  read (:meth:`ParamsForm.values`) and stated in the tooltip;
* tuples -> a :class:`~magicgui.widgets.LineEdit` of comma-separated numbers;
* ``None`` defaults (``"auto"`` values) -> a :class:`~magicgui.widgets.LineEdit` where an empty
  text means ``None``.

A field with ``when={"other": values}`` is shown (and returned by :meth:`ParamsForm.values`)
only while the field ``other`` holds one of ``values``.
"""

from __future__ import annotations

import dataclasses
import math
import weakref
from collections.abc import Callable
from typing import Any

from magicgui.widgets import CheckBox, ComboBox, Container, LineEdit, SpinBox, Widget

from ..core.errors import InputError
from ..core.params import choices_of, make_params
from ._notify import error_message, notify_error

__all__ = ["ParamsForm", "applicable_values", "format_float", "gui_fields", "refresh_choices",
           "safe_choices"]

_INT_LIMIT = 2 ** 31 - 1
_INVALID_STYLE = "border: 1px solid #e05050;"

#: open forms with at least one field whose choices are computed at run time
_DYNAMIC_FORMS: weakref.WeakSet = weakref.WeakSet()


def refresh_choices() -> int:
    """Re-read callable choices in every open :class:`ParamsForm` (e.g. after weights were
    registered, so a new network is selectable at once); returns the number of forms."""
    n = 0
    for form in list(_DYNAMIC_FORMS):
        try:
            form.reset_choices()
            n += 1
        except RuntimeError:  # the Qt widget was deleted
            _DYNAMIC_FORMS.discard(form)
    return n


def format_float(v: float) -> str:
    """Text of a float in a form: ``%g`` with 6 significant digits (``1e-05``, ``0.03``)."""
    return f"{float(v):.6g}"


def gui_fields(cls: type) -> list[dataclasses.Field]:
    """Fields of the params dataclass ``cls`` that a form shows (``metadata["gui"]`` true)."""
    return [f for f in dataclasses.fields(cls) if f.metadata.get("gui", True)]


def _kind(f: dataclasses.Field) -> str:
    """Widget kind of a field: bool, choice, int, float, tuple, str, or opt-int/opt-float/..."""
    m = f.metadata
    d = f.default
    if m.get("choices"):
        return "choice"
    if isinstance(d, bool):
        return "bool"
    if isinstance(d, int):
        return "int"
    if isinstance(d, float):
        return "float"
    if isinstance(d, tuple):
        return "tuple"
    if isinstance(d, str):
        return "str"
    ann = str(f.type)
    for t in ("float", "int"):
        if t in ann:
            return f"opt-{t}"
    return "opt-str"


def _tooltip(f: dataclasses.Field, kind: str) -> str:
    m = f.metadata
    tip = m.get("doc", "") or f.name
    lo, hi = m.get("min"), m.get("max")
    if kind in ("float", "int", "opt-float", "opt-int") and (lo is not None or hi is not None):
        lo_s = "-inf" if lo is None else format_float(lo)
        hi_s = "inf" if hi is None else format_float(hi)
        tip += f"  [{lo_s} .. {hi_s}]"
    if kind.startswith("opt-"):
        tip += "  (empty = automatic)"
    return tip


def _as_text(v: Any, kind: str) -> str:
    if v is None:
        return ""
    if kind in ("float", "opt-float"):
        return format_float(v)
    if kind == "tuple":
        return ", ".join(format_float(i) if isinstance(i, float) else str(i) for i in v)
    return str(v)


def _parse(text: str, kind: str, f: dataclasses.Field) -> Any:
    """Value of a text field, or :class:`InputError` naming the field."""
    t = text.strip()
    try:
        if kind.startswith("opt-") and t == "":
            return None
        if kind in ("float", "opt-float"):
            v = float(t)
            if not math.isfinite(v):
                raise ValueError
            return v
        if kind == "opt-int":
            return int(t)
        if kind == "tuple":
            items = [s.strip() for s in t.strip("()[]").split(",") if s.strip()]
            proto = f.default[0] if f.default else 0.0
            conv = int if isinstance(proto, int) and not isinstance(proto, bool) else float
            return tuple(conv(s) for s in items)
        return t
    except ValueError:
        what = {"tuple": "comma-separated numbers", "opt-int": "an integer"}.get(kind, "a number")
        raise InputError(f"{f.name}: {text!r} is not {what}; enter e.g. "
                         f"{_as_text(f.default, kind) or '1e-3'}") from None


def safe_choices(f: dataclasses.Field, report: Callable[[str], None] | None = None) -> list:
    """The allowed values of a choice field. A ``choices`` callable that raises gives the
    fallback ``[default]`` (``[]`` without a default) and ``report(message)``."""
    try:
        return list(choices_of(f) or ())
    except Exception as exc:  # noqa: BLE001 - any failure of user-installed data
        if report is not None:
            report(f"{f.name}: its choices could not be read ({error_message(exc)}); only the "
                   "default is offered")
        return [f.default] if f.default is not None else []


def _make_widget(f: dataclasses.Field, kind: str,
                 report: Callable[[str], None] | None = None) -> Widget:
    m = f.metadata
    common = {"name": f.name, "label": f.name, "tooltip": _tooltip(f, kind)}
    if kind == "choice":
        allowed = safe_choices(f, report)
        value = f.default if f.default in allowed else (allowed[0] if allowed else None)
        if callable(m.get("choices")):
            return ComboBox(value=value, choices=lambda _w: safe_choices(f, report), **common)
        return ComboBox(value=value, choices=allowed, **common)
    if kind == "bool":
        return CheckBox(value=f.default, **common)
    if kind == "int":
        lo = int(m["min"]) if m.get("min") is not None else -_INT_LIMIT
        hi = int(m["max"]) if m.get("max") is not None else _INT_LIMIT
        step = int(m["step"]) if m.get("step") else 1
        return SpinBox(value=int(f.default), min=lo, max=hi, step=step, **common)
    return LineEdit(value=_as_text(f.default, kind), **common)


class ParamsForm(Container):
    """A form for the params dataclass ``params_cls``.

    Parameters
    ----------
    params_cls
        A dataclass whose fields were declared with :func:`~napari_invrec.core.params.param`.
    values
        Optional initial values by field name.

    Attributes
    ----------
    params_cls
        The dataclass the form edits.
    """

    def __init__(self, params_cls: type, values: dict | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.margins = (0, 0, 0, 0)
        self.params_cls = params_cls
        self._fields = {f.name: f for f in gui_fields(params_cls)}
        self._kinds = {n: _kind(f) for n, f in self._fields.items()}
        self._widgets: dict[str, Widget] = {}
        self._reported: set[str] = set()
        for name, f in self._fields.items():
            w = _make_widget(f, self._kinds[name], self._report)
            w.changed.connect(self._on_change)
            self._widgets[name] = w
            self.append(w)
        if any(callable(f.metadata.get("choices")) for f in self._fields.values()):
            _DYNAMIC_FORMS.add(self)
        if values:
            self.set_values(values)
        self._update_visibility()

    def _report(self, message: str) -> None:
        """One notification per distinct problem and form (choices are re-read often)."""
        if message not in self._reported:
            self._reported.add(message)
            notify_error(message)

    # ------------------------------------------------------------------ state
    @property
    def field_names(self) -> list[str]:
        """Names of the fields the form shows."""
        return list(self._fields)

    def applicable(self, name: str) -> bool:
        """Whether field ``name`` applies given the current values of its ``when`` fields."""
        return self.condition_met(self._fields[name].metadata.get("when"))

    def condition_met(self, when: dict | None) -> bool:
        """Whether a ``when={"field": values}`` condition holds for the current values.

        A condition on a field the form does not show is tested against its default.
        """
        for other, allowed in (when or {}).items():
            allowed = allowed if isinstance(allowed, (tuple, list, set)) else (allowed,)
            if other in self._fields:
                if not self.applicable(other):
                    return False
                current = self._raw(other)
            else:
                current = getattr(self.params_cls(), other, None)
            if current not in allowed:
                return False
        return True

    def _raw(self, name: str) -> Any:
        """Current value without parsing text (used for ``when`` conditions on choices)."""
        return self._widgets[name].value

    def widget(self, name: str) -> Widget:
        """The widget of field ``name``."""
        return self._widgets[name]

    def _value(self, name: str) -> Any:
        kind = self._kinds[name]
        w = self._widgets[name]
        if isinstance(w, LineEdit):
            return _parse(w.value, kind, self._fields[name])
        return w.value

    def values(self) -> dict:
        """Values of the applicable fields; hidden fields are left out (their defaults apply).

        Raises
        ------
        InputError
            If a text field does not parse or a value violates the field's bounds/choices.
        """
        out = {n: self._value(n) for n in self._fields if self.applicable(n)}
        make_params(self.params_cls, **out)  # bounds and choices, with a clear message
        return out

    def params(self, **extra: Any) -> Any:
        """The params dataclass built from :meth:`values` plus ``extra`` (e.g. arrays)."""
        return make_params(self.params_cls, **{**self.values(), **extra})

    def set_values(self, values: dict) -> None:
        """Set fields by name; unknown or non-GUI names are ignored."""
        for name, v in values.items():
            if name not in self._fields:
                continue
            kind = self._kinds[name]
            w = self._widgets[name]
            w.value = _as_text(v, kind) if isinstance(w, LineEdit) else v
        self._update_visibility()

    # ------------------------------------------------------------------ reactions
    def _on_change(self, *_: Any) -> None:
        self._update_visibility()
        self._mark_invalid()

    def _update_visibility(self) -> None:
        for name in self._fields:
            self._widgets[name].visible = self.applicable(name)

    def _mark_invalid(self) -> None:
        for name, f in self._fields.items():
            w = self._widgets[name]
            if not isinstance(w, LineEdit):
                continue
            try:
                _parse(w.value, self._kinds[name], f)
                ok = True
            except InputError:
                ok = False
            w.native.setStyleSheet("" if ok else _INVALID_STYLE)

    def __repr__(self) -> str:
        return f"ParamsForm({self.params_cls.__name__})"


def applicable_values(params_cls: type, values: dict) -> dict:
    """The GUI fields of ``values`` whose ``when`` conditions hold (no widgets involved).

    Used to describe a stored operator spec briefly: ``{"kernel": "gaussian", "sigma": 2.0}``
    rather than every field of the dataclass. Missing fields take their defaults.
    """
    defaults = {f.name: f.default for f in dataclasses.fields(params_cls)}
    current = {**defaults, **values}
    fields = {f.name: f for f in gui_fields(params_cls)}

    def ok(name: str, depth: int = 0) -> bool:
        for other, allowed in (fields[name].metadata.get("when") or {}).items():
            allowed = allowed if isinstance(allowed, (tuple, list, set)) else (allowed,)
            if current.get(other) not in allowed:
                return False
            if other in fields and depth < 8 and not ok(other, depth + 1):
                return False
        return True

    return {n: current[n] for n in fields if ok(n)}
