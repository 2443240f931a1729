"""``norm=batch``: Batch Normalization (Ioffe & Szegedy, ICML 2015, Algorithm 1).

Training: y = γ · (x − μ_B) / sqrt(σ²_B + ε) + β, with μ_B and σ²_B (biased) the mean and
variance over the batch (and the spatial positions for ``dims=2``) of each channel.
Inference: μ_B and σ²_B are replaced by running estimates; the running variance uses the
unbiased batch variance m/(m−1)·σ²_B, as in the paper. ``momentum=None`` makes the running
estimates a cumulative average instead of an exponential one.
"""

from __future__ import annotations

from torch import nn

from normbench.norms.spec import NormSpec, check_dims


class BatchNormSpec(NormSpec):
    """Batch Normalization in the norm slot, built on torch's native kernel."""

    name = "batch"

    def __init__(self, momentum: float | None = 0.1, eps: float = 1e-5, affine: bool = True):
        self.momentum = momentum
        self.eps = eps
        self.affine = affine

    def layer(self, num_channels: int, dims: int) -> nn.Module:
        check_dims(dims)
        cls = nn.BatchNorm1d if dims == 1 else nn.BatchNorm2d
        return cls(num_channels, eps=self.eps, momentum=self.momentum, affine=self.affine)

    @property
    def has_shift(self) -> bool:
        return self.affine
