"""Forward models, one module per family, collected in :data:`OPERATORS`."""

from . import blur, denoise, inpaint, mri  # noqa: F401  (registration)
from .base import ForwardOperator, LinearOperator
from .noise import NOISE_MODELS, NoiseParams, add_noise
from .registry import OPERATORS, OperatorSpec, make_operator, register_operator

__all__ = ["ForwardOperator", "LinearOperator", "NoiseParams", "NOISE_MODELS", "add_noise", "OPERATORS",
           "OperatorSpec", "make_operator", "register_operator"]
