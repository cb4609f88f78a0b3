"""The ``napari-invrec batch`` sub-command: one reconstruction per input, on dask.

``napari-invrec batch in/ --operator blur --sigma 2 --method tv-fista --lam 0.01 --out res/``
reconstructs every ``.npy``/``.tif``/``.png`` file of ``in/`` (or the files a quoted glob
``'in/*.tif'`` matches, or the planes of a zarr array) through
:func:`napari_invrec.reconstruct_many`, writing ``res/NAME.tif`` with its run record per
input. The operator and method options are those of ``reconstruct`` (generated from the params
dataclasses by :mod:`napari_invrec.cli`, which hands its option builders to this module: the
layering keeps this module from importing :mod:`napari_invrec.cli`). The operator is built
for the first input's shape; inputs of another shape fail on their own.

``--workers N`` runs on a ``dask.distributed.LocalCluster`` of N single-threaded processes,
``--scheduler tcp://host:port`` on an existing cluster; ``--no-resume`` recomputes outputs
that already hold the same run. A line per input goes to stderr as it ends. Exit status: 0
when every input is done or up to date, 1 when some failed (the summary lists them), 2 for a
user error before any work, 130 when interrupted (outputs written so far stay; run again to
resume).
"""

from __future__ import annotations

import argparse
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .cli_files import CLIError, converting, number_option

__all__ = ["add_batch_parser", "cmd_batch"]


_count = number_option(int, 1, 4096, "a whole number from 1 to 4096")
_seconds = number_option(float, 1e-6, 1e6, "a positive number of seconds")
_seed = number_option(int, 0, 2 ** 63 - 1, "a seed (a whole number >= 0)")


def add_batch_parser(sub: Any, add_options: Callable[[argparse.ArgumentParser], None],
                     epilog: str = "") -> None:
    """Add the ``batch`` sub-command to the sub-parsers ``sub``.

    Parameters
    ----------
    sub
        The sub-parsers of the ``napari-invrec`` parser.
    add_options
        Adds the generated operator and method options (those of ``reconstruct``) to a parser.
    epilog
        The catalogue of operators and methods shown by ``--help``.
    """
    p = sub.add_parser(
        "batch", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=epilog,
        help="reconstruct many measurements (a folder, a glob, a zarr array) on dask",
        description="Reconstruct every input with the same operator and method; each gives "
        "OUT/NAME.tif holding the result and its run record (provenance). Outputs that hold "
        "the same run already are skipped (resume).")
    p.add_argument("inputs", nargs="*", metavar="INPUT",
                   help="files, folders, quoted globs ('in/*.tif') or a zarr array")
    p.add_argument("--input", action="append", default=[], metavar="PATTERN",
                   dest="input_patterns", help="more inputs (repeatable), e.g. 'in/*.tif'")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="output folder (created if missing; not the inputs' folder)")
    p.add_argument("--operator", help="operator family (see the list below)")
    p.add_argument("--method", help="reconstruction method (see the list below)")
    p.add_argument("--seed", type=_seed, default=0, help="random seed of every run (default 0)")
    p.add_argument("--device", default="auto",
                   help="auto (a GPU per worker when there are GPUs), cpu, cuda or mps")
    p.add_argument("--normalise", default="auto", choices=["auto", "on", "off"],
                   help="as for reconstruct (default auto)")
    p.add_argument("--format", default="tif", choices=["tif", "npy", "zarr"],
                   help="output format (default tif)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--workers", type=_count, metavar="N",
                       help="run on a local dask cluster of N single-threaded processes")
    where.add_argument("--scheduler", metavar="ADDRESS",
                       help="run on the dask cluster at ADDRESS (tcp://host:port)")
    p.add_argument("--threads", type=_count, metavar="N",
                   help="CPU threads of the in-process scheduler (default: all cores)")
    p.add_argument("--timeout", type=_seconds, default=10.0, metavar="S",
                   help="seconds to wait for --scheduler and a worker (default 10)")
    p.add_argument("--no-resume", dest="resume", action="store_false",
                   help="recompute outputs that already hold the same run")
    p.add_argument("--quiet", action="store_true", help="print nothing but errors and failures")
    add_options(p)


def _line(ev: Any) -> str:
    o = ev.outcome
    width = len(str(ev.total))
    status = {"done": f"done in {o.seconds:.2f} s", "skipped": "skipped (up to date)",
              "recomputed": f"recomputed in {o.seconds:.2f} s ({o.message})",
              "failed": f"FAILED: {o.message}", "cancelled": "cancelled"}[o.status]
    return f"[{ev.done:>{width}}/{ev.total}] {o.name}: {status}"


def cmd_batch(ns: argparse.Namespace, collect: Callable, build_operator: Callable) -> int:
    """Run ``napari-invrec batch``.

    Parameters
    ----------
    ns
        The parsed options.
    collect
        ``collect(ns, params_cls, owner) -> (values, arrays)``: the generated options given.
    build_operator
        ``build_operator(ns, name, measurement=y)``: the operator for a measurement, from the
        operator options (as ``reconstruct`` builds it).
    """
    from . import api
    from .core.methods import get_method
    from .core.params import make_params
    from .engine.batch import first_measurement
    from .formats.batch_files import BatchFiles

    if not ns.operator:
        raise CLIError("--operator is required for batch (e.g. --operator blur --sigma 2)")
    if not ns.method:
        raise CLIError(f"--method is required; see `napari-invrec list --operator {ns.operator}`")
    inputs = list(ns.inputs) + list(ns.input_patterns)
    if not inputs:
        raise CLIError("give the inputs: files, folders, a zarr array or a quoted glob such as "
                       "'in/*.tif'")
    if Path(ns.out).exists() and not Path(ns.out).is_dir():
        raise CLIError(f"--out {ns.out!r} is a file; give a folder (it is created if missing)")
    mspec = get_method(ns.method, ns.operator)
    values, _ = collect(ns, mspec.params, "method")
    with converting(f"the {ns.method} options"):
        make_params(mspec.params, **values)
    io = BatchFiles(ns.format)
    y0 = first_measurement(inputs, io)
    ns.input = inputs[0]  # what the operator builder names in its messages
    op = build_operator(ns, ns.operator, measurement=y0)

    def show(ev: Any) -> None:
        if ev.outcome.status == "failed" or not ns.quiet:
            print(_line(ev), file=sys.stderr, flush=True)

    cancel = threading.Event()
    try:
        summary = api.reconstruct_many(
            inputs, op, ns.method, out=ns.out, workers=ns.workers, scheduler=ns.scheduler,
            resume=ns.resume, progress=show, cancel=cancel, seed=ns.seed,
            normalise=ns.normalise, threads=ns.threads, device=ns.device, fmt=ns.format,
            timeout=ns.timeout, **values)
    except KeyboardInterrupt:
        cancel.set()
        print(f"napari-invrec: interrupted; outputs written so far stay in {ns.out} (run the "
              "same command again to resume)", file=sys.stderr)
        return 130
    if not ns.quiet:
        print(summary.headline())
    return 1 if summary.failed else 0  # each failure was printed as it happened
