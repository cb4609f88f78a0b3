"""Training of learned priors: patch sources, training loops (generators) and checkpoints."""

from .checkpoint import load_checkpoint, save_checkpoint
from .datasets import (
    ALLOWED_SKIMAGE_IMAGES,
    ArrayPatches,
    FolderPatches,
    ImagePatches,
    PatchSource,
    SyntheticPatches,
    make_source,
)
from .loops import (
    TrainState,
    drain,
    step_operator,
    train_denoiser,
    train_noise2self,
)
from .operator_nets import train_end_to_end, train_unrolled

__all__ = ["ALLOWED_SKIMAGE_IMAGES", "ArrayPatches", "FolderPatches", "ImagePatches",
           "PatchSource", "SyntheticPatches", "make_source", "TrainState", "drain",
           "train_denoiser", "train_noise2self", "train_end_to_end", "train_unrolled",
           "step_operator", "save_checkpoint",
           "load_checkpoint"]
