"""The package version, in a module of its own that imports nothing.

Every layer may import it (``core``, ``engine``, the front ends and ``napari_invrec/__init__``
itself), so asking for the version never loads the package's public API; ``setup.cfg`` reads it
too. The import-linter contracts in ``pyproject.toml`` keep it at the bottom of the layers.
"""

__version__ = "0.1.0"
