"""Batch reconstruction: one run per input, on dask, each output written with its provenance.

:func:`batch_steps` checks everything a user can get wrong (inputs, method, parameters, seed,
output folder, scheduler) before any work and returns a generator: it yields a
:class:`BatchProgress` each time an item ends and returns a :class:`BatchSummary`.
:func:`plan_batch` and :func:`run_batch` are its two halves (the GUI plans in its own thread
and runs the plan in a worker).

* Inputs (:func:`expand_inputs`): a folder, a glob, a file, a zarr array (items along its
  first axis), a list of those, or an in-memory stack (numpy, dask or zarr; leading axis =
  items). Inputs are only ever read.
* Each item is a :class:`BatchTask` holding picklable things only: the operator's spec and
  array parameters (never the operator), the method's name and parameters as a dict, seed,
  normalisation mode, where the input is and where its output goes. :func:`run_item` (the
  worker side) rebuilds the operator on the worker's device, runs
  :func:`~.execute.run_to_result` and writes the output. It never raises: a bad file, a NaN, a
  diverging run becomes that item's one-line message and the other items go on.
* Files are read and written by an ``io`` object (protocol below; the package's is
  :class:`napari_invrec.formats.batch_files.BatchFiles`: one napari-invrec save per input,
  the run record inside), so this module knows no file format.
* Resume: an output whose stored run record matches the task (operator spec, method,
  parameters, seed, normalisation mode and the fingerprint of the measurement as it runs) is
  skipped; one that differs is recomputed and its outcome says what differed.
* Schedulers (:mod:`.batch_schedulers`): dask's threaded scheduler in this process (default),
  a ``dask.distributed.LocalCluster`` of ``workers`` single-threaded processes, or the
  existing cluster at ``scheduler``.

The ``io`` protocol: ``expand(path) -> list[Item]``, ``read(item) -> ndarray``,
``out_path(folder, name) -> str``, ``check(out)`` (raise :class:`InputError` if ``out`` may not
be written), ``exists(out) -> bool``, ``provenance(out) -> dict | None`` and
``write(out, result, name) -> list[str]``; it must pickle (it travels with every task).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
import traceback
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from ..core.errors import CancelledError, InputError, InvRecError
from ..core.params import array_fingerprint, from_dict, make_params, to_dict
from .execute import method_params_for, run_to_result
from .runner import RunSettings, measurement_plane
from .stack import plane_budget

__all__ = ["Item", "BatchTask", "ItemOutcome", "BatchProgress", "BatchSummary", "BatchPlan",
           "expand_inputs", "first_measurement", "plan_batch", "run_batch", "batch_steps",
           "run_item", "stored_differences"]

#: what an item can end as
STATUSES = ("done", "recomputed", "skipped", "failed", "cancelled")


@dataclass(frozen=True)
class Item:
    """One input of a batch.

    Attributes
    ----------
    name
        Output name (without suffix), unique in the batch.
    label
        What the input is, for messages and the provenance (a path, ``"stack[3]"``).
    path
        A file, or the zarr array holding the item (with ``index``).
    index
        Position along the first axis of a stack (``None``: the whole file / array).
    array
        An in-memory stack or image (numpy, dask, zarr), ``None`` for files.
    """

    name: str
    label: str
    path: str | None = None
    index: int | None = None
    array: Any = None


@dataclass(frozen=True)
class BatchTask:
    """Everything a worker needs for one item (picklable: specs and plain values only)."""

    index: int
    item: Item
    out: str
    operator: dict
    arrays: dict
    method: str
    params: dict
    seed: int
    normalise: str
    resume: bool
    io: Any
    device: str = "auto"
    threads: int | None = None
    host_threads: dict | None = None
    cancel: Any = None


@dataclass
class ItemOutcome:
    """How one item ended: ``status`` is one of :data:`STATUSES`, ``message`` one line (why it
    failed, what differed from the stored run), ``detail`` the traceback of an unexpected
    error."""

    index: int
    name: str
    status: str
    message: str = ""
    outputs: list[str] = field(default_factory=list)
    seconds: float = 0.0
    device: str = ""
    metrics: dict = field(default_factory=dict)
    detail: str = ""

    def line(self) -> str:
        """``"name: status (message)"``."""
        return f"{self.name}: {self.status}" + (f" ({self.message})" if self.message else "")


class BatchProgress(NamedTuple):
    """Yielded when an item ends: ``done`` of ``total`` items have ended, the last ``name``."""

    done: int
    total: int
    name: str
    outcome: ItemOutcome


@dataclass
class BatchSummary:
    """What a batch did: one :class:`ItemOutcome` per input (in input order)."""

    outcomes: list[ItemOutcome]
    out: Path
    seconds: float
    scheduler: str
    cancelled: bool = False

    @property
    def counts(self) -> dict[str, int]:
        """Items per status (only the statuses that occurred)."""
        found = [o.status for o in self.outcomes]
        return {s: found.count(s) for s in STATUSES if s in found}

    @property
    def failed(self) -> list[ItemOutcome]:
        """The items that failed."""
        return [o for o in self.outcomes if o.status == "failed"]

    def headline(self) -> str:
        """One line: counts, folder, time, scheduler."""
        counts = ", ".join(f"{n} {s}" for s, n in self.counts.items()) or "nothing to do"
        head = "batch cancelled" if self.cancelled else "batch"
        return (f"{head}: {counts} of {len(self.outcomes)} inputs -> {self.out} "
                f"({self.seconds:.1f} s on {self.scheduler})")

    def lines(self) -> list[str]:
        """The headline, then one line per failed or recomputed item."""
        return [self.headline()] + [f"  {o.line()}" for o in self.outcomes
                                    if o.status in ("failed", "recomputed")]


@dataclass
class BatchPlan:
    """Checked tasks of a batch and its output folder (see :func:`plan_batch`)."""

    tasks: list[BatchTask]
    out: Path


# ---------------------------------------------------------------- inputs
def _is_array(x: Any) -> bool:
    return hasattr(x, "shape") and hasattr(x, "dtype") and hasattr(x, "__getitem__")


def expand_inputs(inputs: Any, io: Any, item_ndim: int = 2) -> list[Item]:
    """The items of ``inputs`` (see the module docstring), in order, duplicates dropped.

    Raises
    ------
    InputError
        Nothing matched, a stack with the wrong number of axes, two inputs with one output
        name, or an input of another kind.
    """
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    if _is_array(inputs):
        if len(inputs.shape) != item_ndim + 1 or inputs.shape[0] == 0:
            raise InputError(f"an in-memory stack must have shape (items, {item_ndim} axes of "
                             f"one measurement), got {tuple(inputs.shape)}")
        n = int(inputs.shape[0])
        width = max(4, len(str(n - 1)))
        return [Item(f"item_{i:0{width}d}", f"stack[{i}]", index=i, array=inputs)
                for i in range(n)]
    if not isinstance(inputs, Sequence) or not inputs:
        raise InputError("give the inputs as a folder, a glob, a file, a zarr array, a list of "
                         f"those or a stack; got {type(inputs).__name__}")
    items: list[Item] = []
    width = max(4, len(str(len(inputs) - 1)))
    for i, spec in enumerate(inputs):
        if isinstance(spec, (str, os.PathLike)):
            items.extend(io.expand(spec))
        elif _is_array(spec):
            if len(spec.shape) != item_ndim:
                raise InputError(f"in-memory input {i} has shape {tuple(spec.shape)}; each "
                                 f"must be one {item_ndim}-D measurement")
            items.append(Item(f"item_{i:0{width}d}", f"inputs[{i}]", array=spec))
        else:
            raise InputError(f"input {i} is a {type(spec).__name__}; give paths or arrays")
    seen: dict[tuple, Item] = {}
    names: dict[str, Item] = {}
    unique = []
    for it in items:
        key = (str(Path(it.path).resolve()) if it.path else id(it.array), it.index)
        if key in seen:
            continue
        if it.name in names:
            raise InputError(f"inputs {names[it.name].label} and {it.label} would write the same "
                             f"output {it.name!r}; rename one or run them separately")
        seen[key], names[it.name] = it, it
        unique.append(it)
    return unique


def read_item(item: Item, io: Any) -> np.ndarray:
    """The measurement of ``item`` as numpy (one plane of a dask stack is computed here)."""
    if item.array is None:
        return io.read(item)
    a = item.array if item.index is None else item.array[item.index]
    if hasattr(a, "compute") and not isinstance(a, np.ndarray):
        a = a.compute(scheduler="sync")
    return np.asarray(a)


def first_measurement(inputs: Any, io: Any, item_ndim: int = 2) -> np.ndarray:
    """The first readable input's measurement (front ends build the operator for its shape).

    Raises
    ------
    InputError
        No input matched, or none can be read (the first one's reason).
    """
    first = None
    for item in expand_inputs(inputs, io, item_ndim):
        try:
            return read_item(item, io)
        except InputError as e:
            first = first or e
    raise first


# ---------------------------------------------------------------- planning
def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _out_folder(out: Any, items: list[Item]) -> Path:
    if out is None or str(out) == "":
        raise InputError("give the output folder (out=...)")
    folder = Path(out).expanduser()
    if folder.exists() and not folder.is_dir():
        raise InputError(f"output folder {str(folder)!r} is a file; give a folder (it is "
                         "created if missing)")
    resolved = folder.resolve()
    for it in items:
        if it.path is None:
            continue
        src = Path(it.path).resolve()
        if (it.index is None and resolved == src.parent) or _inside(resolved, src):
            raise InputError(f"output folder {str(folder)!r} holds the input {it.label}; write "
                             "the outputs to another folder (inputs are never modified)")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(f"cannot create output folder {str(folder)!r}: "
                         f"{e.strerror or e}") from e
    if not os.access(folder, os.W_OK):
        raise InputError(f"output folder {str(folder)!r} is not writable")
    return folder


def plan_batch(inputs: Any, op: Any, method: str, params: Any = None, *, out: Any, io: Any,
               seed: int = 0, normalise: str = "auto", resume: bool = True,
               device: str = "auto") -> BatchPlan:
    """Check a batch and make its tasks; nothing is computed.

    Parameters
    ----------
    inputs
        See :func:`expand_inputs`.
    op
        The operator of one measurement (its spec and array parameters travel to the workers).
    method, params
        Method name and its params (instance, mapping or ``None``).
    out
        Output folder (created if missing; must not hold the inputs).
    io
        Reads inputs and writes outputs (see the module docstring).
    seed, normalise
        As for :func:`~.execute.run_to_result`; every item uses ``seed``.
    resume
        Skip outputs already written by the same run.
    device
        ``auto`` (a GPU per worker when there are GPUs, else the CPU) or a device name.

    Raises
    ------
    InputError
        Unknown method or bad parameter, bad seed or mode, inputs that match nothing, an
        output folder that is a file or holds the inputs.
    """
    from ..core.methods import get_method
    from ..core.operators.registry import operator_arrays

    p = method_params_for(method, op, params)
    settings = make_params(RunSettings, seed=seed, normalise=normalise)
    if not isinstance(device, str) or device.split(":")[0] not in ("auto", "cpu", "cuda", "mps"):
        raise InputError(f"unknown device {device!r}; choose auto, cpu, cuda or mps")
    items = expand_inputs(inputs, io, len(op.measurement_shape))
    folder = _out_folder(out, items)
    spec = op.spec()
    arrays = {k: np.asarray(v) for k, v in operator_arrays(op).items()}
    pdict = to_dict(p)
    from_dict(get_method(method, op.name).params, pdict)  # the dict rebuilds on the worker
    tasks = [BatchTask(i, it, io.out_path(folder, it.name), spec, arrays, method, pdict,
                       int(settings.seed), settings.normalise, bool(resume), io, device)
             for i, it in enumerate(items)]
    return BatchPlan(tasks, folder)


# ---------------------------------------------------------------- the worker side
def _plain(v: Any) -> Any:
    """``v`` as JSON would give it back (tuples as lists, sorted keys)."""
    return json.loads(json.dumps(v, sort_keys=True, default=str))


def stored_differences(prov: Any, task: BatchTask, measurement: dict) -> list[str]:
    """What differs between a stored run record and ``task`` (empty: the same run).

    ``measurement`` is the fingerprint of the task's measurement as it runs.
    """
    if not isinstance(prov, dict):
        return ["it holds no run record"]
    diffs = []
    if _plain(prov.get("operator")) != _plain(task.operator):
        diffs.append("operator")
    if prov.get("method") != task.method:
        diffs.append(f"method {prov.get('method')} -> {task.method}")
    else:
        old, new = _plain(prov.get("params") or {}), _plain(task.params)
        changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        if changed:
            diffs.append("params " + ", ".join(f"{k} {old.get(k)!r} -> {new.get(k)!r}"
                                               for k in changed))
    if prov.get("seed") != task.seed:
        diffs.append(f"seed {prov.get('seed')} -> {task.seed}")
    norm = prov.get("normalise")
    mode = norm.get("mode") if isinstance(norm, dict) else None
    if mode != task.normalise:
        diffs.append(f"normalise {mode} -> {task.normalise}")
    if _plain(prov.get("measurement")) != _plain(measurement):
        diffs.append("input data")
    return diffs


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


def run_item(task: BatchTask) -> ItemOutcome:
    """Run one task where it is (a worker thread or process); never raises."""
    from ..core.methods import get_method
    from ..core.operators.registry import operator_from_spec
    from .batch_schedulers import worker_device, worker_threads

    t0 = time.perf_counter()

    def ended(status: str, message: str = "", **kw: Any) -> ItemOutcome:
        return ItemOutcome(task.index, task.item.name, status, message,
                           seconds=time.perf_counter() - t0, **kw)

    cancel = task.cancel
    try:
        if cancel is not None and cancel.is_set():
            return ended("cancelled", "not started")
        task.io.check(task.out)
        y = read_item(task.item, task.io)
        device = worker_device(task.device)
        op = operator_from_spec(task.operator, task.arrays or None, device=device)
        reason = ""
        if task.resume and task.io.exists(task.out):
            fp = array_fingerprint(measurement_plane(y, op))
            diffs = stored_differences(task.io.provenance(task.out), task, fp)
            if not diffs:
                return ended("skipped", "up to date", outputs=[task.out])
            reason = "stored run differs: " + "; ".join(diffs)
        params = from_dict(get_method(task.method, op.name).params, task.params)
        res = run_to_result(y, op, task.method, params, seed=task.seed,
                            threads=worker_threads(task), cancel=cancel,
                            normalise=task.normalise, budget_bytes=plane_budget(op, None))
        res.provenance["input"] = task.item.label
        written = task.io.write(task.out, res, task.item.name)
        return ended("recomputed" if reason else "done", reason, outputs=written,
                     device=str(device), metrics=dict(res.metrics))
    except CancelledError:
        return ended("cancelled", "stopped during its run")
    except InvRecError as e:
        return ended("failed", _one_line(e))
    except Exception as e:  # noqa: BLE001 - one item's bug or bad file must not stop the rest
        return ended("failed", f"{type(e).__name__}: {_one_line(e)}",
                     detail=traceback.format_exc())


# ---------------------------------------------------------------- running
def run_batch(plan: BatchPlan, *, workers: int | None = None, scheduler: str | None = None,
              threads: int | None = None, cancel: Any = None,
              timeout: float = 10.0) -> Generator[BatchProgress, None, BatchSummary]:
    """Run a :class:`BatchPlan`; yields a :class:`BatchProgress` as each item ends.

    Parameters
    ----------
    plan
        From :func:`plan_batch`.
    workers, scheduler, threads, timeout
        See :func:`~.batch_schedulers.make_scheduler` (checked when the generator starts;
        :func:`batch_steps` checks them at once).
    cancel
        A ``threading.Event``: once set, items not started end as ``cancelled`` and running
        ones stop at their next step (on a cluster within about a second). Outputs already
        written stay; the generator returns the summary with ``cancelled=True``.

    Returns
    -------
    BatchSummary
        As the generator's return value.
    """
    from .batch_schedulers import make_scheduler

    sched = make_scheduler(workers=workers, scheduler=scheduler, threads=threads,
                           timeout=timeout, n_items=len(plan.tasks))
    t0 = time.perf_counter()
    total = len(plan.tasks)
    outcomes: dict[int, ItemOutcome] = {}
    cancelled = False
    try:
        for oc in sched.run(plan.tasks, cancel):
            if oc.index in outcomes:
                continue
            outcomes[oc.index] = oc
            cancelled = cancelled or (cancel is not None and cancel.is_set())
            yield BatchProgress(len(outcomes), total, oc.name, oc)
    finally:
        sched.close()
    ordered = [outcomes[t.index] for t in plan.tasks]
    cancelled = cancelled or any(o.status == "cancelled" for o in ordered)
    return BatchSummary(ordered, plan.out, time.perf_counter() - t0, sched.label, cancelled)


def batch_steps(inputs: Any, op: Any, method: str, params: Any = None, *, out: Any, io: Any,
                seed: int = 0, normalise: str = "auto", resume: bool = True,
                device: str = "auto", workers: int | None = None,
                scheduler: str | None = None, threads: int | None = None, cancel: Any = None,
                timeout: float = 10.0) -> Generator[BatchProgress, None, BatchSummary]:
    """:func:`plan_batch` and :func:`run_batch` in one call; every check happens now.

    Raises
    ------
    InputError
        As :func:`plan_batch`, or bad ``workers`` / ``scheduler`` / ``threads`` values
        (``workers`` and ``scheduler`` together). Not being able to reach the scheduler is
        raised by the generator's first step, before any item runs.
    """
    from .batch_schedulers import check_scheduler_args

    check_scheduler_args(workers, scheduler, threads, timeout)
    plan = plan_batch(inputs, op, method, params, out=out, io=io, seed=seed,
                      normalise=normalise, resume=resume, device=device)
    return run_batch(plan, workers=workers, scheduler=scheduler, threads=threads,
                     cancel=cancel, timeout=timeout)


def with_cancel(tasks: list[BatchTask], cancel: Any, **extra: Any) -> list[BatchTask]:
    """``tasks`` carrying ``cancel`` (and other fields), for a scheduler."""
    return [dataclasses.replace(t, cancel=cancel, **extra) for t in tasks]

