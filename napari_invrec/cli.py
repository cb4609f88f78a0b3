"""Command line on the same engine as the GUI: ``napari-invrec list|simulate|reconstruct|train``.

Operator and method parameters become options generated from their params dataclasses, e.g.
``napari-invrec reconstruct --operator blur --sigma 2 --method tv-fista --lam 0.01
--input y.tif --output x.tif``. A name used by both the operator and the method gets a prefix
(``--op-NAME`` / ``--method-NAME``); so does one that clashes with a global option
(``--seed`` is the run's seed, ``--op-seed`` a random mask's seed). Array parameters take a
file (``--kernel-array k.tif``, ``--mask-array m.npy``).

Every run writes ``OUTPUT.json`` beside the output with the provenance (and ``OUTPUT.arrays.npz``
when the operator has array parameters); ``simulate`` writes the operator spec the same way, so
``reconstruct --input y.npy`` finds the operator from ``y.npy.json`` without ``--operator``.
Errors print one line and exit with status 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

GLOBAL_DESTS = {"operator", "method", "input", "output", "seed", "device", "reference",
                "noise", "noise_sigma", "photons", "iterates", "quiet", "command"}


class CLIError(Exception):
    """A user error on the command line (exit status 2)."""


# ---------------------------------------------------------------- files
def read_array(path: str | Path, what: str = "input") -> np.ndarray:
    """Read a 2-D array from .npy, .tif/.tiff or .png/.jpg."""
    p = Path(path)
    if not p.is_file():
        raise CLIError(f"{what} file {str(p)!r} does not exist")
    suffix = p.suffix.lower()
    try:
        if suffix == ".npy":
            return np.load(p)
        if suffix in (".tif", ".tiff"):
            import tifffile

            return tifffile.imread(p)
        if suffix in (".png", ".jpg", ".jpeg"):
            from skimage.io import imread

            return imread(p)
    except Exception as e:  # noqa: BLE001 - any reader failure is a bad file for the user
        raise CLIError(f"cannot read {what} file {str(p)!r}: {e}") from e
    raise CLIError(f"{what} file {str(p)!r}: unsupported format {suffix!r} "
                   "(use .npy, .tif or .png)")


def write_array(path: str | Path, a: np.ndarray) -> None:
    """Write ``a`` as .npy (any dtype) or .tif (real float32; complex needs .npy)."""
    p = Path(path)
    if not p.parent.exists():
        raise CLIError(f"output folder {str(p.parent)!r} does not exist")
    suffix = p.suffix.lower()
    if suffix == ".npy":
        np.save(p, a)
    elif suffix in (".tif", ".tiff"):
        if np.iscomplexobj(a):
            raise CLIError(f"{p.name}: complex data needs a .npy output")
        import tifffile

        tifffile.imwrite(p, np.asarray(a, dtype=np.float32))
    else:
        raise CLIError(f"output {str(p)!r}: use a .npy or .tif file name")


def _json_default(o: Any) -> Any:
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    raise TypeError(f"not JSON serialisable: {type(o)}")


def write_sidecar(output: str | Path, record: dict, arrays: dict | None = None) -> Path:
    """Write ``OUTPUT.json`` (and ``OUTPUT.arrays.npz`` for array parameters)."""
    side = Path(str(output) + ".json")
    side.write_text(json.dumps(record, indent=2, default=_json_default))
    if arrays:
        np.savez(str(output) + ".arrays.npz", **{k: np.asarray(v) for k, v in arrays.items()})
    return side


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
            kind = type(f.default)
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
                       help="output .tif or .npy (complex data needs .npy); a JSON sidecar "
                            "OUTPUT.json records the provenance")
        p.add_argument("--operator", help="operator family (see the list below); for "
                       "reconstruct it defaults to the one in INPUT.json written by simulate")
        p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
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
                           help="also save the iterate history stack (.npy or .tif)")
        if op_cls is not None:
            _add_fields(p, op_cls, "op", names, "operator parameters")
        if m_cls is not None and cmd == "reconstruct":
            _add_fields(p, m_cls, "method", names, "method parameters")
    from .cli_train import add_train_parser

    add_train_parser(sub)
    return parser


def _peek(argv: list[str], name: str) -> str | None:
    for i, a in enumerate(argv):
        if a == f"--{name}" and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith(f"--{name}="):
            return a.split("=", 1)[1]
    return None


def _sidecar_operator(input_path: str | None) -> tuple[dict | None, dict]:
    if not input_path:
        return None, {}
    side = Path(input_path + ".json")
    if not side.is_file():
        return None, {}
    try:
        rec = json.loads(side.read_text())
    except json.JSONDecodeError as e:
        raise CLIError(f"sidecar {side} is not valid JSON: {e}") from e
    arrays = {}
    npz = Path(input_path + ".arrays.npz")
    if npz.is_file():
        with np.load(npz) as z:
            arrays = {k: z[k] for k in z.files}
    return rec.get("operator"), arrays


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


def _build_operator(ns: argparse.Namespace, op_name: str, *, image: Any = None,
                    measurement: Any = None, spec: dict | None = None,
                    spec_arrays: dict | None = None) -> Any:
    """The operator for an ``image`` (simulate) or for a ``measurement`` (reconstruct: the
    sidecar's operator, else the options, with the image size inferred from the measurement
    and array parameters the family derives from it, e.g. estimated coil maps)."""
    from .core.operators import OPERATORS
    from .core.operators.registry import make_operator, operator_from_spec
    from .core.params import make_params
    from .engine.device import choose_device

    device = choose_device(ns.device)
    cls = OPERATORS[op_name].cls
    values, arrays = _collect(ns, OPERATORS[op_name].params, "op")
    if image is not None:
        return make_operator(op_name, tuple(np.shape(image)[-2:]), device=device, **values,
                             **arrays)
    mshape = tuple(np.shape(measurement))
    if spec is not None and spec.get("operator") == op_name and not values and not arrays:
        stored = tuple(spec.get("measurement_shape") or spec["shape"])
        if stored != mshape:
            raise CLIError(f"the sidecar operator is for measurements of shape {stored}, the "
                           f"input is {mshape}")
        return operator_from_spec(spec, spec_arrays, device=device)
    params = make_params(cls.Params, **values)
    derived = {k: v for k, v in cls.arrays_from_measurement(params, measurement).items()
               if k not in arrays}
    return make_operator(op_name, cls.image_shape_for(mshape, params), device=device,
                         **values, **arrays, **derived)


def _cmd_simulate(ns: argparse.Namespace) -> int:
    from . import api
    from .core.params import to_dict

    x = read_array(ns.input, "input")
    op = _build_operator(ns, ns.operator, image=x)
    y = api.simulate(x, op, noise=ns.noise, sigma=ns.noise_sigma, photons=ns.photons,
                     seed=ns.seed)
    write_array(ns.output, y)
    from .core.operators.noise import NoiseParams
    from .core.operators.registry import operator_arrays
    from .engine.provenance import package_version

    noise = to_dict(NoiseParams(ns.noise, ns.noise_sigma, ns.photons, ns.seed))
    rec = {"package": "napari-invrec", "version": package_version(), "kind": "measurement",
           "operator": op.spec(), "noise": noise, "input": str(ns.input)}
    side = write_sidecar(ns.output, rec, operator_arrays(op))
    if not ns.quiet:
        print(f"wrote {ns.output} ({op.name}, noise {ns.noise}) and {side}")
    return 0


def _cmd_reconstruct(ns: argparse.Namespace, spec: dict | None, spec_arrays: dict) -> int:
    from . import api
    from .core.methods import get_method

    y = read_array(ns.input, "input")
    op = _build_operator(ns, ns.operator, measurement=y, spec=spec, spec_arrays=spec_arrays)
    mspec = get_method(ns.method, op.name)
    values, _ = _collect(ns, mspec.params, "method")
    ref = read_array(ns.reference, "reference") if ns.reference else None

    def show(prog: Any) -> None:
        if not ns.quiet and (prog.step == prog.total or prog.step % max(1, prog.total // 10) == 0):
            m = ", ".join(f"{k}={v:.4g}" for k, v in prog.metrics.items())
            print(f"  step {prog.step}/{prog.total}  {m}", file=sys.stderr)

    res = api.reconstruct(y, op, ns.method, seed=ns.seed, reference=ref, progress=show,
                          **values)
    # a complex image (MRI) keeps its phase in .npy; a .tif gets its magnitude
    out = res.x
    if np.iscomplexobj(out) and Path(ns.output).suffix.lower() != ".npy":
        out = np.abs(out)
    write_array(ns.output, out)
    side = write_sidecar(ns.output, {"kind": "result", "provenance": res.provenance,
                                     "steps": res.steps}, res.arrays)
    if ns.iterates:
        write_array(ns.iterates, res.iterates)
    if res.std is not None:
        write_array(Path(ns.output).with_suffix(".std" + Path(ns.output).suffix), res.std)
    if not ns.quiet:
        m = ", ".join(f"{k}={v:.4g}" for k, v in res.metrics.items())
        print(f"wrote {ns.output} and {side}: {ns.method} on {op.name}, "
              f"{res.provenance['timings']['total_s']:.2f} s, {m}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status (0 ok, 2 user error)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        from .core.errors import InvRecError
        from .core.methods import METHODS
        from .core.operators import OPERATORS

        op_name, m_name = _peek(argv, "operator"), _peek(argv, "method")
        spec, spec_arrays = (None, {})
        if argv and argv[0] == "reconstruct":
            spec, spec_arrays = _sidecar_operator(_peek(argv, "input"))
            if op_name is None and spec is not None:
                op_name = spec.get("operator")
        if op_name is not None and op_name not in OPERATORS:
            raise CLIError(f"unknown operator {op_name!r}; available: "
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
        if ns.operator is None:
            ns.operator = op_name
        if ns.operator is None:
            raise CLIError("--operator is required (no INPUT.json sidecar names one)")
        if ns.command == "simulate":
            return _cmd_simulate(ns)
        if ns.method is None:
            raise CLIError("--method is required; see `napari-invrec list --operator "
                           f"{ns.operator}`")
        return _cmd_reconstruct(ns, spec, spec_arrays)
    except (CLIError, InvRecError) as e:
        print(f"napari-invrec: error: {e}", file=sys.stderr)
        return 2


def entry() -> None:
    """Console-script wrapper."""
    sys.exit(main())


if __name__ == "__main__":
    entry()
