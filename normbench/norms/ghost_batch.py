"""``norm=ghost_batch``: Ghost Batch Normalization (Hoffer, Hubara & Soudry, NIPS 2017).

Batch statistics over virtual groups ("ghost batches") of ``group_size`` consecutive samples
inside a larger batch: the images-per-device setting of the GroupNorm paper (Wu & He 2018, §2).
For group k holding samples S_k, per channel over the m = |S_k|·H·W values of the group::

    y_i = γ · (x_i − μ_k) / sqrt(σ²_k + ε) + β          for i ∈ S_k

Running estimates (eval mode uses them, as BN does) average the groups' statistics::

    μ ← (1 − α) μ + α · mean_k μ_k          σ² ← (1 − α) σ² + α · mean_k (m/(m − 1) σ²_k)

A trailing partial group (N not a multiple of ``group_size``) is normalized by its own
statistics and leaves the running estimates alone. With ``group_size ≥ N`` this is BN.
The groups are one reshape: (N, C, *S) → (G, C, group_size, *S) normalized per (G, C) by
torch's instance-norm kernel, with no loop over groups.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from normbench.errors import ConfigError
from normbench.norms.batch import BatchNormBase
from normbench.norms.checks import check_batch_values
from normbench.norms.spec import NormSpec, check_dims


class GhostBatchNorm(BatchNormBase):
    """BN over consecutive groups of ``group_size`` samples."""

    variant = "ghost_batch"

    def __init__(
        self,
        num_features: int,
        group_size: int = 32,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
    ):
        super().__init__(num_features, eps=eps, momentum=momentum, affine=affine)
        self.group_size = group_size

    def _grouped(self, x: torch.Tensor, groups: int, factor: float | None) -> torch.Tensor:
        n, c, *spatial = x.shape
        size = n // groups
        xg = x.view(groups, size, c, *spatial).transpose(1, 2)
        track = factor is not None
        y = F.instance_norm(
            xg,
            self.running_mean if track else None,
            self.running_var if track else None,
            self.weight,
            self.bias,
            True,
            factor if track else 0.0,
            self.eps,
        )
        return y.transpose(1, 2).reshape(x.shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(x)
        if not self.uses_batch_stats():
            return self.running_affine(x)
        n = x.shape[0]
        size = min(self.group_size, n)
        groups, rest = divmod(n, size)
        check_batch_values(x[:size], self.variant)
        factor = self.running_factor()
        track = factor is not None
        if groups == 1 and rest == 0:
            return F.batch_norm(
                x,
                self.running_mean if track else None,
                self.running_var if track else None,
                self.weight,
                self.bias,
                True,
                factor if track else 0.0,
                self.eps,
            )
        if rest == 0:
            return self._grouped(x, groups, factor)
        head, tail = x[: n - rest], x[n - rest :]
        check_batch_values(tail, self.variant)
        y_tail = F.batch_norm(tail, None, None, self.weight, self.bias, True, 0.0, self.eps)
        return torch.cat([self._grouped(head, groups, factor), y_tail])

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, group_size={self.group_size}"


class GhostBatchNormSpec(NormSpec):
    """Ghost Batch Normalization in the norm slot.

    Args:
        group_size: samples per ghost batch (images per device in the GN paper).
        momentum: running-estimate update weight; ``None`` for the cumulative average.
        eps: ε added to the variance.
        affine: learn γ and β.
    """

    name = "ghost_batch"
    batch_dependent = True

    def __init__(
        self,
        group_size: int = 32,
        momentum: float | None = 0.1,
        eps: float = 1e-5,
        affine: bool = True,
    ):
        if group_size < 1:
            raise ConfigError(f"norm=ghost_batch: group_size must be ≥ 1, got {group_size}.")
        self.group_size, self.momentum, self.eps, self.affine = group_size, momentum, eps, affine

    def layer(self, num_channels: int, dims: int) -> nn.Module:
        check_dims(dims)
        return GhostBatchNorm(num_channels, self.group_size, self.eps, self.momentum, self.affine)

    def per_device(self, images: int) -> NormSpec:
        """The same variant with ``group_size = images``."""
        return GhostBatchNormSpec(images, self.momentum, self.eps, self.affine)

    @property
    def has_shift(self) -> bool:
        return self.affine
