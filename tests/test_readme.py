"""The README stays true: its compatibility table is the registry's, its commands exist."""

import re
from pathlib import Path

from napari_invrec.engine.catalogue import catalogue_markdown, read_block, weights_table

ROOT = Path(__file__).resolve().parents[1]


def test_catalogue_markdown_is_generated_from_the_registry():
    text = (ROOT / "README.md").read_text()
    assert read_block(text, "compat") == catalogue_markdown().strip(), (
        "README compatibility table is stale: run `python scripts/update_readme.py`")
    assert read_block(text, "weights") == weights_table().strip(), (
        "README shipped-weights table is stale: run `python scripts/update_readme.py`")


def test_readme_opens_with_make_run_and_make_test():
    text = (ROOT / "README.md").read_text()
    first_block = re.search(r"```bash\n(.*?)```", text, re.S).group(1)
    cmds = [line.split("#")[0].strip() for line in first_block.splitlines() if line.strip()]
    assert cmds == ["make run", "make test"]
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^run:", makefile, re.M) and re.search(r"^test:", makefile, re.M)
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci
