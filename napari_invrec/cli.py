"""Command line on the same engine as the GUI: ``napari-invrec list|simulate|reconstruct|train|
rerun|batch`` (``rerun FILE``: repeat a result saved by the plugin, :mod:`napari_invrec.cli_rerun`;
``batch INPUTS... --out DIR``: many inputs on dask, :mod:`napari_invrec.cli_batch`).

Operator and method parameters become options generated from their params dataclasses, e.g.
``napari-invrec reconstruct --operator blur --sigma 2 --method tv-fista --lam 0.01
--input y.tif --output x.tif``. A name used by both the operator and the method gets a prefix
(``--op-NAME`` / ``--method-NAME``); so does one that clashes with a global option
(``--seed`` is the run's seed, ``--op-seed`` a random mask's seed). Array parameters take a
file (``--kernel-array k.tif``, ``--mask-array m.npy``).

Every run writes ``OUTPUT.json`` beside the output with the provenance (and ``OUTPUT.arrays.npz``
when the operator has array parameters); ``simulate`` writes the operator spec the same way, so
``reconstruct --input y.npy`` finds the operator from ``y.npy.json`` without ``--operator``.
``--budget MB`` bounds the memory of the iterate history (``--iterates``).

Before anything is read or computed, every file the run will write is checked (folder,
suffix, complex data in ``.npy``) and must not be a file it reads (input, its sidecar,
reference, array options), however spelled. File handling lives in
:mod:`napari_invrec.cli_files` (reading) and :mod:`napari_invrec.cli_outputs` (writing).
User errors print one line and exit with status 2; argument syntax errors are argparse's
(usage, status 2); anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from .cli_files import CLIError, converting, number_option, read_array, read_sidecar, sidecar_paths
from .cli_outputs import (
    check_distinct,
    plan_outputs,
    sidecar_text,
    storable,
    write_array,
    write_sidecar,
    write_sidecar_text,
)

__all__ = ["CLIError", "entry", "main", "read_array", "write_array", "write_sidecar"]

GLOBAL_DESTS = {"operator", "method", "input", "output", "seed", "device", "reference",
                "noise", "noise_sigma", "photons", "iterates", "budget", "quiet", "command",
                "normalise", "inputs", "input_patterns", "out", "workers", "scheduler",
                "threads", "timeout", "resume", "format"}
INT64_MAX = 2 ** 63 - 1
MB = 2 ** 20


def _int_option(text: str) -> int:
    """An integer option (argparse ``type``): refuses values no engine integer can hold."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if abs(v) > INT64_MAX:
        raise argparse.ArgumentTypeError(f"{text} is too large; give at most {INT64_MAX}")
    return v


_tile_option = number_option(int, 1, 2 ** 31, "'auto' or a whole number of pixels; "
                             "e.g. --tile 1024 or --tile auto")
_budget_mb = number_option(int, 1, 2 ** 30, "a whole number of megabytes from 1 to "
                           "1073741824; e.g. --budget 512")


# ---------------------------------------------------------------- generated options
def _option_names(op_cls: type | None, m_cls: type | None) -> dict[tuple[str, str], str]:
    """Map (owner, field) -> option name, prefixing clashes."""
    op_fields = [f.name for f in dataclasses.fields(op_cls)] if op_cls else []
    m_fields = [f.name for f in dataclasses.fields(m_cls)] if m_cls else []
    out = {}
    for name in op_fields:
        clash = name in GLOBAL_DESTS
        out[("op", name)] = f"--op-{name}" if clash else f"--{name}"
    for name in m_fields:
        clash = name in GLOBAL_DESTS or name in op_fields
        out[("method", name)] = f"--method-{name}" if clash else f"--{name}"
    return {k: v.replace("_", "-") for k, v in out.items()}


