"""Where the items of a batch run: dask's threaded scheduler here, or a dask.distributed cluster.

:func:`make_scheduler` returns an object with ``label``, ``run(tasks, cancel)`` (an iterator
of :class:`~.batch.ItemOutcome` in completion order) and ``close()``:

* :class:`ThreadedScheduler` (default): ``dask.threaded.get`` over one task per item in a
  background thread of this process; ``threads`` CPU threads in all, shared between the items
  that run at once (each sets its torch threads, so they do not oversubscribe the cores).
* :class:`ClusterScheduler`: a ``dask.distributed.LocalCluster`` of ``workers`` processes with
  one thread each, or a ``distributed.Client`` connected to the scheduler at ``scheduler``
  (``tcp://host:port``). Tasks carry specs only; each worker picks its device and sets torch's
  threads to its share of its host's cores. Cancel reaches running items through a
  ``distributed.Event`` that they poll at most every :data:`POLL_S` seconds.

The worker-side helpers (:func:`worker_device`, :func:`worker_threads`) are used by
:func:`~.batch.run_item`.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import queue
import sys
import threading
import time
import uuid
import zlib
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlparse

import numpy as np

from ..core.errors import InputError
from .batch import BatchTask, Item, ItemOutcome, read_item, run_item, with_cancel

__all__ = ["make_scheduler", "check_scheduler_args", "ThreadedScheduler", "ClusterScheduler",
           "local_cluster", "worker_device", "worker_threads", "cpu_count", "POLL_S"]

#: how often a running item on a cluster asks whether the batch was cancelled, seconds
POLL_S = 0.5
_SCHEMES = ("tcp", "tls")
_local = threading.local()
_slots = iter(range(sys.maxsize))
_slot_lock = threading.Lock()


def cpu_count() -> int:
    """CPU cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


# ---------------------------------------------------------------- checks
def _positive_int(v: Any, what: str) -> None:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not 1 <= v <= 4096:
        raise InputError(f"{what} must be a whole number from 1 to 4096, got {v!r}")


def check_scheduler_args(workers: Any, scheduler: Any, threads: Any, timeout: Any) -> None:
    """Refuse bad scheduler settings with one line, before any work.

    Raises
    ------
    InputError
        ``workers`` and ``scheduler`` together, a count out of range, an address without a
        host and port or with an unknown scheme, a timeout that is not a positive number.
    """
    if workers is not None and scheduler is not None:
        raise InputError("give workers (a local cluster) or scheduler (an existing cluster), "
                         "not both")
    if workers is not None:
        _positive_int(workers, "workers")
    if threads is not None:
        _positive_int(threads, "threads")
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not (
            math.isfinite(timeout) and timeout > 0):
        raise InputError(f"timeout must be a positive number of seconds, got {timeout!r}")
    if scheduler is None:
        return
    if not isinstance(scheduler, str) or not scheduler.strip():
        raise InputError(f"scheduler must be an address such as tcp://127.0.0.1:8786, got "
                         f"{scheduler!r}")
    scheme, sep, rest = scheduler.partition("://")
    if not sep:
        scheme, rest = "tcp", scheduler
    if scheme not in _SCHEMES:
        raise InputError(f"unknown scheduler address {scheduler!r}: use tcp://HOST:PORT "
                         "(or tls://HOST:PORT)")
    host, _, port = rest.rstrip("/").rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise InputError(f"scheduler address {scheduler!r} needs a host and a port, e.g. "
                         "tcp://127.0.0.1:8786")


def make_scheduler(*, workers: int | None = None, scheduler: str | None = None,
                   threads: int | None = None, timeout: float = 10.0,
                   n_items: int = 1) -> Any:
    """The scheduler for these settings (see the module docstring); nothing starts yet.

    Parameters
    ----------
    workers
        Start a ``LocalCluster`` of this many single-threaded worker processes.
    scheduler
        Address of an existing dask scheduler (``tcp://host:port``).
    threads
        CPU threads of the in-process threaded scheduler (default: all cores).
    timeout
        Seconds to wait for the scheduler and a worker before giving up.
    n_items
        Items in the batch (the threaded scheduler runs no more at once).
    """
    check_scheduler_args(workers, scheduler, threads, timeout)
    if workers is None and scheduler is None:
        return ThreadedScheduler(threads, n_items)
    return ClusterScheduler(workers=workers, address=scheduler, timeout=float(timeout))


# ---------------------------------------------------------------- worker side
def _current_worker() -> Any:
    """The dask.distributed worker running this task, or ``None``."""
    if "distributed" not in sys.modules:
        return None
    from distributed import get_worker

    try:
        return get_worker()
    except ValueError:  # not inside a worker's task
        return None


