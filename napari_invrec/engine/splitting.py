r"""Measurement splitting: the error where a run saw no data, from held-out samples.

For operators that measure a 0/1 mask of samples (:data:`SPLITTABLE`: inpainting pixels,
k-space columns outside the fully sampled centre, compressed-sensing rows), ``folds`` disjoint
random subsets of the measured samples are held out in turn, the method re-runs on the rest
and its result predicts the held-out samples (:func:`split_estimate`).

* Pixels, k-space columns, rows of the structured (subsampled orthonormal) CS ensemble: unseen
  samples are exchangeable with the never-measured ones, so this estimates the error inside
  the full operator's null space, which no residual shows; GSURE on the measured samples
  completes it to an image-domain MSE.
* Dense random CS rows (Gaussian / Bernoulli, entries of variance :math:`1/m`): a held-out
  row :math:`a` is independent of the fold's reconstruction :math:`\hat x_k`, so
  :math:`E[(a^T\hat x_k - y_a)^2] = \|\hat x_k - x\|^2/m + \sigma^2`: the held-out error
  times :math:`m/n` is the fold reconstruction's whole image-domain MSE, null space included.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Generator
from typing import Any

import numpy as np
import torch

from ..core.analysis import risk
from ..core.errors import InputError

__all__ = ["SPLITTABLE", "split_estimate"]

#: operator families whose measurement is a set of samples that can be held out
SPLITTABLE = ("inpaint", "mri", "mri-multicoil", "cs")


def _centre_band(mask_cols: np.ndarray) -> np.ndarray:
    """Bool ``(W,)``: the contiguous run of sampled columns around the k-space centre (the
    calibration region, never held out)."""
    w = mask_cols.size
    band = np.zeros(w, bool)
    c = w // 2
    if not mask_cols[c]:
        return band
    lo, hi = c, c
    while lo > 0 and mask_cols[lo - 1]:
        lo -= 1
    while hi < w - 1 and mask_cols[hi + 1]:
        hi += 1
    band[lo:hi + 1] = True
    return band


def _split_plan(op: Any) -> tuple[torch.Tensor, torch.Tensor | None, Callable]:
    """``(valid, groups, reduced)`` for a splittable operator: measured samples that may be
    held out (``(H, W)`` bool on the op's device), their group labels (k-space columns) and
    ``reduced(held) -> operator`` measuring everything but ``held``."""
    mask = torch.as_tensor(op.mask, device=op.device) > 0
    if op.name == "cs":
        def reduced(held: torch.Tensor) -> Any:
            return op.with_mask((mask & ~held).float())
        return mask, None, reduced
    if op.name == "inpaint":
        def reduced(held: torch.Tensor) -> Any:
            keep = (mask & ~held).float().cpu().numpy()
            p = dataclasses.replace(op.params, mask="custom", mask_array=keep)
            return type(op)(op.shape, p, device=op.device)
        return mask, None, reduced
    cols = mask.any(0).cpu().numpy()
    if not np.array_equal(mask.cpu().numpy(), np.broadcast_to(cols, mask.shape)):
        raise InputError(f"splitting needs a column (phase-encode) mask; this {op.name} mask "
                         "varies along H: use estimator 'gsure'")
    band = torch.as_tensor(_centre_band(cols), device=op.device)
    valid = mask & ~band[None, :]
    groups = torch.arange(op.shape[1], device=op.device)[None, :].expand(op.shape)

    def reduced(held: torch.Tensor) -> Any:
        keep_cols = (torch.as_tensor(cols, device=op.device) & ~held.any(0)).float()
        p = dataclasses.replace(op.params, mask_array=keep_cols.cpu().numpy())
        return type(op)(op.shape, p, device=op.device)
    return valid, groups, reduced


def _unmeasured_column_error(pred: torch.Tensor, y_t: torch.Tensor, held: torch.Tensor,
                             cols: np.ndarray, freq: np.ndarray, sigma: float) -> float:
    r"""Summed per-sample error over the never-measured k-space columns, each given the
    held-out error at its own frequency :math:`|k|` (linear interpolation between the
    held-out columns' frequencies, constant beyond them).

    Variable-density patterns measure low frequencies more often, so the held-out columns
    are mostly lower in frequency than the never-measured ones: their mean error would stand
    for the high frequencies at the error level of the low ones (a prior that fills mid
    frequencies well and invents the high ones wrongly would look best). Matched by
    frequency, held-out and never-measured columns are exchangeable again.
    """
    hcols = held.any(0).cpu().numpy()
    d = (pred - y_t).abs().square()
    per_col = d.mean(dim=tuple(i for i in range(d.dim()) if i != d.dim() - 1)).cpu().numpy()
    e = per_col[hcols] - sigma * sigma
    fk = freq[hcols]
    uniq = np.unique(fk)
    curve = np.array([e[fk == u].mean() for u in uniq])
    est = np.interp(freq[~cols], uniq, curve)
    return float(est.sum())


def _batched_folds(y_t: torch.Tensor, op: Any, f: Callable, masks: list[torch.Tensor],
                   reduced: Callable) -> torch.Tensor | None:
    """Predictions ``A x_k`` of every fold from one batched run (``None`` where the operator
    cannot stack masks or the method cannot run a batch: the folds then run one by one)."""
    if not hasattr(op, "with_mask_stack"):
        return None
    stack = torch.stack([torch.as_tensor(reduced(h).mask, device=y_t.device) for h in masks])
    op_b = op.with_mask_stack(stack)
    try:
        x = f(y_t * stack[:, None], op_b, whole=True)
    except (RuntimeError, ValueError, TypeError, IndexError):
        return None
    if x.shape[0] != len(masks):
        return None
    return op.A(x)


def split_estimate(y_t: torch.Tensor, op: Any, f: Callable, sigma: float, folds: int,
                   gen: torch.Generator, x_hat: torch.Tensor, probes: int, batch: bool = True
                   ) -> Generator[tuple[int, int], None, risk.RiskEstimate]:
    r"""Image-domain MSE of a masked operator: the held-out error per sample stands for every
    sample the operator never measures, GSURE (:func:`~napari_invrec.core.analysis.risk.gsure`,
    whose weight is the measured set's projection :math:`P/(1+\delta)` here) gives the error on
    the measured ones:

    .. math::

        \widehat{\rm MSE} = \big(c\,e_{\rm held}\,n_{\rm unmeasured}
        + (1+\delta)\,n\,\widehat{\rm MSE}_W\big)/n,

    with :math:`c` the measurement entries per image sample (coils). For k-space columns
    the first term is a sum over the never-measured columns, each at the held-out error of
    its own frequency (:func:`_unmeasured_column_error`). Dense random CS rows need no GSURE:
    :math:`\widehat{\rm MSE} = (m/n)\,e_{\rm held}` (module docstring). Per-fold values pair
    with the same fold's GSURE probe. With ``batch`` the folds run as one batch where the
    operator stacks masks (:class:`~napari_invrec.core.operators.base.SampleMask`) and the
    method is deterministic (a stochastic method's batch holds its samples). Yields
    ``(done, total)`` after every re-run."""
    valid, groups, reduced = _split_plan(op)
    if int(valid.sum()) < 2 * folds:
        raise InputError(f"too few measured samples outside the calibration region to hold "
                         f"out {folds} folds; use estimator 'gsure'")
    masks = risk.split_folds(valid, folds, gen, groups=groups)
    dense_rows = op.name == "cs" and not op.structured
    total = len(masks) + (0 if dense_rows else max(1, probes))
    n = int(np.prod(op.shape))
    measured = torch.as_tensor(op.mask, device=y_t.device) > 0
    unmeasured = n - int(measured.sum())
    per_sample = y_t.numel() // measured.numel()
    held_vals, unmeasured_vals = [], []
    if groups is not None:  # k-space columns: errors matched by frequency (see below)
        cols = measured.reshape(-1, op.shape[1]).any(0).cpu().numpy()
        freq = np.abs(np.arange(op.shape[1]) - op.shape[1] // 2)
        rows_per_col = per_sample * op.shape[0]
    preds = _batched_folds(y_t, op, f, masks, reduced) if batch else None
    if preds is not None:
        yield len(masks), total
    for i, held in enumerate(masks):
        if preds is None:
            op_k = reduced(held)
            y_k = y_t * torch.as_tensor(op_k.mask, device=y_t.device)
            pred = op.A(f(y_k, op_k))
            yield i + 1, total
        else:
            pred = preds[i:i + 1]
        h = held.expand(y_t.shape[2:])[None, None].expand_as(y_t)
        held_vals.append(risk.held_out_error(pred, y_t, h, sigma))
        if groups is not None:
            unmeasured_vals.append(rows_per_col * _unmeasured_column_error(
                pred, y_t, held, cols, freq, sigma) / n)
    if dense_rows:  # the held-out rows see the whole error (module docstring)
        vals = [e * op.m / n for e in held_vals]
        mean, se = risk.mean_se(vals)
        return risk.RiskEstimate(mean, se, "image", "splitting",
                                 {"folds": len(held_vals), "values": vals,
                                  "held_out_mse": sum(held_vals) / len(held_vals),
                                  "unmeasured_fraction": unmeasured / n})
    sure_vals = []
    for j in range(max(1, probes)):
        g = risk.gsure(y_t, op, f, sigma, n_probes=1, generator=gen, x_hat=x_hat)
        sure_vals.append(g.mse * (1 + g.details["delta"]))
        yield len(masks) + j + 1, total
    sure_mean = sum(sure_vals) / len(sure_vals)
    outside = unmeasured_vals or [per_sample * e * unmeasured / n for e in held_vals]
    vals = [u + sure_vals[i % len(sure_vals)] for i, u in enumerate(outside)]
    mean, se = risk.mean_se(vals)
    return risk.RiskEstimate(mean, se, "image", "splitting",
                             {"folds": len(held_vals), "values": vals,
                              "held_out_mse": sum(held_vals) / len(held_vals),
                              "measured_mse": sure_mean * n / max(n - unmeasured, 1),
                              "unmeasured_fraction": unmeasured / n})
