r"""Running posterior statistics over batches of samples.

:class:`Welford` keeps the count :math:`n`, mean :math:`\bar x` and the sum of squared
deviations :math:`M_2 = \sum_i |x_i - \bar x|^2` and merges each new batch with Chan et al.'s
pairwise rule

.. math::

    n = n_a + n_b, \quad
    \bar x = \bar x_a + \frac{n_b}{n} (\bar x_b - \bar x_a), \quad
    M_2 = M_{2,a} + M_{2,b} + |\bar x_b - \bar x_a|^2 \frac{n_a n_b}{n},

which is numerically stable (no :math:`E[x^2] - E[x]^2` cancellation). For complex samples the
variance is :math:`E|x - \bar x|^2` (real), i.e. the sum of the variances of the real and
imaginary parts.
"""

from __future__ import annotations

from typing import Any

import torch

Tensor = torch.Tensor

__all__ = ["Welford"]


class Welford:
    """Running mean and variance of samples arriving in batches.

    Parameters
    ----------
    unbiased
        ``var`` divides :math:`M_2` by :math:`n - 1` instead of :math:`n`.

    Examples
    --------
    >>> w = Welford()
    >>> w.update(torch.randn(8, 1, 1, 16, 16))   # 8 samples of a (1, 1, 16, 16) image
    >>> w.mean.shape, w.count
    (torch.Size([1, 1, 16, 16]), 8)
    """

    def __init__(self, unbiased: bool = False) -> None:
        self.unbiased = bool(unbiased)
        self.count = 0
        self._mean: Tensor | None = None
        self._m2: Tensor | None = None

    def update(self, batch: Any) -> None:
        """Add the samples ``batch[0], batch[1], ...`` (leading axis = sample index).

        Every call creates new tensors, so earlier :attr:`mean` / :attr:`var` results stay valid.
        """
        b = torch.as_tensor(batch)
        nb = int(b.shape[0])
        if nb == 0:
            return
        mean_b = b.mean(0)
        m2_b = _abs2(b - mean_b).sum(0)
        if self._mean is None:
            self.count, self._mean, self._m2 = nb, mean_b, m2_b
            return
        if mean_b.shape != self._mean.shape:
            raise ValueError(f"sample shape {tuple(mean_b.shape)} differs from the running "
                             f"shape {tuple(self._mean.shape)}")
        n = self.count + nb
        delta = mean_b - self._mean
        self._mean = self._mean + delta * (nb / n)
        self._m2 = self._m2 + m2_b + _abs2(delta) * (self.count * nb / n)
        self.count = n

    def _require(self) -> None:
        if self._mean is None:
            raise ValueError("Welford has no samples yet; call update() first")

    @property
    def mean(self) -> Tensor:
        """Running mean, the shape of one sample."""
        self._require()
        return self._mean

    @property
    def var(self) -> Tensor:
        """Running variance :math:`M_2 / n` (or :math:`M_2 / (n - 1)` if ``unbiased``), real."""
        self._require()
        denom = self.count - 1 if self.unbiased else self.count
        if denom <= 0:
            return torch.zeros_like(self._m2)
        return self._m2 / denom

    @property
    def std(self) -> Tensor:
        """Running standard deviation :math:`\\sqrt{\\mathrm{var}}`."""
        return self.var.clamp_min(0).sqrt()


def _abs2(t: Tensor) -> Tensor:
    return t.real.square() + t.imag.square() if t.is_complex() else t.square()
