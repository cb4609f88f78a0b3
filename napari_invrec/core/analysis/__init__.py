"""Metrics, running posterior statistics, hallucination maps, calibration and hotspots."""

from .calibration import Calibration, bands, calibrate, conformal_quantile, coverage, nonconformity
from .hallucination import (
                            error_map,
                            measurement_space_map,
                            null_space_difference,
                            null_space_map,
                            null_space_spread,
)
from .hotspots import HotspotParams, Region, find_hotspots
from .metrics import compute_metrics, nrmse, phase_aligned_error, psnr, residual, ssim
from .stats import Welford

__all__ = ["Calibration", "HotspotParams", "Region", "Welford", "bands", "calibrate",
           "compute_metrics", "conformal_quantile", "coverage", "error_map", "find_hotspots",
           "measurement_space_map", "nonconformity", "nrmse", "null_space_difference",
           "null_space_map", "null_space_spread", "phase_aligned_error", "psnr", "residual",
           "ssim"]
