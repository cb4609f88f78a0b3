"""Regenerate the README's method/operator compatibility table from the registries.

``python scripts/update_readme.py`` rewrites the block between the compat-table markers;
``tests/test_readme.py`` fails when the README is out of date.
"""

from pathlib import Path

from napari_invrec.engine.catalogue import catalogue_markdown, replace_block

README = Path(__file__).resolve().parents[1] / "README.md"


def main() -> None:
    text = README.read_text()
    README.write_text(replace_block(text, "compat", catalogue_markdown()))
    print(f"updated the compatibility table in {README}")


if __name__ == "__main__":
    main()
