"""Network architectures (torch only) and the shipped-weights registry.

* :class:`DRUNet`: noise-conditional residual U-Net (plug-and-play denoiser);
* :class:`DnCNN`: light residual denoiser with a noise-level input;
* :class:`UNet`: plain end-to-end U-Net;
* :class:`MCNN`: multi-column (multi-scale kernel) CNN;
* :func:`load_model` / :func:`save_model`: weights and their manifest (no downloads);
  :func:`manifest_problems` lists what the manifests left out and how to fix it;
  :func:`check_architecture_kwargs` checks kwargs before a network is built.
"""

from .dncnn import DnCNN
from .drunet import DRUNet
from .mcnn import MCNN
from .padding import (
    apply_real_network,
    channels_to_complex,
    complex_to_channels,
    crop,
    pad_to_multiple,
)
from .registry import (
    ARCHITECTURES,
    WEIGHTS_DIR,
    WeightsEntry,
    check_architecture_kwargs,
    entry_dict,
    load_model,
    load_model_file,
    manifest_problems,
    read_manifest,
    register_weights,
    save_model,
    user_weights_dir,
    weights_names,
)
from .unet import UNet

__all__ = ["DRUNet", "DnCNN", "UNet", "MCNN", "pad_to_multiple", "crop",
           "complex_to_channels", "channels_to_complex", "apply_real_network",
           "ARCHITECTURES", "WEIGHTS_DIR", "WeightsEntry", "entry_dict", "load_model",
           "load_model_file", "read_manifest", "save_model", "count_parameters",
           "register_weights", "user_weights_dir", "weights_names", "manifest_problems",
           "check_architecture_kwargs"]


def count_parameters(model) -> int:  # noqa: ANN001 - any nn.Module
    """Number of trainable parameters of ``model``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
