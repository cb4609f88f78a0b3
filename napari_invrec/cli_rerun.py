"""The ``napari-invrec rerun FILE`` sub-command: repeat the run of a saved result and compare.

``FILE`` is a layer saved by the plugin's writer (File > Save Selected Layer with the
napari-invrec writer, or :func:`napari_invrec.formats.save.save_layer`): an OME-Zarr folder, a
TIFF or a ``.npy`` with its sidecars. The run record, the measurement as it ran and the
operator's arrays come from the file and are checked against their recorded fingerprints
before anything runs (:func:`napari_invrec.api.rerun_file`).

Exit status: 0 when the re-run repeats the saved values within the tolerance
(:data:`napari_invrec.engine.reproduce.RERUN_RTOL` of the saved range), 1 when it does not,
2 when the file is refused (not a napari-invrec save, no run record or measurement, an array
or measurement that differs from the recorded one, a bad ``--output``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from .cli_outputs import check_distinct

__all__ = ["add_rerun_parser", "cmd_rerun"]


def add_rerun_parser(sub: Any) -> None:
    """Add the ``rerun`` sub-command to the sub-parsers ``sub``."""
    from .engine.reproduce import RERUN_RTOL

    p = sub.add_parser(
        "rerun", help="repeat the run of a result saved by napari-invrec and compare",
        description="Repeat the run recorded in a result saved by napari-invrec (.zarr, .tif "
        "or .npy written by its writer) on the measurement stored in it, and print the largest "
        "difference from the saved result. Exit status 0: reproduced (within "
        f"{RERUN_RTOL:g} of the saved result's range), 1: not reproduced, 2: refused.")
    p.add_argument("file", metavar="FILE", help="the saved result")
    p.add_argument("--output", metavar="OUT",
                   help="also save the re-run's result with its provenance (.zarr, .tif or "
                        ".npy)")
    p.add_argument("--device", default=None,
                   help="run on this device (auto, cpu, cuda, mps) instead of the recorded "
                        "one; results from another device may differ beyond the tolerance")
    p.add_argument("--quiet", action="store_true",
                   help="print nothing but errors (and a failed reproduction)")


def _save(out: str, report: Any) -> None:
    from .engine.layers import result_layers, run_name
    from .formats.save import save_layer
    from .formats.saved import record_of

    prov = report.result.provenance
    rec = record_of(report.path) or {}
    scale = (rec.get("layer") or {}).get("scale")
    data, kw, _ = result_layers(report.result, name=run_name(
        prov["method"], prov["operator"]["operator"]), scale=scale)[0]
    save_layer(out, data, kw)


def cmd_rerun(ns: argparse.Namespace) -> int:
    """Run ``napari-invrec rerun``; returns the exit status (0 reproduced, 1 not)."""
    from . import api
    from .formats.save import check_save_path

    if ns.output:
        check_save_path(ns.output)
        check_distinct({"--output": Path(ns.output)}, {"FILE": Path(ns.file)})
    report = api.rerun_file(ns.file, device=ns.device)
    if ns.output:
        _save(ns.output, report)
    if not report.reproduced:
        print(f"napari-invrec: {report.summary()}", file=sys.stderr)
        return 1
    if not ns.quiet:
        extra = f"; wrote {ns.output}" if ns.output else ""
        print(report.summary() + extra)
    return 0
