"""Run every benchmark section (or those named on the command line) and print the tables."""

from __future__ import annotations

import importlib
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

SECTIONS = ("solver", "gui", "catalogue", "learned", "denoise", "diffusion", "formats", "quality",
            "calibration", "batch", "volumes", "tiles", "slices", "versus", "train", "phase",
            "acquisition", "selfsup")
NO_FLAGS = ("solver", "gui")  # sections whose main() takes no flags


def main(argv: list[str]) -> int:
    flags = [a for a in argv if a.startswith("--")]
    names = [a for a in argv if not a.startswith("--")] or list(SECTIONS)
    unknown = [n for n in names if n not in SECTIONS]
    if unknown:
        print(f"unknown section(s) {unknown}; choose from {SECTIONS}")
        return 2
    for name in SECTIONS:  # in the catalogue's order, whatever the command line's
        if name in names:
            section = importlib.import_module(f"bench_{name}")
            if name in NO_FLAGS:
                section.main()
            else:
                section.main(flags)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
