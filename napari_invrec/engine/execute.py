"""Run a method on one measurement to a :class:`~.runner.Result`, without a generator.

:func:`~.runner.run` is the generator the GUI drives (a Qt ``GeneratorWorker`` pauses and
aborts it between steps). Scripts, the public API, the command line and stack reconstruction
want a plain call instead: :func:`run_to_result` drains that generator, hands each step's
:class:`~.runner.Progress` to an optional callback, and checks a ``threading.Event`` before
every step, so a cancel set from another thread (or from the callback) stops the run before
its next step with :class:`~napari_invrec.core.errors.CancelledError`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from ..core.errors import CancelledError, InputError
from ..core.methods import get_method
from ..core.params import make_params
from .history import DEFAULT_BUDGET
from .runner import Progress, Result, run

__all__ = ["method_params_for", "run_to_result", "drain"]


def method_params_for(method: str, op: Any, params: Any = None, **fields: Any) -> Any:
    """The params dataclass instance of ``method`` from an instance, a mapping or keywords.

    Parameters
    ----------
    method
        Registry name of the method.
    op
        The operator (the method must support its family).
    params
        An instance of the method's params dataclass, a mapping of its fields, or ``None``.
        Fields a mapping leaves out take the method's default for the operator's family
        (:meth:`~napari_invrec.core.methods.registry.MethodSpec.defaults_for`), else the
        params class's.
    **fields
        Fields of the params dataclass (only when ``params`` is not an instance).

    Raises
    ------
    InputError
        Unknown method or field, a value out of range, an instance of another method's params
        class, or both an instance and keyword fields.
    """
    spec = get_method(method, op.name)
    if params is None or isinstance(params, Mapping):
        return make_params(spec.params, **{**spec.defaults_for(op.name), **dict(params or {}),
                                           **fields})
    if not isinstance(params, spec.params):
        raise InputError(f"params for {method!r} must be a {spec.params.__name__}, got "
                         f"{type(params).__name__}")
    if fields:
        raise InputError(f"pass either a {spec.params.__name__} or keyword parameters "
                         f"({', '.join(sorted(fields))}), not both")
    return params


def drain(gen: Any, progress: Callable[[Any], Any] | None = None) -> Any:
    """Run a steps generator (quality, autotune, ranking, calibration) to its end and return
    its return value, calling ``progress(item)`` with each item it yields."""
    while True:
        try:
            item = next(gen)
        except StopIteration as stop:
            return stop.value
        if progress is not None:
            progress(item)


def run_to_result(y: Any, op: Any, method: str, params: Any = None, *, seed: int = 0,
                  x0: Any = None, reference: Any = None,
                  budget_bytes: int = DEFAULT_BUDGET, threads: int | None = None,
                  cancel: threading.Event | None = None,
                  progress: Callable[[Progress], Any] | None = None,
                  preview_hz: float = 30.0, noise: dict | None = None,
                  ground_truth: str | None = None, normalise: str = "auto") -> Result:
    """Run ``method`` on the 2-D measurement ``y`` and return its :class:`~.runner.Result`.

    Parameters
    ----------
    y
        Measurement, numpy or dask (a dask array is computed: it is one plane).
    op
        Operator, already on the device to use.
    method
        Registry name.
    params
        The method's params dataclass instance (or a mapping of its fields, or ``None`` for
        the defaults); see :func:`method_params_for`.
    seed, x0, reference, budget_bytes, threads, preview_hz, noise, ground_truth, normalise
        As for :func:`~.runner.run`.
    cancel
        Checked before every step and at the method's cancel points inside a step (see
        :mod:`napari_invrec.core.cancel`): once set, the run stops there, the method's
        generator is closed, and :class:`~napari_invrec.core.errors.CancelledError` is raised.
    progress
        Called with each step's :class:`~.runner.Progress`, in the calling thread.

    Raises
    ------
    CancelledError
        ``cancel`` was set.
    InputError, DivergenceError, ResourceError
        As :func:`~.runner.run` raises them.
    """
    p = method_params_for(method, op, params)
    if cancel is not None and cancel.is_set():
        raise CancelledError(f"{method} was cancelled before it started")
    if hasattr(y, "compute") and not isinstance(y, np.ndarray):
        y = y.compute()
    gen = run(np.asarray(y), op, method, p, seed=seed, x0=x0, reference=reference,
              budget_bytes=budget_bytes, preview_hz=preview_hz, noise=noise,
              ground_truth=ground_truth, threads=threads, cancel=cancel, normalise=normalise)
    step = 0
    try:
        while True:
            if cancel is not None and cancel.is_set():
                raise CancelledError(f"{method} was cancelled after step {step}")
            try:
                prog = next(gen)
            except StopIteration as stop:
                return stop.value
            except CancelledError:  # at a cancel point inside the step (core.cancel)
                raise CancelledError(f"{method} was cancelled during step {step + 1}") from None
            step = prog.step
            if progress is not None:
                progress(prog)
    finally:
        gen.close()  # runs the runner's and the method's cleanup (thread setting, buffers)
