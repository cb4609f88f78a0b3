"""Reconstruction methods, one module per family, collected in :data:`METHODS`."""

# registration: importing a module adds its families to the registry
from . import (  # noqa: F401
    blind,
    classical,
    ddnm,
    deconv,
    deep_decoder,
    diffusion,
    dip,
    dirac,
    end_to_end,
    generative,
    interpolation,
    mri,
    pdhg,
    phase,
    pnp,
    self_supervised,
    sparsity,
    tomography,
    tv,
    unrolled,
)
from .registry import METHODS, MethodSpec, get_method, register_method

__all__ = ["METHODS", "MethodSpec", "get_method", "register_method"]