def _add_fields(parser: argparse.ArgumentParser, cls: type, owner: str,
                names: dict[tuple[str, str], str], title: str) -> None:
    from .core.params import choices_of

    group = parser.add_argument_group(title)
    for f in dataclasses.fields(cls):
        opt = names[(owner, f.name)]
        meta = f.metadata
        doc = meta.get("doc", "")
        dest = f"{owner}__{f.name}"
        if f.default is None or (f.default is dataclasses.MISSING):
            group.add_argument(opt, dest=dest, metavar="FILE", default=None,
                               help=f"{doc} (a .npy/.tif file)")
        elif isinstance(f.default, bool):
            group.add_argument(opt, dest=dest, default=None,
                               action=argparse.BooleanOptionalAction,
                               help=f"{doc} (default {f.default})")
        else:
            kind = _int_option if type(f.default) is int else type(f.default)
            allowed = choices_of(meta)
            extra = {"choices": list(allowed)} if allowed else {}
            rng = ""
            if meta.get("min") is not None or meta.get("max") is not None:
                rng = f", range [{meta.get('min')}, {meta.get('max')}]"
            group.add_argument(opt, dest=dest, type=kind, default=None, **extra,
                               help=f"{doc} (default {f.default}{rng})")


def _collect(ns: argparse.Namespace, cls: type, owner: str) -> tuple[dict, dict]:
    values, arrays = {}, {}
    for f in dataclasses.fields(cls):
        v = getattr(ns, f"{owner}__{f.name}", None)
        if v is None:
            continue
        if f.default is None:
            arrays[f.name] = read_array(v, f.name.replace("_", "-"))
        else:
            values[f.name] = v
    return values, arrays


def _catalogue() -> str:
    from .core.methods import METHODS
    from .core.operators import OPERATORS

    lines = ["operators and their parameters:"]
    for name, spec in sorted(OPERATORS.items()):
        fields = ", ".join(f.name for f in dataclasses.fields(spec.params)) or "-"
        lines.append(f"  {name:14s} {spec.description} [{fields}]")
    lines.append("methods and their parameters:")
    for name, spec in sorted(METHODS.items()):
        fields = ", ".join(f.name for f in dataclasses.fields(spec.params))
        ops = "any linear" if spec.operators is None else ", ".join(sorted(spec.operators))
        lines.append(f"  {name:14s} {spec.description} (operators: {ops}) [{fields}]")
    lines.append("Give --operator/--method with --help to see their options in full.")
    return "\n".join(lines)


