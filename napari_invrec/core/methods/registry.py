"""Registry of reconstruction methods.

A method is a generator function ``fn(y, op, p, *, x0=None, generator=None)`` that yields an
:class:`~napari_invrec.core.state.IterState` every step and returns the final one. It is
registered with :func:`register_method`, which records the name users see, its params
dataclass, the operator families it supports and whether it is stochastic.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import InputError
from ..params import make_params
from ..state import IterState


@dataclass(frozen=True)
class MethodSpec:
    """What the registry knows about one method.

    Attributes
    ----------
    name
        Key users type and see (``"tv-fista"``).
    fn
        The generator function.
    params
        Params dataclass.
    operators
        Operator families it supports; ``None`` means every *linear* operator family and those
        in ``nonlinear``.
    stochastic
        Draws samples: results carry a posterior mean and std.
    weights
        Names of shipped weights the method needs by default: the defaults of its params'
        network fields (``param(..., network=True)``; empty for classical methods).
    description
        One line for menus and ``--help``.
    likelihood
        Noise model of its data term: ``"gaussian"`` (least squares) or ``"poisson"``
        (counts: inputs are rescaled but never shifted, see :mod:`napari_invrec.engine.normalise`).
    volumes
        Runs on 3-D volumes ``(D, H, W)`` as well as 2-D images (its maths is written for any
        number of spatial axes, or its networks run slice by slice).
    nonlinear
        Non-linear operator families a method for every linear family also supports.
    own_units
        Runs in the data's own units (a network trained on this very kind of data, in its
        units): the engine's ``auto`` normalisation leaves the data alone.
    operator_defaults
        ``{operator family: {field: value}}``: defaults that differ from the params class's
        for one operator family (chosen on the allowed training images), applied under the
        values a user gives (:meth:`defaults_for`).
    """

    name: str
    fn: Callable[..., Iterator[IterState]]
    params: type
    operators: frozenset[str] | None
    stochastic: bool
    weights: tuple[str, ...]
    description: str
    likelihood: str = "gaussian"
    volumes: bool = False
    nonlinear: frozenset[str] = frozenset()
    own_units: bool = False
    operator_defaults: Mapping[str, Mapping[str, Any]] = dataclasses.field(
        default_factory=dict)

    def defaults_for(self, operator: str) -> dict[str, Any]:
        """The fields whose default for the operator family ``operator`` differs from the
        params class's (empty for most methods and operators)."""
        return dict(self.operator_defaults.get(operator, {}))

    def check_geometry(self, op: Any) -> None:
        """Raise :class:`InputError` if ``op`` works on volumes and this method does not."""
        if op.geometry.is_volume and not self.volumes:
            ok = sorted(m for m, s in METHODS.items() if s.volumes and s.supports(op.name))
            raise InputError(f"{self.name} works on 2-D images, not the "
                             f"{op.geometry.describe()}; pick a 3-D method "
                             f"({', '.join(ok)}) or run the volume plane by plane")

    def supports(self, operator: str) -> bool:
        """Whether this method can run with the operator family ``operator``."""
        if self.operators is not None:
            return operator in self.operators
        from ..operators.registry import OPERATORS

        return operator in self.nonlinear or (operator in OPERATORS
                                               and OPERATORS[operator].linear)


METHODS: dict[str, MethodSpec] = {}


def register_method(name: str, params: type, *, operators: tuple[str, ...] | None = None,
                    stochastic: bool = False, likelihood: str = "gaussian",
                    volumes: bool = False, nonlinear: tuple[str, ...] = (),
                    own_units: bool = False,
                    operator_defaults: Mapping[str, Mapping[str, Any]] | None = None
                    ) -> Callable:
    """Decorator adding a method generator function to :data:`METHODS`.

    ``nonlinear`` names non-linear operator families a method for every linear family
    (``operators=None``) also supports: its maths uses only :math:`A` and autograd through it
    (and :func:`~.starts.data_start`). ``operator_defaults`` gives per-family defaults
    (:attr:`MethodSpec.operator_defaults`); each must be a valid value of its field.
    """
    weights = tuple(f.default for f in dataclasses.fields(params) if f.metadata.get("network"))
    per_op = {k: dict(v) for k, v in (operator_defaults or {}).items()}
    for values in per_op.values():
        make_params(params, **values)  # a typo or an out-of-range default fails at import

    def deco(fn: Callable) -> Callable:
        doc = (fn.__doc__ or name).strip().splitlines()[0]
        METHODS[name] = MethodSpec(name, fn, params,
                                   frozenset(operators) if operators is not None else None,
                                   stochastic, weights, doc, likelihood, volumes,
                                   frozenset(nonlinear), own_units, per_op)
        return fn

    return deco


def weights_param(default: str, doc: str, *, task: str, architecture: str) -> Any:
    """A ``weights`` field: the name of an installed network of ``task`` and ``architecture``
    (choices read from the weights manifests when a form or the CLI asks)."""
    from ..models.registry import weights_names
    from ..params import param

    return param(default, doc, network=True,
                 choices=lambda: weights_names(task=task, architectures=(architecture,)))


#: the method a new run starts with, first supported wins: fast, parameter-robust on
#: normalised data (see napari_invrec.engine.normalise) and never worse than the measurement
PREFERRED = ("tv-fista", "blind-deconv", "hio")


def default_method(operator: str) -> str | None:
    """The method preselected for ``operator`` (the first of :data:`PREFERRED` it supports,
    else the first supporting method by name); ``None`` if no method supports it."""
    names = sorted(m for m, s in METHODS.items() if s.supports(operator))
    for m in PREFERRED:
        if m in names:
            return m
    return names[0] if names else None


def get_method(name: str, operator: str | None = None) -> MethodSpec:
    """Look up a method, checking it supports ``operator`` if given.

    Raises
    ------
    InputError
        Unknown method, or a method that does not support the operator.
    """
    if name not in METHODS:
        raise InputError(f"unknown method {name!r}; available: {', '.join(sorted(METHODS))}")
    spec = METHODS[name]
    if operator is not None and not spec.supports(operator):
        ok = sorted(m for m, s in METHODS.items() if s.supports(operator))
        raise InputError(f"method {name!r} does not support operator {operator!r}; "
                         f"methods for {operator!r}: {', '.join(ok)}")
    return spec
