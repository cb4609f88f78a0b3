"""The architectures a weights file or manifest entry may name: :data:`ARCHITECTURES`.

The one table of network classes by registry key (``"drunet"``, ``"vae"``...); the manifest
checks, :func:`~.arch_check.check_architecture_kwargs` and the loaders in :mod:`.registry` all
read it, so it sits below them.
"""

from __future__ import annotations

from torch import nn

from ..errors import InputError
from .cgan import ConditionalGAN
from .dirac import DiracNet
from .dncnn import DnCNN
from .drunet import DRUNet
from .humus import HumusNet
from .mcnn import MCNN
from .swinir import SwinIR
from .unet import UNet
from .unrolled import LearnedADMM, NeumannNet, UnrolledPGD, VarNet
from .unrolled_phase import UnrolledPhase
from .vae import VAE

__all__ = ["ARCHITECTURES", "architecture_name"]

ARCHITECTURES: dict[str, type[nn.Module]] = {"drunet": DRUNet, "dncnn": DnCNN, "unet": UNet,
                                             "mcnn": MCNN, "unrolled-pgd": UnrolledPGD,
                                             "varnet": VarNet, "neumann": NeumannNet,
                                             "learned-admm": LearnedADMM,
                                             "humus-net": HumusNet, "cgan": ConditionalGAN,
                                             "swinir": SwinIR, "dirac": DiracNet,
                                             "unrolled-phase": UnrolledPhase,
                                             "vae": VAE}


def architecture_name(model: nn.Module) -> str:
    """Registry key of ``model``'s class (``"drunet"``...).

    Raises
    ------
    InputError
        ``model``'s class is not in :data:`ARCHITECTURES`.
    """
    for key, cls in ARCHITECTURES.items():
        if type(model) is cls:
            return key
    raise InputError(f"{type(model).__name__} is not a registered architecture; use one of "
                     f"{', '.join(ARCHITECTURES)}")
