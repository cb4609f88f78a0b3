"""Synthetic sample generators (ground-truth images in [0, 1]) and loaders."""

from .heldout import FRESH_KINDS, HELDOUT_IMAGES, fresh_draw, heldout_image
from .phantoms import SAMPLE_IMAGES, atoms, atoms_with_truth, camera, shepp_logan
from .volumes import cells_volume

__all__ = ["SAMPLE_IMAGES", "atoms", "atoms_with_truth", "camera", "shepp_logan",
           "HELDOUT_IMAGES", "heldout_image", "FRESH_KINDS", "fresh_draw", "cells_volume"]
