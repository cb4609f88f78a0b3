"""Measure each method's peak working memory, in image copies, for the up-front memory check.

The CUDA caching allocator counts every byte a run allocates, so on a GPU the peak of
``torch.cuda.max_memory_allocated`` during the first steps of a run, less what was allocated
before it, is the method's working set. Divided by the bytes of one image plus one
measurement and by the batch (``n_samples`` of a stochastic method), it is a size-free factor:
``need = factor * (image + measurement bytes) * batch``. Each method runs with its default
parameters on an operator it supports (blur when it can), at two sizes; the larger factor is
kept, and ``napari_invrec/engine/memory_factors.json`` records it with this command.

Usage (on a machine with a CUDA device)::

    python scripts/measure_memory.py --sizes 128 256 --steps 3 \
        --out napari_invrec/engine/memory_factors.json

Without one, ``--cpu-methods M [M ...]`` measures the named methods by the growth of the peak
resident memory over their first steps, each in a fresh process, and merges them into the
file with a note (the CUDA figures of the other methods stay).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from napari_invrec.core.methods import METHODS  # noqa: E402
from napari_invrec.core.models.registry import read_manifest, trained_operator  # noqa: E402
from napari_invrec.core.operators import OPERATORS, NoiseParams, make_operator  # noqa: E402
from napari_invrec.core.params import make_params  # noqa: E402


def _operators_for(method: str) -> list[str]:
    spec = METHODS[method]
    installed = read_manifest()
    ops = []
    for o in sorted(OPERATORS):
        if not spec.supports(o):
            continue
        if all(w in installed and trained_operator(installed[w]) in (None, o)
               for w in spec.weights):
            ops.append(o)
    return (["blur"] if "blur" in ops else []) + [o for o in ops if o != "blur"]


def _setup(method: str, op_name: str, n: int, device: torch.device) -> tuple:
    """Operator, measurement, params, batch and the bytes of one image plus measurement."""
    from skimage.transform import resize

    from napari_invrec.core.data import shepp_logan

    spec = METHODS[method]
    op = make_operator(op_name, (n, n), device=device)
    x = resize(shepp_logan(256), op.shape, anti_aliasing=True).astype(np.float32)
    xt = op.as_image(torch.from_numpy(x)[None, None].to(device))
    y = op.measure(xt, NoiseParams(sigma=0.02, seed=1))
    p = make_params(spec.params)
    batch = int(getattr(p, "n_samples", 1)) if spec.stochastic else 1
    unit = x.size * op.image_dtype.itemsize + int(np.prod(op.measurement_shape)) * \
        op.measurement_dtype.itemsize
    return op, y, p, batch, unit


def _steps(method: str, op: object, y: torch.Tensor, p: object, steps: int,
           device: torch.device) -> None:
    gen = METHODS[method].fn(y, op, p, generator=torch.Generator(device=device).manual_seed(0))
    try:
        for _ in range(steps):
            next(gen)
    except StopIteration:
        pass
    finally:
        gen.close()


def _peak_factor(method: str, op_name: str, n: int, steps: int, device: torch.device) -> float:
    op, y, p, batch, unit = _setup(method, op_name, n, device)
    torch.cuda.synchronize(device)
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device)
    _steps(method, op, y, p, steps, device)
    torch.cuda.synchronize(device)
    peak = torch.cuda.max_memory_allocated(device) - base
    return peak / unit / batch


def _rss_factor(method: str, op_name: str, n: int, steps: int) -> float:
    """The CPU stand-in: peak RSS growth over ``steps`` steps in a fresh process (ru_maxrss,
    KiB on Linux), per (image + measurement) bytes and batch element."""
    import subprocess

    out = subprocess.run([sys.executable, __file__, "--child", method, op_name, str(n),
                          str(steps)], check=True, capture_output=True, text=True)
    return float(out.stdout.strip().splitlines()[-1])


def _child(method: str, op_name: str, n: int, steps: int) -> None:
    import resource

    torch.set_num_threads(1)
    cpu = torch.device("cpu")
    op, y, p, batch, unit = _setup(method, op_name, n, cpu)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    _steps(method, op, y, p, steps, cpu)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base
    print(peak / unit / batch)


def _merge_cpu(methods: list[str], sizes: list[int], steps: int, out: Path) -> None:
    """Measure ``methods`` on the CPU (:func:`_rss_factor`) and merge them into ``out``."""
    rec = json.loads(out.read_text())
    for method in methods:
        op_name = _operators_for(method)[0]
        per = [_rss_factor(method, op_name, n, steps) for n in sizes]
        f = max(per)
        rec["factors"][method] = {
            "operator": op_name, "images": round(f, 2),
            "note": f"no CUDA device: peak RSS growth over {steps} steps on the CPU at "
                    f"{' and '.join(map(str, sizes))} px ({', '.join(f'{v:.2f}' for v in per)})"
                    f", the larger kept (python {' '.join(sys.argv)})"}
        rec["not_measured"].pop(method, None)
        print(f"{method:18s} {op_name:14s} {f:8.2f} image copies (CPU, peak RSS)", flush=True)
    out.write_text(json.dumps(rec, indent=1, sort_keys=True) + "\n")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[128, 256])
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--out", default="napari_invrec/engine/memory_factors.json")
    ap.add_argument("--cpu-methods", nargs="+", default=None, metavar="METHOD",
                    help="without a CUDA device: measure these methods by peak RSS growth "
                    "and merge them into --out (the other entries stay)")
    ap.add_argument("--child", nargs=4, default=None, help=argparse.SUPPRESS)
    ns = ap.parse_args()
    if ns.child:
        _child(ns.child[0], ns.child[1], int(ns.child[2]), int(ns.child[3]))
        return 0
    if ns.cpu_methods:
        _merge_cpu(ns.cpu_methods, ns.sizes, ns.steps, Path(ns.out))
        return 0
    device = torch.device("cuda")
    factors, failed = {}, {}
    for method in sorted(METHODS):
        ops = _operators_for(method)
        if not ops:
            failed[method] = "no runnable operator (weights not installed)"
            continue
        for op_name in ops:
            try:
                f = max(_peak_factor(method, op_name, n, ns.steps, device) for n in ns.sizes)
            except Exception as e:  # noqa: BLE001 - report and try the next operator
                failed[method] = f"{op_name}: {type(e).__name__}: {e}"
                continue
            factors[method] = {"operator": op_name, "images": round(f, 2)}
            failed.pop(method, None)
            print(f"{method:18s} {op_name:14s} {f:8.2f} image copies", flush=True)
            break
    rec = {"what": "peak working memory per batch element, in (image + measurement) bytes",
           "command": "python " + " ".join(sys.argv),
           "device": torch.cuda.get_device_name(device), "torch": torch.__version__,
           "python": platform.python_version(), "sizes": ns.sizes, "steps": ns.steps,
           "factors": factors, "not_measured": failed}
    Path(ns.out).write_text(json.dumps(rec, indent=1, sort_keys=True) + "\n")
    print(json.dumps(failed, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
