"""``norm=evonorm``: EvoNorm-S0 and EvoNorm-B0 (Liu, Brock, Simonyan & Le, NeurIPS 2020, Table 1).

Normalization-activation layers found by search; each replaces BN + ReLU. With v₁, γ, β
learned per channel (v₁ = γ = 1, β = 0 at init)::

    S0:  y = x · σ(v₁ x) / sqrt(s²_{w,h,c/g}(x) + ε) · γ + β
    B0:  y = x / max(sqrt(s²_{b,w,h}(x) + ε), v₁ x + sqrt(s²_{w,h}(x) + ε)) · γ + β

s²_{w,h,c/g} is the (biased) variance of each sample over the H·W values of its group of C/g
channels (batch-independent, like GN); s²_{b,w,h} is the batch variance of each channel (over
N·H·W values, replaced by a running estimate in eval mode, unbiased as in BN); s²_{w,h} is the
variance of each sample's channel over H·W (0 for (N, C) inputs). σ is the logistic sigmoid.
"""

from __future__ import annotations

import torch
from torch import nn

from normbench.errors import ConfigError
from normbench.norms.batch import BatchNormBase, channel_view
from normbench.norms.checks import check_groups, reduce_dims, values_per_channel
from normbench.norms.spec import NormSpec, check_dims

VERSIONS = ("S0", "B0")


class EvoNormS0(nn.Module):
    """EvoNorm-S0: x·σ(v₁x) over the group standard deviation (batch-independent)."""

    def __init__(self, num_channels: int, groups: int = 32, eps: float = 1e-5, affine: bool = True):
        super().__init__()
        self.num_channels, self.groups, self.eps, self.affine = num_channels, groups, eps, affine
        self.v = nn.Parameter(torch.ones(num_channels))
        self.weight = nn.Parameter(torch.ones(num_channels)) if affine else None
        self.bias = nn.Parameter(torch.zeros(num_channels)) if affine else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        grouped = x.reshape(x.shape[0], self.groups, -1)
        var = grouped.var(dim=2, correction=0, keepdim=True)
        num = x * torch.sigmoid(x * channel_view(self.v, x))
        y = (num.reshape(grouped.shape) * torch.rsqrt(var + self.eps)).view(x.shape)
        if self.weight is None:
            return y
        return torch.addcmul(channel_view(self.bias, x), y, channel_view(self.weight, x))

    def extra_repr(self) -> str:
        return f"{self.num_channels}, groups={self.groups}, eps={self.eps}, affine={self.affine}"


class EvoNormB0(BatchNormBase):
    """EvoNorm-B0: x over max(batch std, v₁x + instance std); running batch variance at eval."""

    variant = "evonorm"

    def __init__(
        self,
        num_channels: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
    ):
        super().__init__(num_channels, eps=eps, momentum=momentum, affine=affine)
        self.v = nn.Parameter(torch.ones(num_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        if self.uses_batch_stats():
            factor = self.running_factor()
            var_b, mean_b = torch.var_mean(x, dim=reduce_dims(x), correction=0)
            if factor is not None:
                self.update_running(mean_b.detach(), var_b.detach(), values_per_channel(x), factor)
            batch_std = channel_view(torch.sqrt(var_b + self.eps), x)
        else:
            batch_std = channel_view(torch.sqrt(self.running_var + self.eps), x)
        if x.dim() > 2:
            var_i = x.var(dim=tuple(range(2, x.dim())), correction=0, keepdim=True)
            inst = torch.addcmul(torch.sqrt(var_i + self.eps), x, channel_view(self.v, x))
        else:
            inst = torch.add(x * channel_view(self.v, x), self.eps**0.5)
        y = x / torch.maximum(batch_std, inst)
        if self.weight is None:
            return y
        return torch.addcmul(channel_view(self.bias, x), y, channel_view(self.weight, x))


class EvoNormSpec(NormSpec):
    """EvoNorm in the norm slot (it replaces the activation: ``includes_activation``).

    Args:
        version: ``S0`` (batch-independent, grouped) or ``B0`` (batch-dependent).
        groups: channel groups of S0's variance; must divide the channel count.
        eps: ε added to every variance.
        momentum: B0's running-variance update weight; ``None`` for the cumulative average.
        affine: learn γ and β (v₁ is always learned: it is part of the activation).
    """

    name = "evonorm"
    includes_activation = True

    def __init__(
        self,
        version: str = "S0",
        groups: int = 32,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
    ):
        if version not in VERSIONS:
            raise ConfigError(
                f"norm=evonorm: version={version!r} is not one of {', '.join(VERSIONS)}."
            )
        self.version, self.groups, self.eps, self.momentum, self.affine = (
            version,
            groups,
            eps,
            momentum,
            affine,
        )

    def layer(self, num_channels: int, dims: int) -> nn.Module:
        check_dims(dims)
        if self.version == "B0":
            return EvoNormB0(num_channels, self.eps, self.momentum, self.affine)
        check_groups(self.groups, num_channels, self.name, key="groups")
        return EvoNormS0(num_channels, self.groups, self.eps, self.affine)

    @property
    def has_shift(self) -> bool:
        return self.affine
