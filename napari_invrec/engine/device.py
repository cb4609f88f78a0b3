"""Choice of the torch device a run uses."""

from __future__ import annotations

import torch

from ..core.errors import InputError

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")


def available_devices() -> list[str]:
    """Devices usable on this machine, best first, always ending with ``"cpu"``."""
    out = []
    if torch.cuda.is_available():
        out.append("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        out.append("mps")
    out.append("cpu")
    return out


def choose_device(preference: str | torch.device | None = "auto") -> torch.device:
    """Resolve ``"auto"`` (cuda, then mps, then cpu) or check a forced device exists.

    Raises
    ------
    InputError
        If a forced device is not available here.
    """
    if isinstance(preference, torch.device):
        return preference
    pref = (preference or "auto").lower()
    avail = available_devices()
    if pref == "auto":
        return torch.device(avail[0])
    base = pref.split(":")[0]
    if base not in DEVICE_CHOICES:
        raise InputError(f"unknown device {preference!r}; choose one of {DEVICE_CHOICES}")
    if base not in avail:
        raise InputError(f"device {preference!r} is not available on this machine; "
                         f"available: {', '.join(avail)} (or 'auto')")
    return torch.device(pref)


def replay_device(recorded: str | None) -> torch.device:
    """The device to repeat a recorded run on: the recorded one when this machine has it
    (random streams differ between devices, so only the same device repeats a stochastic
    run exactly), else ``"auto"``."""
    if isinstance(recorded, str) and recorded.split(":")[0] in available_devices():
        try:
            return choose_device(recorded)
        except InputError:
            pass
    return choose_device("auto")


def gui_thread_budget() -> int:
    """CPU threads a solver may use while a GUI is live: all cores but one.

    The spare core keeps the event loop (and the display server) responsive; measured here
    (2 cores, Xvfb), OpenMP threads spinning on every core slowed tv-fista 4x inside napari.
    """
    import os

    return max(1, (os.cpu_count() or 1) - 1)


