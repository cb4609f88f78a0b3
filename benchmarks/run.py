"""Run every benchmark section (or those named on the command line) and print the tables."""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

SECTIONS = ("solver", "gui", "catalogue", "learned", "diffusion", "formats", "quality",
            "calibration")


def main(argv: list[str]) -> int:
    flags = [a for a in argv if a.startswith("--")]
    names = [a for a in argv if not a.startswith("--")] or list(SECTIONS)
    unknown = [n for n in names if n not in SECTIONS]
    if unknown:
        print(f"unknown section(s) {unknown}; choose from {SECTIONS}")
        return 2
    if "solver" in names:
        import bench_solver

        bench_solver.main()
    if "gui" in names:
        import bench_gui

        bench_gui.main()
    if "catalogue" in names:
        import bench_catalogue

        bench_catalogue.main(flags)
    if "learned" in names:
        import bench_learned

        bench_learned.main(flags)
    if "diffusion" in names:
        import bench_diffusion

        bench_diffusion.main(flags)
    if "formats" in names:
        import bench_formats

        bench_formats.main()
    if "quality" in names:
        import bench_quality

        bench_quality.main(flags)
    if "calibration" in names:
        import bench_calibration

        bench_calibration.main(flags)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
