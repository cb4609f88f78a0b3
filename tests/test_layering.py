"""The layering rule of DESIGN §2, checked: the import-linter contracts of ``pyproject.toml``
hold (front ends -> api -> engine -> core, core's own order, no Qt/napari below the widgets),
core and engine never import Qt/napari/magicgui at run time, and ``import napari_invrec`` is
light (neither torch nor Qt)."""

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

BLOCKER = """
import importlib.abc, sys
BANNED = ("qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "napari", "magicgui", "superqt",
          "vispy")
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in BANNED:
            raise ImportError(f"banned import {name}")
        return None
sys.meta_path.insert(0, Block())
"""


def _run(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_core_engine_api_cli_import_without_qt_or_napari():
    code = BLOCKER + """
import napari_invrec.core.operators, napari_invrec.core.methods, napari_invrec.core.analysis
import napari_invrec.core.data, napari_invrec.core.models, napari_invrec.core.training
import napari_invrec.core.denoisers, napari_invrec.core.wavelets
import napari_invrec.engine.runner, napari_invrec.engine.stack, napari_invrec.engine.layers
import napari_invrec.engine.execute, napari_invrec._version
import napari_invrec.api, napari_invrec.cli, napari_invrec.cli_train
print("ok")
"""
    assert _run(code).strip() == "ok"


def test_top_level_import_is_light():
    code = """
import json, sys, time
t = time.perf_counter()
import napari_invrec
dt = time.perf_counter() - t
heavy = [m for m in ("torch", "qtpy", "PyQt5", "napari", "magicgui", "numpy")
         if m in sys.modules]
print(json.dumps({"heavy": heavy, "seconds": dt}))
"""
    rec = json.loads(_run(code))
    assert rec["heavy"] == [], rec
    assert rec["seconds"] < 0.5, rec


def test_api_names_resolve_lazily():
    code = """
import napari_invrec as ir
names = [n for n in ir.__all__ if n != "__version__"]
missing = [n for n in names if not callable(getattr(ir, n))]
print(",".join(missing) or "ok")
"""
    assert _run(code).strip() == "ok"


LINT_IMPORTS = """
import sys
from importlinter.cli import lint_imports_command
sys.argv[0] = "lint-imports"
sys.exit(lint_imports_command())
"""


def test_import_contracts():
    """``lint-imports`` (import-linter, in the ``testing`` extra) keeps every contract."""
    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"][
        "contracts"]
    out = subprocess.run([sys.executable, "-c", LINT_IMPORTS, "--no-cache", "--no-logo",
                          "pyproject.toml"], cwd=ROOT, capture_output=True, text=True,
                         timeout=300)
    report = out.stdout + out.stderr
    assert out.returncode == 0, report
    counts = re.search(r"Contracts: (\d+) kept, (\d+) broken", report)
    assert counts is not None, report
    assert (int(counts[1]), int(counts[2])) == (len(contracts), 0), report
    assert {c["id"] for c in contracts} >= {"layers", "core-layers", "no-gui-below-widgets"}
