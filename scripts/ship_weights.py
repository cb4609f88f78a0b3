"""Add weights written by ``napari-invrec train`` to the shipped manifest.

Usage::

    python scripts/ship_weights.py NAME WEIGHTS.pt "one-line description"

Copies ``WEIGHTS.pt`` and its sidecar ``WEIGHTS.pt.json`` (the exact command, seed, data and
validation figures ``napari-invrec train`` recorded) to
``napari_invrec/models/weights/NAME.pt[.json]`` and adds or replaces the manifest entry, with
the sha256 of the copied file. Nothing else is edited by hand: every manifest field comes from
the training run's own record.

Weights from ``--task acquisition`` carry their learned MRI sampling design; it is written
to the operator's design file (``mri.LEARNED_DESIGN``, the ``learned`` pattern of Simulate)
with the training command, and the entry's operator becomes that ``learned`` pattern (at the
training width it is the very pattern the network was tuned to). Those that learned coded
diffraction masks (``--operator phase``) write them to ``phase.LEARNED_MASKS`` (the ``learned``
masks of Simulate) the same way, and the entry's operator reads the shipped design.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from napari_invrec.core.models.registry import (  # noqa: E402
    WEIGHTS_DIR,
    WeightsEntry,
    register_weights,
    sha256_file,
)
from napari_invrec.core.operators.mri import LEARNED_DESIGN  # noqa: E402
from napari_invrec.core.operators.phase import LEARNED_MASKS  # noqa: E402

#: training settings a method reads back from the entry's metrics (end-to-end: the init)
SETTING_KEYS = ("init", "noise_sigma", "data_sigma")
METRIC_KEYS = ("val_psnr", "val_noisy_psnr", "noisy_psnr", "init_psnr", "final_loss",
               "train_seconds", "steps")


def ship(name: str, src: Path, description: str) -> WeightsEntry:
    """Copy ``src`` (+ sidecar) into the package and register it in the shipped manifest."""
    side = json.loads(Path(str(src) + ".json").read_text())
    spec = side.get("spec", {})  # the training engine's record; older sidecars are flat
    dst = WEIGHTS_DIR / f"{name}.pt"
    WEIGHTS_DIR.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)
    Path(str(dst) + ".json").write_text(json.dumps(side, indent=2) + "\n")
    blob = torch.load(dst, map_location="cpu", weights_only=True)
    meta = blob.get("meta", {})
    figures = side.get("metrics") or {k: side[k] for k in METRIC_KEYS if side.get(k) is not None}
    figures |= {k: side[k] for k in SETTING_KEYS if k in side and k not in figures}
    operator = side.get("operator") or meta.get("operator")
    if "sampling_design" in side:
        design = {**side["sampling_design"], "weights": name, "command": side["command"]}
        LEARNED_DESIGN.write_text(json.dumps(design, indent=1) + "\n")
        params = {k: v for k, v in operator["params"].items() if k != "mask_array"}
        operator = {**operator, "params": {**params, "pattern": "learned"}}
    if "coded_masks" in side:
        design = {**side["coded_masks"], "weights": name, "command": side["command"]}
        LEARNED_MASKS.write_text(json.dumps(design) + "\n")
        operator = {**operator, "params": {**operator["params"], "design": ""}}
    entry = WeightsEntry(
        name=name, architecture=blob["architecture"], kwargs=dict(blob.get("kwargs", {})),
        file=str(dst), train_command=side["command"], seed=side.get("seed", spec.get("seed")),
        data=str(side.get("data", spec.get("data", ""))), figures=[], sha256=sha256_file(dst),
        description=description, task=side.get("task", meta.get("task", "denoiser")),
        operator=operator, metrics=figures,
        training=meta.get("training", ""))
    register_weights(entry, manifest=WEIGHTS_DIR / "manifest.json")
    return entry


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__)
        return 2
    e = ship(argv[0], Path(argv[1]), argv[2])
    print(f"shipped {e.name}: {e.architecture} {e.task}, {Path(e.file).stat().st_size / 1e6:.2f}"
          f" MB, figures {e.metrics}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
