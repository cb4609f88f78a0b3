"""Training checkpoints: model weights, optimiser state, step and provenance in one file.

A checkpoint written after step ``k`` lets a training loop started with ``resume=path`` continue
at step ``k + 1``. The loops draw each step's data from a generator seeded by ``(seed, step)``
and compute the learning rate from the step number, so the resumed run's losses equal those of
an uninterrupted run (bit for bit on CPU).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from ..errors import InputError

__all__ = ["save_checkpoint", "load_checkpoint", "CHECKPOINT_FORMAT"]

CHECKPOINT_FORMAT = 1


def save_checkpoint(path: str | Path, model: torch.nn.Module,
                    optimizer: torch.optim.Optimizer | None, step: int,
                    meta: dict | None = None) -> Path:
    """Write ``model``/``optimizer`` state, ``step`` and ``meta`` to ``path`` atomically.

    The file is written next to ``path`` and renamed over it, so an interrupted save never
    leaves a truncated checkpoint.
    """
    p = Path(path)
    if not p.parent.exists():
        raise InputError(f"checkpoint folder {str(p.parent)!r} does not exist")
    record = {
        "format": CHECKPOINT_FORMAT,
        "step": int(step),
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "meta": dict(meta or {}),
    }
    tmp = p.with_name(p.name + ".tmp")
    torch.save(record, tmp)
    os.replace(tmp, p)
    return p


def load_checkpoint(path: str | Path, model: torch.nn.Module | None = None,
                    optimizer: torch.optim.Optimizer | None = None,
                    map_location: torch.device | str | None = "cpu") -> dict:
    """Read a checkpoint; load its weights into ``model`` and state into ``optimizer``.

    Returns
    -------
    dict
        ``format``, ``step``, ``model`` (state dict), ``optimizer`` (state dict or ``None``)
        and ``meta``.

    Raises
    ------
    InputError
        If the file is missing, not a checkpoint, or its weights do not fit ``model``.
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(f"checkpoint {str(p)!r} does not exist")
    try:
        rec = torch.load(p, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - any failure means an unusable file
        raise InputError(f"cannot read checkpoint {str(p)!r}: {e}") from e
    if not isinstance(rec, dict) or "model" not in rec or "step" not in rec:
        raise InputError(f"{str(p)!r} is not a napari-invrec training checkpoint")
    if model is not None:
        try:
            model.load_state_dict(rec["model"])
        except RuntimeError as e:
            detail = " ".join(str(e).split())
            detail = detail if len(detail) <= 200 else detail[:200] + "..."
            raise InputError(f"checkpoint {str(p)!r} does not fit this model (another "
                             f"architecture or other constructor arguments?): {detail}") from e
    if optimizer is not None:
        if rec.get("optimizer") is None:
            raise InputError(f"checkpoint {str(p)!r} holds no optimiser state to resume from")
        optimizer.load_state_dict(rec["optimizer"])
    return rec
