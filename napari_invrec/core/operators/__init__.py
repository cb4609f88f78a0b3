"""Forward models, one module per family, collected in :data:`OPERATORS`."""

# registration: importing a module adds its families to the registry
from . import (  # noqa: F401
    blind_blur,
    blur,
    cs,
    ct,
    denoise,
    inpaint,
    lensless,
    mri,
    mri_multicoil,
    phase,
    superres,
)
from .base import ForwardOperator, LinearOperator
from .noise import NOISE_MODELS, NoiseParams, add_noise
from .registry import OPERATORS, OperatorSpec, make_operator, register_operator

__all__ = ["ForwardOperator", "LinearOperator", "NoiseParams", "NOISE_MODELS", "add_noise",
           "OPERATORS", "OperatorSpec", "make_operator", "register_operator"]
