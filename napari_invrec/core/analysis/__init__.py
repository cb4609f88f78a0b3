"""Metrics, running posterior statistics and hallucination maps."""

from .hallucination import (
                            error_map,
                            measurement_space_map,
                            null_space_difference,
                            null_space_map,
                            null_space_spread,
)
from .metrics import compute_metrics, nrmse, phase_aligned_error, psnr, residual, ssim
from .stats import Welford

__all__ = ["Welford", "compute_metrics", "error_map", "measurement_space_map", "nrmse",
           "null_space_difference", "null_space_map", "null_space_spread", "phase_aligned_error",
           "psnr", "residual", "ssim"]
