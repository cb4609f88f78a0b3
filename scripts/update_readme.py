"""Regenerate the README's tables from the registries: the method/operator compatibility
table and the shipped-weights table (from the shipped manifest).

``python scripts/update_readme.py`` rewrites the blocks between their markers;
``tests/test_readme.py`` fails when the README is out of date.
"""

from pathlib import Path

from napari_invrec.engine.catalogue import catalogue_markdown, replace_block, weights_table

README = Path(__file__).resolve().parents[1] / "README.md"


def main() -> None:
    text = README.read_text()
    text = replace_block(text, "compat", catalogue_markdown())
    README.write_text(replace_block(text, "weights", weights_table()))
    print(f"updated the compatibility and weights tables in {README}")


if __name__ == "__main__":
    main()
