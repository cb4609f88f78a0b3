"""Drive a method generator: numpy hand-off, throttled previews, bounded history, metrics.

:func:`run` wraps a core method generator into another generator that

* yields a :class:`Progress` after every step (so a Qt ``GeneratorWorker`` can pause or abort
  between any two steps: cancellation takes effect within one step);
* converts tensors to CPU numpy before yielding (the GUI thread never touches torch tensors);
* attaches a preview image at most ``preview_hz`` times a second (and at the last step);
* keeps an :class:`~napari_invrec.engine.history.IterateHistory` within a memory budget;
* returns a :class:`Result` with the final image, history, metrics and provenance.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..core.analysis.metrics import psnr, residual, ssim
from ..core.cancel import cancel_point, cancellable
from ..core.errors import DivergenceError, InputError, ResourceError
from ..core.methods import get_method
from ..core.params import make_params, param
from ..core.state import IterState
from ..core.threads import torch_threads
from ..core.validation import check_image_array, check_reference
from .history import DEFAULT_BUDGET, IterateHistory
from .layers import image_display
from .memory import check_run_memory, is_out_of_memory
from .normalise import NORMALISE_MODES, method_normalisation
from .provenance import make_provenance

#: extras that are per-run summaries, not per-step image streams
_NOT_STREAMS = ("std", "samples")


@dataclass
class Progress:
    """What the engine hands to the GUI thread after each step (numpy only).

    Attributes
    ----------
    step, total
        Step counter.
    metrics
        Scalars of this step.
    preview
        Display image of the current iterate (``None`` when throttled away).
    extras
        Display images of extra streams (``"std"``, ``"x0_hat"``...), only with a preview.
    """

    step: int
    total: int
    metrics: dict[str, float]
    preview: np.ndarray | None = None
    extras: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class Result:
    """Outcome of a reconstruction.

    Attributes
    ----------
    x
        Final image, 2-D numpy (complex for complex operators).
    iterates
        ``(N, H, W)`` display stack of stored iterates (magnitude for complex images): a view
        of the :class:`~napari_invrec.engine.history.IterateHistory` store, not a copy.
    steps
        Step number of each slice of ``iterates``.
    streams
        Other stored per-step stacks by name (``"x0_hat"``...), aligned with ``steps``.
    metrics
        Final scalar metrics.
    metric_history
        Per-step metrics: name -> list over steps ``1..total``.
    mean, std, samples
        Posterior mean, per-pixel std and final samples ``(N, H, W)`` for stochastic methods.
    extras
        Other final outputs whose shape differs from the image (e.g. an estimated ``"kernel"``
        of blind deblurring), 2-D numpy by name.
    provenance
        JSON-serialisable record (see :func:`make_provenance`).
    arrays
        Operator array parameters (custom mask/kernel) needed with the provenance to re-run.
    measurement
        The measurement as it ran (validated float32/complex64 copy, in the input's units);
        saved with the result so that the run can be repeated from the file alone.
    """

    x: np.ndarray
    iterates: np.ndarray
    steps: list[int]
    streams: dict[str, np.ndarray]
    metrics: dict[str, float]
    metric_history: dict[str, list[float]]
    provenance: dict
    mean: np.ndarray | None = None
    std: np.ndarray | None = None
    samples: np.ndarray | None = None
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    extras: dict[str, np.ndarray] = field(default_factory=dict)
    measurement: np.ndarray | None = None


def _plane(t: torch.Tensor) -> np.ndarray:
    """First batch element, first channel, as CPU numpy."""
    return t.detach()[0, 0].cpu().numpy()


def prepare_measurement(y: Any, op: Any) -> torch.Tensor:
    """Validate a 2-D measurement array and make it a ``(1, 1, ...)`` tensor on the op's device.

    Raises
    ------
    InputError
        Wrong shape, NaN/inf, RGB, integer, or complex data for a real operator.
    """
    arr = check_image_array(y, "measurement", complex_ok=op.complex_measurement,
                            ndim=len(op.measurement_shape))
    if arr.shape != tuple(op.measurement_shape):
        raise InputError(f"measurement has shape {arr.shape} but the {op.name} operator expects "
                         f"{tuple(op.measurement_shape)}; set the operator for this image size")
    return op.as_measurement(torch.from_numpy(np.ascontiguousarray(arr))[None, None])


@dataclass
class RunSettings:
    """How a run is driven (validated like method parameters, so numpy scalars, NaN and
    wrong types get the same one-line errors)."""

    seed: int = param(0, "random seed of the method's generator", min=0, max=2**63 - 1)
    budget_bytes: int = param(DEFAULT_BUDGET, "memory budget of the iterate history, bytes",
                              min=1, max=2**50)
    preview_hz: float = param(30.0, "live previews per second at most (0 = every step)",
                              min=0.0, max=1e6)
    threads: int | None = param(None, "CPU threads torch may use (None: unchanged)",
                                min=1, max=4096)
    normalise: str = param("auto", "solve in normalised units and return the input's units "
                           "(auto: unless the data already lie in [0, 1])",
                           choices=NORMALISE_MODES)


def _in_units(state: IterState, norm: Any) -> IterState:
    """``state`` with its image-like tensors in the input's units: the iterate, image-shaped
    extras (``samples``, ``x0_hat``...) as :math:`s u + o`, a ``std`` as :math:`s \\sigma`;
    extras of another shape (an estimated kernel) are left as they are."""
    if not norm.applied:
        return state
    extras = {}
    for k, v in state.extras.items():
        if k == "std":
            extras[k] = norm.spread_to_units(v)
        elif v.shape[-2:] == state.x.shape[-2:]:
            extras[k] = norm.to_units(v)
        else:
            extras[k] = v
    return dataclasses.replace(state, x=norm.to_units(state.x), extras=extras)


#: a run whose data residual ends above this fraction of ``|y|`` and this many times its
#: lowest while its image's energy grows by this factor has diverged (:func:`growth_warning`)
GROWTH_RESIDUAL, GROWTH_RATIO, GROWTH_ENERGY = 0.1, 3.0, 1.25


def growth_warning(method: str, residuals: list[float], e_first: float | None,
                   e_last: float | None) -> str | None:
    r"""One line when a run diverged without producing a NaN, else ``None``.

    It diverged when its relative data residual :math:`r_k = \|Ax_k - y\|/\|y\|` ends
    above :data:`GROWTH_RESIDUAL` and :data:`GROWTH_RATIO` times its lowest value while the
    image's energy :math:`\overline{|x|^2}` grew by :data:`GROWTH_ENERGY` from the first
    iterate: regularisation that is too strong also raises the residual, but it shrinks the
    image; a blow-up inflates it. (``pnp-admm`` with the ``n2s-atoms`` denoiser on 4x MRI of a
    128 px moon image: :math:`r` 0.024 at step 2, 0.70 at step 50, energy 1.5x, 12.7 dB
    against 39.8 with the default denoiser; ``tv-fista`` with a weight of 3 on the same
    operator and a cell image raises :math:`r` 3.2x but shrinks the image.)"""
    if not residuals or e_first is None or e_last is None:
        return None
    r = np.asarray(residuals, dtype=float)
    k = int(np.nanargmin(r))
    if not (r[-1] > GROWTH_RESIDUAL and r[-1] > GROWTH_RATIO * r[k]
            and e_last > GROWTH_ENERGY * e_first):
        return None
    return (f"{method} diverged: its data residual grew from {r[k]:.3g} of |y| (iterate "
            f"{k + 1}) to {r[-1]:.3g} while the image's energy grew {e_last / e_first:.1f}x: "
            "lower its step size, raise its regularisation or choose another denoiser")


def measurement_plane(y: Any, op: Any) -> np.ndarray:
    """The measurement as it runs (validated float32/complex64 copy); its fingerprint is the
    provenance's ``measurement``."""
    return _plane(prepare_measurement(y, op))


def run(y: Any, op: Any, method: str, params: Any, *, seed: int = 0, x0: Any = None,
        reference: np.ndarray | None = None, budget_bytes: int = DEFAULT_BUDGET,
        preview_hz: float = 30.0, noise: dict | None = None,
        ground_truth: str | None = None, threads: int | None = None,
        cancel: threading.Event | None = None,
        normalise: str = "auto") -> Generator[Progress, None, Result]:
    """Run ``method`` on the measurement ``y`` with operator ``op``; see the module docstring.

    Parameters
    ----------
    y
        2-D measurement (numpy, real or complex as the operator needs).
    op
        Operator, already on the device to use.
    method, params
        Registry name and params dataclass instance.
    seed
        Seeds the method's ``torch.Generator`` (stochastic methods, random inits).
    x0
        Optional 2-D initial image.
    reference
        Ground truth; adds ``psnr``/``ssim`` to the per-step metrics.
    budget_bytes, preview_hz
        History memory budget and preview rate limit.
    noise, ground_truth
        Stored in the provenance.
    threads
        CPU threads torch may use during the run (``None``: unchanged); the GUI passes
        :func:`~napari_invrec.engine.device.gui_thread_budget`.
    cancel
        Once set, the run stops with :class:`~napari_invrec.core.errors.CancelledError` at the
        method's next cancel point (inside a step where the method has long inner loops, see
        :mod:`napari_invrec.core.cancel`) or its next step.
    normalise
        ``auto``, ``on`` or ``off``: the method runs on affinely normalised data and every image
        it yields is mapped back to the input's units (:mod:`~napari_invrec.engine.normalise`);
        the map is recorded in the provenance.
    """
    spec = get_method(method, op.name)
    spec.check_geometry(op)
    settings = make_params(RunSettings, seed=seed, budget_bytes=budget_bytes,
                           preview_hz=preview_hz, threads=threads, normalise=normalise)
    seed, budget_bytes, preview_hz, threads = (settings.seed, settings.budget_bytes,
                                               settings.preview_hz, settings.threads)
    frame = int(np.prod(op.shape)) * 4
    if frame > budget_bytes:
        raise ResourceError(f"the iterate history budget ({budget_bytes / 2**20:.1f} MB) holds "
                            f"no {'x'.join(map(str, op.shape))} iterate ({frame / 2**20:.1f} MB): "
                            f"raise it to at least {-(-frame // 2**20)} MB")
    check_run_memory(op, method, params, stochastic=spec.stochastic, budget_bytes=budget_bytes)
    t_start = time.perf_counter()
    y_t = prepare_measurement(y, op)
    norm = method_normalisation(y_t, op, settings.normalise, spec)
    x0_t = None
    if x0 is not None:
        x0_np = check_image_array(x0, "initial image x0", complex_ok=op.complex_image,
                                  ndim=len(op.shape))
        if x0_np.shape != tuple(op.shape):
            raise InputError(f"initial image x0 has shape {x0_np.shape}, the image is "
                             f"{tuple(op.shape)}")
        x0_t = op.as_image(op.geometry.tensor(x0_np))
        op.check_image(x0_t)
        x0_t = norm.from_units(x0_t)
    ref_t = None
    if reference is not None:
        ref_t = op.geometry.tensor(check_reference(reference, op.shape)).to(op.device)
    gen = torch.Generator(device=op.device).manual_seed(int(seed))
    history = IterateHistory(budget_bytes)
    metric_history: dict[str, list[float]] = {}
    min_dt = 1.0 / preview_hz if preview_hz > 0 else 0.0
    last_preview = -np.inf
    reserved = False
    state: IterState | None = None
    e_first = e_last = None  # mean |x|^2 of the first and the latest iterate
    it = spec.fn(norm.measurement(y_t, op), op, params, x0=x0_t, generator=gen)
    t_setup = time.perf_counter() - t_start
    try:
        with torch.no_grad(), torch_threads(threads):
            while True:
                try:
                    with cancellable(cancel):
                        cancel_point()
                        state = next(it)
                except StopIteration as stop:
                    if stop.value is not None:
                        state = _in_units(stop.value, norm)
                    break
                except (torch.cuda.OutOfMemoryError, MemoryError, RuntimeError) as e:
                    if not is_out_of_memory(e):
                        raise
                    step = state.step if state is not None else 0
                    gpu = isinstance(e, torch.cuda.OutOfMemoryError) or op.device.type == "cuda"
                    where, hint = ("GPU ", "device 'cpu', ") if gpu else ("", "")
                    raise ResourceError(
                        f"{method} ran out of {where}memory after step {step} on {op.device}: "
                        f"use {hint}a smaller image, or fewer samples") from e
                state = _in_units(state, norm)
                metrics = dict(state.metrics)
                if not torch.isfinite(state.x).all():
                    raise DivergenceError(f"{method} produced non-finite values at step "
                                          f"{state.step}; lower its step size or raise its "
                                          "regularisation weight")
                if "residual" not in metrics or norm.applied:  # in the data's units
                    metrics["residual"] = float(residual(op, state.x[:1], y_t))
                e_last = float(state.x[:1].abs().square().mean())
                e_first = e_last if e_first is None else e_first
                if ref_t is not None:
                    xm = state.x[:1].abs() if state.x.is_complex() else state.x[:1]
                    metrics["psnr"] = float(psnr(xm, ref_t))
                for k, v in metrics.items():
                    metric_history.setdefault(k, []).append(float(v))
                final = state.step >= state.total
                if not reserved:  # one store for the whole run, no growing copies
                    history.reserve(state.total + 1)
                    reserved = True
                if history.wants(state.step, final):
                    frames = {"x": image_display(_plane(state.x))}
                    for k, v in state.extras.items():
                        if k not in _NOT_STREAMS and v.shape[-2:] == state.x.shape[-2:]:
                            frames[k] = image_display(_plane(v))
                    history.add(state.step, frames, final)
                now = time.perf_counter()
                prog = Progress(state.step, state.total, metrics)
                if final or now - last_preview >= min_dt:
                    last_preview = now
                    prog.preview = image_display(_plane(state.x))
                    prog.extras = {k: image_display(_plane(v)) for k, v in state.extras.items()
                                   if k != "samples" and v.shape[-2:] == state.x.shape[-2:]}
                yield prog
    finally:
        it.close()
    if state is None:
        raise RuntimeError(f"{method} yielded no state")
    if state.step < state.total:
        history.add(state.step, {"x": image_display(_plane(state.x))}, final=True)
    t_total = time.perf_counter() - t_start
    x_final = _plane(state.x)
    final_metrics = {k: v[-1] for k, v in metric_history.items()}
    if ref_t is not None:
        xm = state.x[:1].abs() if state.x.is_complex() else state.x[:1]
        final_metrics["ssim"] = float(ssim(xm, ref_t))
    from ..core.operators.registry import operator_arrays

    prov = make_provenance(op, method, params, seed=seed, device=str(op.device),
                           measurement=_plane(y_t), timings={"setup_s": t_setup, "total_s": t_total,
                                                   "steps": state.step},
                           metrics=final_metrics, noise=noise, ground_truth=ground_truth,
                           normalise=norm.to_dict())
    warning = growth_warning(method, metric_history.get("residual", []), e_first, e_last)
    if warning:
        prov["warnings"] = [warning]
    streams = {k: history.stack(k) for k in history.streams() if k != "x"}
    res = Result(x=x_final, iterates=history.stack("x"), steps=history.steps, streams=streams,
                 metrics=final_metrics, metric_history=metric_history, provenance=prov,
                 arrays={k: np.asarray(v) for k, v in operator_arrays(op).items()},
                 measurement=_plane(y_t))
    res.extras = {k: _plane(v) for k, v in state.extras.items()
                  if k not in _NOT_STREAMS and v.shape[-2:] != state.x.shape[-2:]}
    if spec.stochastic:
        res.mean = x_final
        if "std" in state.extras:
            res.std = _plane(state.extras["std"])
        if "samples" in state.extras:
            s = state.extras["samples"].detach()[:, 0].cpu().numpy()
            res.samples = s
    return res