def _slot() -> int:
    """A small number that tells workers (or threads of this process) apart."""
    w = _current_worker()
    if w is not None:
        return w.name if isinstance(w.name, int) else zlib.crc32(str(w.address).encode())
    slot = getattr(_local, "slot", None)
    if slot is None:
        with _slot_lock:
            slot = _local.slot = next(_slots)
    return slot


def worker_device(preference: str = "auto") -> Any:
    """The device of this worker: ``cuda:i`` with ``i`` by worker (or thread) when there are
    GPUs and ``preference`` is ``auto`` or ``cuda``, else :func:`~.device.choose_device`."""
    import torch

    from .device import choose_device

    if preference in ("auto", "cuda") and torch.cuda.is_available():
        return torch.device(f"cuda:{_slot() % torch.cuda.device_count()}")
    return choose_device(preference)


def worker_threads(task: BatchTask) -> int | None:
    """Torch CPU threads of one task: the scheduler's share (threaded), else this host's
    cores divided by the worker threads on the host (``None`` outside a cluster)."""
    if task.threads:
        return int(task.threads)
    w = _current_worker()
    if w is None:
        return None
    host = urlparse(str(w.address)).hostname
    n = (task.host_threads or {}).get(host) or getattr(w.state, "nthreads", 1)
    return max(1, cpu_count() // max(1, int(n)))


class ClusterCancel:
    """``is_set()`` of the batch's ``distributed.Event``, asked at most every :data:`POLL_S`
    seconds (pickles as its name)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._next = 0.0
        self._set = False

    def __reduce__(self) -> tuple:
        return (ClusterCancel, (self.name,))

    def is_set(self) -> bool:
        if self._set:
            return True
        now = time.monotonic()
        if now >= self._next:
            self._next = now + POLL_S
            try:
                from distributed import Event

                self._set = bool(Event(self.name).is_set())
            except (ValueError, OSError, TimeoutError):  # no client here: cannot tell
                pass
        return self._set


class _Either:
    """Set when either event is (the user's cancel, or the batch being closed)."""

    def __init__(self, *events: Any) -> None:
        self.events = [e for e in events if e is not None]

    def is_set(self) -> bool:
        return any(e.is_set() for e in self.events)


# ---------------------------------------------------------------- in this process
def _deliver(task: BatchTask, put: Any) -> None:
    put(run_item(task))


class ThreadedScheduler:
    """dask's threaded scheduler in this process (see the module docstring)."""

    def __init__(self, threads: int | None, n_items: int) -> None:
        total = int(threads or cpu_count())
        self.n = max(1, min(total, int(n_items)))
        self.per_task = max(1, total // self.n)
        self.label = f"dask threads ({self.n} at a time)"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._torch_threads: int | None = None

    def run(self, tasks: list[BatchTask], cancel: Any) -> Iterator[ItemOutcome]:
        import dask
        import torch

        q: queue.Queue = queue.Queue()
        tasks = with_cancel(tasks, _Either(cancel, self._stop), threads=self.per_task)
        dsk = {("invrec-batch", t.index): (functools.partial(_deliver, t, q.put),)
               for t in tasks}

        def work() -> None:
            try:
                dask.threaded.get(dsk, list(dsk), num_workers=self.n)
            except BaseException as e:  # noqa: BLE001 - handed to the consuming thread
                q.put(e)

        self._torch_threads = torch.get_num_threads()
        self._thread = threading.Thread(target=work, name="invrec-batch", daemon=True)
        self._thread.start()
        for _ in tasks:
            got = q.get()
            if isinstance(got, BaseException):
                raise got
            yield got

    def close(self) -> None:
        """Stop items not started, wait for running ones (they stop at their next step)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self._torch_threads is not None:  # tasks changed torch's default for new threads
            import torch

            torch.set_num_threads(self._torch_threads)


# ---------------------------------------------------------------- on a cluster
def local_cluster(workers: int) -> Any:
    """A ``LocalCluster`` of ``workers`` single-threaded processes for batches.

    Its workers start without distributed's default ``MALLOC_TRIM_THRESHOLD_``: setting it
    turns off glibc's adaptive mmap threshold, so every tensor above 128 kB (a 256 x 256
    float32 image) is a fresh ``mmap`` with page faults; measured here, ``tv-fista`` on
    256 x 256 images took 1.7-1.9 s an image with it and 1.0-1.2 s without (1 thread each).
    """
    import dask
    from distributed import LocalCluster

    environ = dict(dask.config.get("distributed.nanny.pre-spawn-environ", {}) or {})
    environ.pop("MALLOC_TRIM_THRESHOLD_", None)
    with dask.config.set({"distributed.nanny.pre-spawn-environ": environ}):
        return LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                            dashboard_address=None, silence_logs=logging.ERROR)


def _detached(task: BatchTask) -> BatchTask:
    """``task`` with an in-memory item reduced to its own plane (not the whole stack)."""
    import dataclasses

    it = task.item
    if it.array is None:
        return task
    return dataclasses.replace(task, item=Item(it.name, it.label,
                                               array=read_item(it, task.io)))


class ClusterScheduler:
    """A LocalCluster or an existing cluster (see the module docstring)."""

    def __init__(self, *, workers: int | None, address: str | None, timeout: float) -> None:
        self.workers, self.address, self.timeout = workers, address, timeout
        self.label = (f"LocalCluster ({workers} workers x 1 thread)" if workers
                      else f"dask scheduler {address}")
        self._client: Any = None
        self._cluster: Any = None
        self._futures: list = []
        self._event = f"napari-invrec-cancel-{uuid.uuid4().hex}"

    def _connect(self) -> None:
        from distributed import Client

        if self.workers:
            self._cluster = local_cluster(self.workers)
            self._client = Client(self._cluster, timeout=self.timeout)
            return
        try:
            self._client = Client(self.address, timeout=self.timeout)
        except (OSError, TimeoutError) as e:
            raise InputError(f"cannot connect to the dask scheduler at {self.address} within "
                             f"{self.timeout:g} s ({type(e).__name__}); start one with "
                             "`dask scheduler` or check the address") from None
        try:
            self._client.wait_for_workers(1, timeout=self.timeout)
        except TimeoutError:
            raise InputError(f"the dask scheduler at {self.address} has no worker after "
                             f"{self.timeout:g} s; start one with `dask worker "
                             f"{self.address}`") from None

    def _host_threads(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for addr, w in self._client.scheduler_info(n_workers=-1).get("workers", {}).items():
            host = urlparse(addr).hostname
            out[host] = out.get(host, 0) + int(w.get("nthreads", 1))
        return out

    def _settle(self, task: BatchTask, fut: Any) -> ItemOutcome:
        if fut.status == "finished":
            return fut.result()
        if fut.status == "cancelled":
            return ItemOutcome(task.index, task.item.name, "cancelled", "cancelled on the cluster")
        exc = fut.exception()
        text = " ".join(str(exc).split())
        return ItemOutcome(task.index, task.item.name, "failed",
                           f"{type(exc).__name__}: {text}" if text else type(exc).__name__)

    def run(self, tasks: list[BatchTask], cancel: Any) -> Iterator[ItemOutcome]:
        from distributed import Event

        self._connect()
        tasks = [_detached(t) for t in with_cancel(tasks, ClusterCancel(self._event),
                                                   host_threads=self._host_threads())]
        batch = uuid.uuid4().hex[:8]
        q: queue.Queue = queue.Queue()
        self._futures = self._client.map(run_item, tasks, pure=False,
                                         key=[f"invrec-{batch}-{t.index}" for t in tasks])
        for t, f in zip(tasks, self._futures):
            f.add_done_callback(lambda fut, t=t: q.put((t, fut)))
        remaining = {t.index for t in tasks}
        while remaining:
            if cancel is not None and cancel.is_set():
                Event(self._event, client=self._client).set()
                while not q.empty():  # items that ended before the cancel keep their outcome
                    t, fut = q.get()
                    if t.index in remaining and fut.status != "cancelled":
                        remaining.discard(t.index)
                        yield self._settle(t, fut)
                self._client.cancel([f for f in self._futures if not f.done()])
                for t in tasks:
                    if t.index in remaining:
                        remaining.discard(t.index)
                        yield ItemOutcome(t.index, t.item.name, "cancelled",
                                          "cancelled on the cluster")
                return
            try:
                t, fut = q.get(timeout=0.1)
            except queue.Empty:
                continue
            if t.index in remaining:
                remaining.discard(t.index)
                yield self._settle(t, fut)

    def close(self) -> None:
        """Cancel what is still queued and disconnect (a LocalCluster is shut down)."""
        try:
            if self._client is not None:
                pending = [f for f in self._futures if not f.done()]
                if pending:
                    from distributed import Event

                    Event(self._event, client=self._client).set()
                    self._client.cancel(pending)
                self._client.close()
        finally:
            if self._cluster is not None:
                self._cluster.close()
            self._client = self._cluster = None