# ---------------------------------------------------------------- parsers
def _base_parser(op_cls: type | None = None, m_cls: type | None = None) -> argparse.ArgumentParser:
    from .core.operators.noise import NOISE_MODELS
    from .engine.history import DEFAULT_BUDGET

    parser = argparse.ArgumentParser(
        prog="napari-invrec", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Simulate and reconstruct imaging inverse problems y = A(x) + noise.")
    sub = parser.add_subparsers(dest="command", required=True)
    p_list = sub.add_parser("list", help="list operators and methods with their parameters")
    p_list.add_argument("--operator", help="only methods supporting this operator")
    p_list.add_argument("--json", action="store_true", help="machine-readable output")

    names = _option_names(op_cls, m_cls)
    for cmd in ("simulate", "reconstruct"):
        p = sub.add_parser(cmd, formatter_class=argparse.RawDescriptionHelpFormatter,
                           epilog=_catalogue(),
                           help=("simulate a noisy measurement of an image" if cmd == "simulate"
                                 else "reconstruct an image from a measurement"))
        p.add_argument("--input", required=True, metavar="FILE",
                       help="input image (simulate) or measurement (reconstruct): .npy/.tif/.png")
        p.add_argument("--output", required=True, metavar="FILE",
                       help="output .tif or .npy (a complex measurement needs .npy; a complex "
                            "image keeps only its magnitude in .tif); a strict-JSON sidecar "
                            "OUTPUT.json records the provenance (non-finite numbers as null)")
        p.add_argument("--operator", help="operator family (see the list below); for "
                       "reconstruct it defaults to the one in INPUT.json written by simulate")
        p.add_argument("--seed", type=_int_option, default=0,
                       help="random seed (default 0)")
        p.add_argument("--device", default="auto", help="auto, cpu, cuda or mps (default auto)")
        p.add_argument("--quiet", action="store_true", help="print nothing but errors")
        if cmd == "simulate":
            p.add_argument("--noise", default="gaussian", choices=list(NOISE_MODELS),
                           help="noise model (default gaussian)")
            p.add_argument("--noise-sigma", type=float, default=0.03,
                           help="Gaussian noise std (default 0.03)")
            p.add_argument("--photons", type=float, default=100.0,
                           help="Poisson photon count per unit intensity (default 100)")
        else:
            p.add_argument("--method", help="reconstruction method (see the list below)")
            p.add_argument("--reference", metavar="FILE",
                           help="ground-truth image: adds PSNR/SSIM to the metrics")
            p.add_argument("--iterates", metavar="FILE",
                           help="also save the iterate history stack (.npy, or .tif with the "
                                "magnitude of complex images)")
            p.add_argument("--budget", type=_budget_mb, metavar="MB",
                           default=DEFAULT_BUDGET // MB,
                           help="memory budget of the iterate history in megabytes; past it "
                                "the history keeps every 2nd, 4th ... step (default "
                                f"{DEFAULT_BUDGET // MB})")
            p.add_argument("--auto", type=_int_option, nargs="?", const=10, default=None,
                           metavar="N",
                           help="tune the method's main hyperparameters on this measurement "
                                "without ground truth (N candidates, default 10), then run "
                                "it; the chosen values and the estimate go in the sidecar")
            p.add_argument("--estimate", action="store_true",
                           help="also estimate the result's error without ground truth "
                                "(measurement splitting or SURE; re-runs the method a few "
                                "times) and record it in the sidecar")
            p.add_argument("--tile", type=_tile_option, default=None, metavar="N|auto",
                           help="reconstruct tile by tile, for images larger than memory "
                                "(local operators: blur, denoise, inpaint, superres): 'auto' "
                                "(tiles only when the image does not fit) or the tile size in "
                                "pixels; --input may then be a zarr array or a .npy (read by "
                                "windows) and --output a .zarr array, written tile by tile "
                                "(its history in NAME.history.zarr)")
            p.add_argument("--normalise", default="auto", choices=["auto", "on", "off"],
                           help="solve on data scaled to about 0..1 and write the result in "
                                "the input's units; weights and noise levels are relative "
                                "to that range (auto, the default: unless the data already "
                                "lie in 0..1)")
        if op_cls is not None:
            _add_fields(p, op_cls, "op", names, "operator parameters")
        if m_cls is not None and cmd == "reconstruct":
            _add_fields(p, m_cls, "method", names, "method parameters")
    from .cli_rerun import add_rerun_parser
    from .cli_train import add_train_parser

    add_train_parser(sub)
    add_rerun_parser(sub)
    from .cli_batch import add_batch_parser

    def batch_options(p: argparse.ArgumentParser) -> None:
        if op_cls is not None:
            _add_fields(p, op_cls, "op", names, "operator parameters")
        if m_cls is not None:
            _add_fields(p, m_cls, "method", names, "method parameters")

    add_batch_parser(sub, batch_options, _catalogue())
    return parser


def _peek(argv: list[str], name: str) -> str | None:
    for i, a in enumerate(argv):
        if a == f"--{name}" and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith(f"--{name}="):
            return a.split("=", 1)[1]
    return None


# ---------------------------------------------------------------- commands
def _cmd_list(ns: argparse.Namespace) -> int:
    from . import api
    from .core.methods import METHODS
    from .core.operators import OPERATORS

    ops = api.list_operators()
    methods = api.list_methods(ns.operator)
    if ns.json:
        out = {"operators": {o: OPERATORS[o].description for o in ops},
               "methods": {m: {"description": METHODS[m].description,
                               "operators": None if METHODS[m].operators is None
                               else sorted(METHODS[m].operators),
                               "stochastic": METHODS[m].stochastic} for m in methods}}
        print(json.dumps(out, indent=2))
        return 0
    print("operators:")
    for o in ops:
        print(f"  {o:14s} {OPERATORS[o].description}")
    print("methods" + (f" for {ns.operator}" if ns.operator else "") + ":")
    for m in methods:
        s = METHODS[m]
        ops_s = "any linear" if s.operators is None else ", ".join(sorted(s.operators))
        flag = " [stochastic]" if s.stochastic else ""
        print(f"  {m:14s} {s.description}{flag} (operators: {ops_s})")
    return 0


def _reads(ns: argparse.Namespace, classes: dict[str, type]) -> dict[str, str | Path]:
    """Every file the command reads (input, its sidecar, reference, array options)."""
    side, npz = sidecar_paths(ns.input)
    reads: dict[str, str | Path] = {"input": ns.input, "input's sidecar": side,
                                    "input's sidecar arrays": npz}
    if getattr(ns, "reference", None):
        reads["reference"] = ns.reference
    for owner, cls in classes.items():
        for f in dataclasses.fields(cls):
            v = getattr(ns, f"{owner}__{f.name}", None)
            if f.default is None and v is not None:
                reads[f"--{f.name.replace('_', '-')} file"] = v
    return reads


def _build_operator(ns: argparse.Namespace, op_name: str, *, image: Any = None,
                    measurement: Any = None, spec: dict | None = None,
                    spec_arrays: dict | None = None, side: Path | None = None) -> Any:
    """The operator for an ``image`` (simulate) or for a ``measurement`` (reconstruct: the
    sidecar's operator, else the options, with the image size inferred from the measurement
    and array parameters the family derives from it, e.g. estimated coil maps).

    Failures to convert the options, the measurement or the sidecar ``side`` into an
    operator are the user's: they become :class:`CLIError`.
    """
    from .core.errors import InvRecError
    from .core.operators import OPERATORS
    from .core.operators.registry import make_operator, operator_from_spec
    from .core.params import make_params
    from .engine.device import choose_device

    device = choose_device(ns.device)
    cls = OPERATORS[op_name].cls
    values, arrays = _collect(ns, OPERATORS[op_name].params, "op")
    if image is not None:
        with converting(f"the {op_name} options"):
            return make_operator(op_name, tuple(np.shape(image)[-2:]), device=device,
                                 **values, **arrays)
    mshape = tuple(np.shape(measurement))
    if len(mshape) < 2:
        raise CLIError(f"input {ns.input!r} has shape {mshape}; a measurement has at least 2 "
                       "dimensions")
    if spec is not None and spec["operator"] == op_name and not values and not arrays:
        stored = tuple(spec.get("measurement_shape") or spec["shape"])
        if stored != mshape:
            raise CLIError(f"sidecar {str(side)!r} is for measurements of shape {stored}, the "
                           f"input is {mshape}; give the matching input or the --operator "
                           "options instead")
        try:
            return operator_from_spec(spec, spec_arrays, device=device)
        except (InvRecError, ValueError, TypeError) as e:
            raise CLIError(f"sidecar {str(side)!r}: {e}; fix or delete the sidecar") from e
    with converting(f"the {op_name} options for an input of shape {mshape}"):
        params = make_params(cls.Params, **values)
        derived = {k: v for k, v in cls.arrays_from_measurement(params, measurement).items()
                   if k not in arrays}
        return make_operator(op_name, cls.image_shape_for(mshape, params), device=device,
                             **values, **arrays, **derived)


def _cmd_simulate(ns: argparse.Namespace) -> int:
    from . import api
    from .core.operators import OPERATORS
    from .core.operators.noise import NoiseParams
    from .core.operators.registry import operator_arrays
    from .core.params import make_params, to_dict
    from .engine.provenance import package_version

    spec = OPERATORS[ns.operator]
    writes = plan_outputs(ns.output, complex_data=spec.cls.complex_measurement)
    check_distinct(writes, _reads(ns, {"op": spec.params}))
    with converting("the noise options"):
        noise = make_params(NoiseParams, model=ns.noise, sigma=ns.noise_sigma,
                            photons=ns.photons, seed=ns.seed)
    x = read_array(ns.input, "input")
    op = _build_operator(ns, ns.operator, image=x)
    y = api.simulate(x, op, noise=noise.model, sigma=noise.sigma, photons=noise.photons,
                     seed=noise.seed)
    text = sidecar_text({"package": "napari-invrec", "version": package_version(),
                         "kind": "measurement", "operator": op.spec(),
                         "noise": to_dict(noise), "input": str(ns.input)})
    write_array(writes["output"], y)
    side = write_sidecar_text(writes["output"], text, operator_arrays(op))
    if not ns.quiet:
        print(f"wrote {ns.output} ({op.name}, noise {ns.noise}) and {side}")
    return 0


def _cmd_reconstruct(ns: argparse.Namespace, spec: dict | None, spec_arrays: dict,
                     side: Path | None) -> int:
    from . import api
    from .core.methods import get_method
    from .core.operators import OPERATORS
    from .core.params import make_params

    if ns.tile is not None:
        return _cmd_reconstruct_tiled(ns, spec, spec_arrays)
    # everything the user can get wrong is checked before the input is read
    mspec = get_method(ns.method, ns.operator)
    writes = plan_outputs(ns.output, iterates=ns.iterates, std=True)
    check_distinct(writes, _reads(ns, {"op": OPERATORS[ns.operator].params,
                                       "method": mspec.params}))
    values, _ = _collect(ns, mspec.params, "method")
    with converting(f"the {ns.method} options"):
        make_params(mspec.params, **values)
    y = read_array(ns.input, "input")
    ref = read_array(ns.reference, "reference") if ns.reference else None
    op = _build_operator(ns, ns.operator, measurement=y, spec=spec, spec_arrays=spec_arrays,
                         side=side)

    def show(prog: Any) -> None:
        if not ns.quiet and (prog.step == prog.total or prog.step % max(1, prog.total // 10) == 0):
            m = ", ".join(f"{k}={v:.4g}" for k, v in prog.metrics.items())
            print(f"  step {prog.step}/{prog.total}  {m}", file=sys.stderr)

    tuned = None
    if ns.auto is not None:
        from .core.errors import InputError
        from .engine.autotune import autotune_steps, tunable_fields
        from .engine.execute import drain

        if not tunable_fields(ns.method):
            raise InputError(f"--auto: {ns.method} has no hyperparameter to tune; drop --auto "
                             "or choose a method such as tv-fista")

        def trial(t: Any) -> None:
            if not ns.quiet:
                print(f"  trial {t.index}/{t.budget}  {t.label()}  {t.estimate.label()}",
                      file=sys.stderr)

        tuned = drain(autotune_steps(y, op, ns.method, values, budget=ns.auto, seed=ns.seed,
                                     normalise=ns.normalise), trial)
        values = {**values, **tuned.values}
    res = api.reconstruct(y, op, ns.method, seed=ns.seed, reference=ref, progress=show,
                          history_budget=ns.budget * MB, normalise=ns.normalise, **values)
    if tuned is not None:
        res.provenance["autotune"] = tuned.as_dict()
        res.provenance["quality"] = tuned.estimate.as_dict()
    if ns.estimate:
        q = api.estimate_quality(res, y, op=op)
        if not ns.quiet:
            print(f"  {q.summary()}", file=sys.stderr)
    text = sidecar_text({"kind": "result", "provenance": res.provenance, "steps": res.steps})
    out = writes["output"]
    write_array(out, storable(out, res.x))
    written = write_sidecar_text(out, text, res.arrays)
    if ns.iterates:
        write_array(writes["--iterates"], storable(writes["--iterates"], res.iterates),
                    "--iterates")
    if res.std is not None:
        write_array(writes["std file"], storable(writes["std file"], res.std), "std file")
    if not ns.quiet:
        m = ", ".join(f"{k}={v:.4g}" for k, v in res.metrics.items())
        print(f"wrote {ns.output} and {written}: {ns.method} on {op.name}, "
              f"{res.provenance['timings']['total_s']:.2f} s, {m}")
    for w in res.provenance.get("warnings", []):
        print(f"napari-invrec: warning: {w}", file=sys.stderr)
    return 0


def _cmd_reconstruct_tiled(ns: argparse.Namespace, spec: dict | None,
                           spec_arrays: dict) -> int:
    """``reconstruct --tile``: :func:`napari_invrec.reconstruct_tiled` from a file or a zarr
    array to a ``.tif``/``.npy`` or, tile by tile, to a ``.zarr`` array."""
    from . import api
    from .core.methods import get_method
    from .core.operators import OPERATORS

    for flag, used in (("--auto", ns.auto is not None), ("--estimate", ns.estimate),
                       ("--reference", bool(ns.reference))):
        if used:
            raise CLIError(f"{flag} does not combine with --tile; run without tiles for it")
    mspec = get_method(ns.method, ns.operator)
    out = Path(ns.output)
    to_zarr = out.suffix.lower() == ".zarr"
    reads = _reads(ns, {"op": OPERATORS[ns.operator].params, "method": mspec.params})
    if to_zarr:
        if ns.iterates:
            raise CLIError("with a .zarr --output the history goes to NAME.history.zarr "
                           "beside it; drop --iterates")
        side, npz = sidecar_paths(out)
        writes = {"output": out, "output sidecar": side, "output sidecar arrays": npz}
    else:
        writes = plan_outputs(out, iterates=ns.iterates)
    check_distinct(writes, reads)
    values, _ = _collect(ns, mspec.params, "method")
    op_values, op_arrays = _collect(ns, OPERATORS[ns.operator].params, "op")
    arrays = None
    if spec is not None and spec["operator"] == ns.operator and not op_values and not op_arrays:
        op, arrays = spec, spec_arrays
    else:
        op = {"operator": ns.operator, "params": {**op_values, **op_arrays}}
    src = Path(ns.input)
    if src.is_dir():
        y: Any = str(src)
    elif src.suffix.lower() == ".npy" and src.is_file():
        with converting(f"input {ns.input!r}"):
            y = np.load(src, mmap_mode="r", allow_pickle=False)
    else:
        y = read_array(ns.input, "input")

    def show(prog: Any) -> None:
        if ns.quiet:
            return
        if prog.message:
            print(f"  {prog.message}", file=sys.stderr)
        elif prog.step == prog.total:
            print(f"  tile {prog.tile}/{prog.tiles}  residual={prog.metrics['residual']:.4g}",
                  file=sys.stderr)

    res = api.reconstruct_tiled(y, op, ns.method, tile=ns.tile, out=out if to_zarr else None,
                                progress=show, seed=ns.seed, normalise=ns.normalise,
                                device=ns.device, history_budget=ns.budget * MB,
                                arrays=arrays, **values)
    text = sidecar_text({"kind": "result", "provenance": res.provenance, "steps": res.steps})
    if not to_zarr:
        write_array(out, storable(out, np.asarray(res.x)))
        if ns.iterates:
            write_array(writes["--iterates"], np.asarray(res.iterates), "--iterates")
    written = write_sidecar_text(out, text, res.arrays)
    if not ns.quiet:
        t = res.provenance["tiling"]
        print(f"wrote {ns.output} and {written}: {ns.method} on {ns.operator}, {t['tiles']} "
              f"tile(s) of {t['tile']} px (halo {t['halo']} px), "
              f"{res.provenance['timings']['total_s']:.2f} s, "
              f"residual={res.metrics.get('residual', float('nan')):.4g}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``napari-invrec``.

    Parameters
    ----------
    argv
        The arguments after the program name (default ``sys.argv[1:]``).

    Returns
    -------
    int
        The exit status: 0 done, 1 a ``rerun`` that did not reproduce the saved result, 2 a
        user error (printed as one line on stderr). Errors of argument syntax are argparse's
        (``SystemExit(2)`` with the usage); anything else that escapes is a bug and keeps its
        traceback.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        from .core.errors import InvRecError
        from .core.methods import METHODS
        from .core.operators import OPERATORS

        op_name, m_name = _peek(argv, "operator"), _peek(argv, "method")
        spec, spec_arrays, side = None, {}, None
        if argv and argv[0] == "reconstruct":
            spec, spec_arrays, side = read_sidecar(_peek(argv, "input"))
        named_by = ""
        if op_name is None and spec is not None:
            op_name, named_by = spec["operator"], f" (named by the sidecar {str(side)!r})"
        if op_name is not None and op_name not in OPERATORS:
            raise CLIError(f"unknown operator {op_name!r}{named_by}; available: "
                           f"{', '.join(sorted(OPERATORS))}")
        if m_name is not None and m_name not in METHODS:
            raise CLIError(f"unknown method {m_name!r}; available: {', '.join(sorted(METHODS))}")
        parser = _base_parser(OPERATORS[op_name].params if op_name else None,
                              METHODS[m_name].params if m_name else None)
        ns = parser.parse_args(argv)
        if ns.command == "list":
            return _cmd_list(ns)
        if ns.command == "train":
            from .cli_train import cmd_train

            return cmd_train(ns, argv)
        if ns.command == "rerun":
            from .cli_rerun import cmd_rerun

            return cmd_rerun(ns)
        if ns.command == "batch":
            from .cli_batch import cmd_batch

            return cmd_batch(ns, _collect, _build_operator)
        if ns.operator is None:
            ns.operator = op_name
        if ns.operator is None:
            raise CLIError("--operator is required (no INPUT.json sidecar names one)")
        if ns.command == "simulate":
            return _cmd_simulate(ns)
        if ns.method is None:
            raise CLIError("--method is required; see `napari-invrec list --operator "
                           f"{ns.operator}`")
        return _cmd_reconstruct(ns, spec, spec_arrays, side)
    except (CLIError, InvRecError) as e:
        message = " ".join(str(e).split())  # one line, whatever the raiser wrote
        print(f"napari-invrec: error: {message}", file=sys.stderr)
        return 2


def entry() -> None:
    """Console-script wrapper."""
    sys.exit(main())


if __name__ == "__main__":
    entry()
