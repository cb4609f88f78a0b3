r"""Learned acquisition: a Cartesian MRI sampling design trained together with its
reconstruction network (LOUPE, Bahadir et al. 2020, with straight-through binarisation).

The design is a density over the absolute normalised frequency of the k-space columns,
:math:`p_j = \sigma(5 \ell_j)` (LOUPE's slope, so that Adam moves the logits at a useful
rate) for bins :math:`j = 0..W/2` (:math:`|f_j| = j / W`), mirrored to
the :math:`W` columns (a symmetric design: it does not exploit the Hermitian symmetry of real
training images, which measured complex MR images lack). The :math:`n_c` centre columns
(``center_fraction``) are sampled in every mask, as in the deterministic pattern (masks
without the k-space centre would teach the network a case it never meets); the density of the
other columns is rescaled before each step to their budget
:math:`\alpha = (n - n_c) / (W - n_c)`, :math:`n = \mathrm{round}(W / R)` columns in all,

.. math::

    \bar p = \operatorname{mean}_{c \notin C} p_c, \qquad
    p'_c = \begin{cases} \alpha\,p_c / \bar p & \bar p \ge \alpha \\
    1 - (1 - \alpha)(1 - p_c) / (1 - \bar p) & \bar p < \alpha \end{cases}

over the columns outside the centre :math:`C`, so that :math:`\mathbb E\,|M| = n` exactly,
and each training image gets its own mask
:math:`m_c = [u_c < p'_c]`, :math:`u \sim U(0, 1)` (mirrored), with the straight-through
gradient of the relaxation :math:`\sigma(s\,(p'_c - u_c))`, slope :math:`s` = ``slope``. The
loss is the reconstruction error :math:`|f_\theta(y, A_m) - x|^2`, so the gradient reaches the
design through the measurement :math:`y = m \odot (\mathcal F x + n)` and through the
network's data-consistency steps. For the last ``fix_fraction`` of the steps the design is
frozen to its deterministic pattern (:func:`~..operators.mri.ranked_columns`: the centre
columns and then the highest densities, exactly :math:`n` columns) and the network is tuned
to it; validation always uses that pattern.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import InputError
from ..operators.mri import MRI, MRIParams, centre_columns, n_columns, ranked_columns
from .checkpoint import load_checkpoint
from .datasets import PatchSource
from .loops import TrainState, _check_common, _loop, _psnr, _resolve_device
from .operator_nets import _operator_meta, simulate_pairs

__all__ = ["SamplingDesign", "train_acquisition", "budget_rescale"]

Tensor = torch.Tensor


def budget_rescale(p: Tensor, alpha: float, mean: Tensor | None = None) -> Tensor:
    r"""LOUPE's rescaling of probabilities ``p`` (any shape) whose mean over the columns is
    ``mean`` (default ``p.mean()``) to the mean ``alpha`` (see the module docstring); every
    value stays in [0, 1]."""
    mean = p.mean() if mean is None else mean
    if float(mean.detach()) >= alpha:
        return p * (alpha / mean)
    return 1.0 - (1.0 - p) * ((1.0 - alpha) / (1.0 - mean))


class SamplingDesign(nn.Module):
    """Learned symmetric column density of width ``width`` at acceleration ``acceleration``.

    Parameters
    ----------
    width
        Number of k-space columns :math:`W` of the training images.
    acceleration
        :math:`R`; the design samples :math:`n = \\mathrm{round}(W / R)` columns.
    center_fraction
        Fraction of columns always sampled at the centre in the deterministic pattern.
    slope
        Slope :math:`s` of the straight-through relaxation.
    generator
        Seeds the small random start of the logits (uniform density plus jitter).
    """

    def __init__(self, width: int, acceleration: float, center_fraction: float = 0.08,
                 slope: float = 10.0, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.width, self.acceleration = int(width), float(acceleration)
        self.center_fraction, self.slope = float(center_fraction), float(slope)
        self.n = n_columns(self.width, self.acceleration,
                           len(range(self.width)[centre_columns(self.width, center_fraction)]))
        if self.n >= self.width:
            raise InputError(f"acceleration {acceleration} samples every column of {width}; "
                             "learn a design at an acceleration > 1")
        bins = self.width // 2 + 1
        self.logits = nn.Parameter(0.1 * torch.randn(bins, generator=generator))
        c = torch.arange(self.width)
        self.register_buffer("_bin", (c - self.width // 2).abs(), persistent=False)
        keep = torch.zeros(self.width, dtype=torch.bool)
        keep[centre_columns(self.width, self.center_fraction)] = True
        self.register_buffer("_keep", keep, persistent=False)

    @property
    def alpha(self) -> float:
        """Budget of the other columns: :math:`\\alpha = (n - n_c) / (W - n_c)` with
        :math:`n_c` centre columns, always sampled."""
        n_c = int(self._keep.sum())
        return max(self.n - n_c, 0) / (self.width - n_c)

    def frequencies(self) -> np.ndarray:
        """The bins' absolute normalised frequencies :math:`j / W`."""
        return np.arange(self.width // 2 + 1) / self.width

    def probabilities(self) -> Tensor:
        """Per-column sampling probability :math:`p'_c` ``(W,)``: 1 on the centre columns,
        the budget-rescaled density elsewhere (the mean over those columns sets the
        rescaling); its sum is :math:`n`."""
        p = torch.sigmoid(5.0 * self.logits)[self._bin]
        rest = budget_rescale(p, self.alpha, p[~self._keep].mean())
        return torch.where(self._keep, torch.ones_like(rest), rest)

    def density(self) -> np.ndarray:
        """Per-bin density :math:`p'_j` (what a design file stores): that of column
        :math:`W/2 + j` (column 0 for the last bin of an even width)."""
        p = self.probabilities().detach().cpu().numpy().astype(np.float64)
        j = np.arange(self.width // 2 + 1)
        return p[(self.width // 2 + j) % self.width]

    def sample(self, batch: int, generator: torch.Generator) -> Tensor:
        """``(batch, W)`` masks, binary in the forward pass, straight-through gradient."""
        p = self.probabilities()
        u_bins = torch.rand(batch, self.width // 2 + 1, generator=generator).to(p.device)
        # (centre columns: p = 1 > u, sampled in every mask)
        u = u_bins[:, self._bin]
        hard = (u < p).to(p.dtype)
        soft = torch.sigmoid(self.slope * (p - u))
        return hard + (soft - soft.detach())  # exactly binary forward

    def pattern(self) -> np.ndarray:
        """The deterministic boolean ``(W,)`` pattern: the centre columns, then the highest
        densities, exactly :math:`n` in all (:func:`~..operators.mri.ranked_columns`)."""
        keep = np.zeros(self.width, dtype=bool)
        keep[centre_columns(self.width, self.center_fraction)] = True
        p = self.probabilities().detach().cpu().numpy()
        return ranked_columns(p, max(self.n, int(keep.sum())), keep)

    #: the key of :meth:`record` in a training sidecar
    record_key = "sampling_design"

    def operator_params(self, sidecar: str) -> dict:
        """Operator parameters of the pattern the network was tuned to (its columns at the
        training width; ``sidecar`` unused: the pattern is inline)."""
        return {"mask_array": self.pattern().tolist()}

    def record(self) -> dict:
        """The design as saved: frequencies, density, pattern, acceleration."""
        return {"frequencies": self.frequencies().tolist(), "density": self.density().tolist(),
                "pattern": self.pattern().astype(int).tolist(), "width": self.width,
                "acceleration": self.acceleration, "center_fraction": self.center_fraction,
                "columns": int(self.pattern().sum())}


class _Joint(nn.Module):
    """The network and its design, trained and checkpointed together."""

    def __init__(self, net: nn.Module, design: SamplingDesign) -> None:
        super().__init__()
        self.net, self.design = net, design


def _pattern_operator(design: SamplingDesign, shape: tuple[int, int], dev: Any) -> MRI:
    return MRI(shape, MRIParams(mask_array=design.pattern().astype(np.float32)), device=dev)


def train_acquisition(model: nn.Module, source: PatchSource,
                      operator_factory: Callable[[tuple[int, int], torch.device], Any], *,
                      noise_sigma: float = 0.01, steps: int = 1000, batch: int = 8,
                      patch: int = 48, lr: float = 1e-3, seed: int = 0, device: Any = None,
                      val_every: int = 50, val_size: int = 8, fix_fraction: float = 0.2,
                      resume: str | Path | None = None, checkpoint: str | Path | None = None,
                      checkpoint_every: int = 100
                      ) -> tuple[Iterator[TrainState], SamplingDesign]:
    """Train an unrolled network and a column sampling design together (module docstring).

    ``operator_factory`` must build single-coil ``mri`` operators; their ``acceleration`` and
    ``center_fraction`` set the budget and the always-sampled centre. Validation: PSNR of
    the magnitude on ``val_size`` fixed held-out images measured through the current
    deterministic pattern (``extras["adjoint_psnr"]``: that of :math:`A^H y`).

    Returns
    -------
    (Iterator[TrainState], SamplingDesign)
        The loop generator (as :func:`.operator_nets.train_unrolled`) and the design it trains.
    """
    _check_common(steps, batch, patch, lr)
    if not noise_sigma >= 0:
        raise InputError(f"noise_sigma must be >= 0, got {noise_sigma}")
    if not 0 <= fix_fraction < 1:
        raise InputError(f"fix_fraction must be in [0, 1), got {fix_fraction}")
    if getattr(model, "kind", None) != "unrolled" or not getattr(model, "complex_images", False):
        raise InputError("learned acquisition trains an unrolled network for complex MRI "
                         "images (e.g. varnet)")
    dev = _resolve_device(model, device)
    op = operator_factory((patch, patch), dev)
    if not isinstance(op, MRI):
        raise InputError(f"a sampling design is learned for the single-coil 'mri' operator, "
                         f"not {getattr(op, 'name', op)!r}")
    design = SamplingDesign(patch, op.params.acceleration, op.params.center_fraction,
                            generator=torch.Generator().manual_seed(int(seed)))
    joint = _Joint(model, design).to(dev)
    full = MRI((patch, patch), MRIParams(acceleration=1.0), device=dev)
    fixed_from = int(round(steps * (1.0 - fix_fraction)))
    xv = source.sample(val_size, patch, np.random.default_rng([int(seed), 1]), dev)
    gv = torch.Generator(device=dev)
    # steps done so far (step_loss runs once per step; a resumed run starts at its checkpoint)
    done = {"steps": int(load_checkpoint(resume)["step"]) if resume is not None else 0}

    def step_loss(rng: np.random.Generator) -> Tensor:
        done["steps"] += 1
        y_full, x = simulate_pairs(source, batch, patch, rng, full, noise_sigma, dev)
        if done["steps"] > fixed_from:  # the frozen design: its deterministic pattern
            op_k = _pattern_operator(design, (patch, patch), dev)
        else:
            gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
            masks = design.sample(batch, gen)[:, None, :].expand(batch, patch, patch)
            op_k = full.with_mask_stack(masks)
        y = op_k.mask_tensor() * y_full  # differentiable in the design's masks
        d = model(y, op_k) - x
        return d.abs().square().mean()

    def validate() -> dict:
        opv = _pattern_operator(design, (patch, patch), dev)
        yv = opv.measure(opv.as_image(xv), _noise(noise_sigma), gv.manual_seed(int(seed)))
        return {"val_psnr": _psnr(model(yv, opv).abs(), xv),
                "adjoint_psnr": _psnr(opv.A_adjoint(yv).abs(), xv),
                "columns": int(design.pattern().sum())}

    meta = {"batch": batch, "patch": patch, "noise_sigma": noise_sigma,
            "data": getattr(source, "spec", "?"), "operator": _operator_meta(op),
            "fix_fraction": fix_fraction}
    loop = _loop(joint, step_loss, validate, task="acquisition", steps=steps, lr=lr, seed=seed,
                 val_every=val_every, resume=resume, checkpoint=checkpoint,
                 checkpoint_every=checkpoint_every, meta=meta, device=dev)
    return loop, design


def _noise(sigma: float) -> Any:
    from ..operators.noise import NoiseParams

    return NoiseParams(model="gaussian", sigma=float(sigma))
