"""Pure compute: forward operators, reconstruction methods, analysis and data.

Nothing under ``napari_invrec.core`` may import Qt, napari or magicgui; a test
(``tests/test_layering.py``) enforces it.
"""
