r"""Measurement splitting: the error where a run saw no data, from held-out samples.

For operators that measure a 0/1 mask of samples (:data:`SPLITTABLE`: inpainting pixels,
k-space columns outside the fully sampled centre, compressed-sensing rows), ``folds`` disjoint
random subsets of the measured samples are held out in turn, the method re-runs on the rest
and its result predicts the held-out samples (:func:`split_estimate`).

* Pixels, k-space columns, rows of the structured (subsampled orthonormal) CS ensemble: unseen
  samples are exchangeable with the never-measured ones, so this estimates the error inside
  the full operator's null space, which no residual shows; GSURE on the measured samples
  completes it to an image-domain MSE.
* K-space columns: a never-measured column gets its own energy (interpolated between the
  measured columns) times the held-out columns' relative error
  (:func:`_unmeasured_column_errors`). Where the data are Hermitian (a real image,
  :func:`hermitian_data`) a column and its mirror carry the same information: they are held
  out together, and a never-measured column whose mirror is measured is scored against the
  conjugate mirror (:func:`_mirror_column_error`).
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

__all__ = ["SPLITTABLE", "split_estimate", "stacked_map"]

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


def mirror_index(n: int) -> np.ndarray:
    r"""Index ``(n,)`` of each centred k-space row or column's mirror,
    :math:`2\lfloor n/2\rfloor - c` (mod :math:`n`), with DC at :math:`\lfloor n/2\rfloor`."""
    c = np.arange(n)
    return (2 * (n // 2) - c) % n


def hermitian_data(y_t: torch.Tensor, mask: torch.Tensor, sigma: float) -> bool:
    r"""Whether single-channel k-space ``y_t`` is Hermitian, :math:`y(-k) = \overline{y(k)}`
    (the image is real), to the noise: on the samples measured together with their mirror
    (the fully sampled centre at least), :math:`\overline{|y(k) - \overline{y(-k)}|^2}` is
    at most :math:`3\sigma^2` (the noise alone gives :math:`2\sigma^2`) plus 1 % of the
    signal energy. Measured phase (real acquisitions), coil images and complex objects are not
    Hermitian."""
    if y_t.shape[1] != 1 or not y_t.is_complex():
        return False
    rows, cols = (torch.as_tensor(mirror_index(n), device=y_t.device) for n in mask.shape)
    both = mask & mask[rows][:, cols]
    if not bool(both.any()):
        return False
    y = y_t[0, 0]
    twin = y[rows][:, cols].conj()
    asym = float((y - twin)[both].abs().square().mean())
    energy = float(y[both].abs().square().mean())
    return asym <= 3 * sigma * sigma + 0.01 * energy


def _split_plan(op: Any, pairs: bool = False
                ) -> tuple[torch.Tensor, torch.Tensor | None, Callable]:
    """``(valid, groups, reduced)`` for a splittable operator: measured samples that may be
    held out (``(H, W)`` bool on the op's device), their group labels (k-space columns, or
    with ``pairs`` a column and its mirror together) and ``reduced(held) -> operator``
    measuring everything but ``held``."""
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
    label = np.arange(op.shape[1])
    if pairs:
        label = np.minimum(label, mirror_index(op.shape[1]))
    groups = torch.as_tensor(label, device=op.device)[None, :].expand(op.shape)

    def reduced(held: torch.Tensor) -> Any:
        keep_cols = (torch.as_tensor(cols, device=op.device) & ~held.any(0)).float()
        p = dataclasses.replace(op.params, mask_array=keep_cols.cpu().numpy())
        return type(op)(op.shape, p, device=op.device)
    return valid, groups, reduced


def _column_means(v: torch.Tensor) -> np.ndarray:
    """Mean of ``|v|^2`` per k-space column (over rows and coils): ``(W,)``."""
    d = v.abs().square()
    return d.mean(dim=tuple(range(d.dim() - 1))).cpu().numpy()


def _unmeasured_energy(energy: np.ndarray, cols: np.ndarray, dst: np.ndarray,
                       freq: np.ndarray) -> float:
    r"""Summed energy :math:`\sum_{c \in dst} \hat E(|k_c|)` of the never-measured columns
    ``dst``, each interpolated in :math:`\log E` over :math:`\log(1 + |k|)` between the
    measured columns ``cols`` (``energy``: mean :math:`|y|^2` per column; the fully sampled
    centre gives the low frequencies)."""
    fm = freq[cols]
    um = np.unique(fm)
    log_e = np.array([np.log(energy[cols][fm == u]).mean() for u in um])
    return float(np.exp(np.interp(np.log1p(freq[dst]), np.log1p(um), log_e)).sum())


def _unmeasured_column_errors(errs: list[np.ndarray], helds: list[np.ndarray],
                              energy: np.ndarray, unmeasured_energy: float,
                              sigma: float) -> list[float]:
    r"""Summed per-sample error over the never-measured k-space columns, per fold (jackknife
    pseudo-values): their energy (:func:`_unmeasured_energy`) times the mean relative error of
    the held-out columns.

    With :math:`e_c` (``errs[k]``, fold :math:`k`'s per-column mean squared prediction error at
    its held-out columns ``helds[k]``) and :math:`E_c` (``energy``) the column's measured
    energy (noise included), the relative error is
    :math:`\bar\rho = \mathrm{mean}_c\,(e_c - \sigma^2)/E_c` (the target's noise taken out of
    the error, not of the energy: a column at the noise level then adds about 0 for a method
    that predicts it well, where :math:`e_c/E_c` would add about 1), and

    .. math::

        \hat e = \bar\rho \sum_{c\ \rm never\ measured} \hat E(|k_c|) .

    Spectra fall by orders of magnitude across :math:`|k|`, and variable-density patterns
    hold out mostly low frequencies: a held-out error carried to other frequencies as it is
    stands for the high frequencies at the level of the low ones, and the never-measured
    columns next to the centre at the level of the nearest held-out one (on a cell image at
    64 px, a ninth of the zero-filled image's true error). A relative error moves between
    frequencies far less (it is 1 for zero-filling at every frequency), so it is what is
    carried, and the energy it scales is the measurement's own. One mean rather than a curve
    over :math:`|k|`: with ten or so held-out columns a curve follows their noise (Spearman
    on a 64 px brick texture at 4x: 0.79 per-fold curves, 0.46 one pooled curve, 0.88 the
    mean).

    Every held-out column (each predicted by its own fold) goes into the one mean: a fold
    holds out one or two columns, too few to stand for the never-measured ones alone. With
    :math:`\theta` the estimate from all :math:`K` folds and :math:`\theta_{-k}` without fold
    :math:`k`, the pseudo-values :math:`K\theta - (K-1)\theta_{-k}` have mean
    :math:`\approx\theta` and give its standard error as independent per-fold values would;
    the same folds for every run of one measurement keep them paired."""
    rel = [(e[h] - sigma * sigma) / energy[h] for e, h in zip(errs, helds)]

    def pooled(ks: list[int]) -> float:
        return float(np.concatenate([rel[k] for k in ks]).mean()) * unmeasured_energy

    kk = len(rel)
    theta = pooled(list(range(kk)))
    if kk < 2:
        return [theta]
    return [kk * theta - (kk - 1) * pooled([j for j in range(kk) if j != k]) for k in range(kk)]


def _mirror_column_error(x_hat: torch.Tensor, y_t: torch.Tensor, op: Any, dst: np.ndarray,
                         sigma: float) -> float:
    r"""Summed per-sample error of ``x_hat`` over the never-measured columns ``dst`` whose
    mirror is measured, with Hermitian data (:func:`hermitian_data`): the conjugate mirror
    :math:`\overline{y(-k)}` is a measurement of :math:`X(k)` with the same noise, so
    :math:`|\hat X(k) - \overline{y(-k)}|^2 - \sigma^2` estimates the error there (biased low
    by a method's covariance with the mirror's noise, as a residual is)."""
    full = op.with_mask(torch.ones_like(op.mask_tensor())).A(x_hat)
    rows, cols = (torch.as_tensor(mirror_index(n), device=y_t.device) for n in op.shape)
    twin = y_t[..., rows, :][..., cols].conj()
    return float((_column_means(full - twin)[dst] - sigma * sigma).sum())


def _whole_batch(f: Callable, ys: torch.Tensor, op: Any) -> torch.Tensor | None:
    """``f`` run once on the stack ``ys`` (``None`` where the method cannot run a batch)."""
    try:
        x = f(ys, op, whole=True)
    except (RuntimeError, ValueError, TypeError, IndexError):
        return None
    return x if x.shape[0] == ys.shape[0] else None


def stacked_map(f: Callable, op: Any) -> Callable[[torch.Tensor], torch.Tensor]:
    """``f`` (a :func:`~napari_invrec.engine.quality.reconstruction_map`) on a stack of
    measurements ``(B, C, ...)`` of ``op``: one batched run where the method runs a batch,
    else one run per element."""
    def f_batch(ys: torch.Tensor) -> torch.Tensor:
        x = _whole_batch(f, ys, op)
        return x if x is not None else torch.cat([f(ys[i:i + 1], op) for i in range(len(ys))])
    return f_batch


def _batched_folds(y_t: torch.Tensor, op: Any, f: Callable, masks: list[torch.Tensor],
                   reduced: Callable) -> torch.Tensor | None:
    """Predictions ``A x_k`` of every fold from one batched run (``None`` where the operator
    cannot stack masks or the method cannot run a batch: the folds then run one by one)."""
    if not hasattr(op, "with_mask_stack"):
        return None
    stack = torch.stack([torch.as_tensor(reduced(h).mask, device=y_t.device) for h in masks])
    x = _whole_batch(f, y_t * stack[:, None], op.with_mask_stack(stack))
    return None if x is None else op.A(x)


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
    the first term is a sum over the never-measured columns, each its energy times the
    held-out relative error (:func:`_unmeasured_column_errors`, pooled over the folds with
    jackknife pseudo-values per fold), or against its conjugate mirror
    (:func:`_mirror_column_error`). Dense random CS rows need no GSURE:
    :math:`\widehat{\rm MSE} = (m/n)\,e_{\rm held}` (module docstring). Per-fold values
    pair with the same fold's GSURE probe. With ``batch`` the folds run as one batch where the
    operator stacks masks (:class:`~napari_invrec.core.operators.base.SampleMask`) and the
    method is deterministic (a stochastic method's batch holds its samples), and so do the
    GSURE probes. Yields ``(done, total)`` after the folds and after the probes."""
    measured = torch.as_tensor(op.mask, device=y_t.device) > 0
    hermitian = op.name == "mri" and hermitian_data(y_t, measured, sigma)
    valid, groups, reduced = _split_plan(op, pairs=hermitian)
    if int(valid.sum()) < 2 * folds:
        raise InputError(f"too few measured samples outside the calibration region to hold "
                         f"out {folds} folds; use estimator 'gsure'")
    masks = risk.split_folds(valid, folds, gen, groups=groups)
    dense_rows = op.name == "cs" and not op.structured
    total = len(masks) + (0 if dense_rows else max(1, probes))
    n = int(np.prod(op.shape))
    unmeasured = n - int(measured.sum())
    per_sample = y_t.numel() // measured.numel()
    held_vals, unmeasured_vals, col_errs, col_helds = [], [], [], []
    if groups is not None:  # k-space columns: errors matched by frequency (see below)
        cols = measured.reshape(-1, op.shape[1]).any(0).cpu().numpy()
        freq = np.abs(np.arange(op.shape[1]) - op.shape[1] // 2)
        rows_per_col = per_sample * op.shape[0]
        twins = ~cols & cols[mirror_index(cols.size)] if hermitian else np.zeros_like(cols)
        mirrored = rows_per_col * _mirror_column_error(x_hat, y_t, op, twins, sigma) / n \
            if twins.any() else 0.0
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
            col_errs.append(_column_means(pred - y_t))
            col_helds.append(held.any(0).cpu().numpy())
    if groups is not None:
        energy = np.maximum(_column_means(y_t), 1e-30)
        unseen = _unmeasured_energy(energy, cols, ~cols & ~twins, freq)
        unmeasured_vals = [mirrored + rows_per_col * v / n for v in _unmeasured_column_errors(
            col_errs, col_helds, energy, unseen, sigma)]
    if dense_rows:  # the held-out rows see the whole error (module docstring)
        vals = [e * op.m / n for e in held_vals]
        mean, se = risk.mean_se(vals)
        return risk.RiskEstimate(mean, se, "image", "splitting",
                                 {"folds": len(held_vals), "values": vals,
                                  "held_out_mse": sum(held_vals) / len(held_vals),
                                  "unmeasured_fraction": unmeasured / n})
    g = risk.gsure(y_t, op, f, sigma, n_probes=max(1, probes), generator=gen, x_hat=x_hat,
                   f_batch=stacked_map(f, op) if batch else None)
    sure_vals = [v * (1 + g.details["delta"]) for v in g.details["values"]]
    yield total, total
    sure_mean = sum(sure_vals) / len(sure_vals)
    outside = unmeasured_vals or [per_sample * e * unmeasured / n for e in held_vals]
    vals = [u + sure_vals[i % len(sure_vals)] for i, u in enumerate(outside)]
    mean, se = risk.mean_se(vals)
    return risk.RiskEstimate(mean, se, "image", "splitting",
                             {"folds": len(held_vals), "values": vals,
                              "held_out_mse": sum(held_vals) / len(held_vals),
                              "measured_mse": sure_mean * n / max(n - unmeasured, 1),
                              "unmeasured_fraction": unmeasured / n,
                              "mirror_pairs": hermitian})
