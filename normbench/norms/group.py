"""``norm=group|layer|instance``: the per-sample, channels-first family of Wu & He (ECCV 2018).

Group Normalization (Wu & He 2018, arXiv 1803.08494, Eq. 1-3 and §3.1): the C channels of
each sample are split into G groups of C/G channels; per sample n and group g, over the
m = (C/G)·H·W values of that group::

    μ_ng = (1/m) Σ x          σ²_ng = (1/m) Σ (x − μ_ng)²
    y = γ_c · (x − μ_ng) / sqrt(σ²_ng + ε) + β_c          (γ, β per channel)

Layer Normalization (Ba, Kiros & Hinton 2016) in the channels-first form of the GN paper is
G = 1 (statistics over all of C, H, W of a sample); Instance Normalization (Ulyanov, Vedaldi &
Lempitsky 2016) is G = C (statistics over H, W of each channel of a sample). All three use
torch's native group-norm kernel, behave identically in training and eval, and never look at
other samples of the batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from normbench.errors import ConfigError
from normbench.norms.checks import check_groups, check_slot_input
from normbench.norms.spec import NormSpec, check_dims


class GroupNorm(nn.GroupNorm):
    """torch's group norm (its native kernel) as a norm slot of (N, C) or (N, C, H, W) inputs."""

    def __init__(
        self, num_groups: int, num_channels: int, *, dims: int, eps: float, affine: bool
    ) -> None:
        super().__init__(num_groups, num_channels, eps=eps, affine=affine)
        self.dims = dims

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_slot_input(x, self.dims, self.num_channels, type(self).__name__)
        return super().forward(x)


def group_norm(
    variant: str, groups: int, num_channels: int, dims: int, eps: float, affine: bool
) -> GroupNorm:
    """The GN slot of ``variant`` with ``groups`` groups (checked to divide ``num_channels``)."""
    check_dims(dims)
    check_groups(groups, num_channels, variant)
    return GroupNorm(groups, num_channels, dims=dims, eps=eps, affine=affine)


@dataclass(frozen=True, kw_only=True)
class GroupNormSpec(NormSpec):
    """Group Normalization in the norm slot.

    Attributes:
        num_groups: G; must divide the channel count of every normalized layer.
        eps: ε added to the variance.
        affine: learn per-channel γ and β.
    """

    num_groups: int = 32
    eps: float = 1e-5
    affine: bool = True

    name = "group"

    def layer(self, num_channels: int, dims: int) -> nn.Module:
        return group_norm(self.name, self.num_groups, num_channels, dims, self.eps, self.affine)

    @property
    def has_shift(self) -> bool:
        return self.affine


@dataclass(frozen=True, kw_only=True)
class LayerNormSpec(NormSpec):
    """Layer Normalization (channels-first: one group, per-channel γ and β).

    Attributes:
        eps: ε added to the variance.
        affine: learn per-channel γ and β.
    """

    eps: float = 1e-5
    affine: bool = True

    name = "layer"

    def layer(self, num_channels: int, dims: int) -> nn.Module:
        return group_norm(self.name, 1, num_channels, dims, self.eps, self.affine)

    @property
    def has_shift(self) -> bool:
        return self.affine


@dataclass(frozen=True, kw_only=True)
class InstanceNormSpec(NormSpec):
    """Instance Normalization (one group per channel, per-channel γ and β).

    Attributes:
        eps: ε added to the variance.
        affine: learn per-channel γ and β.
    """

    eps: float = 1e-5
    affine: bool = True

    name = "instance"

    def layer(self, num_channels: int, dims: int) -> nn.Module:
        if dims == 1:
            raise ConfigError(
                "norm=instance on (N, C) features normalizes every value by itself (the output is "
                "β whatever the input, and no gradient reaches earlier layers). Instance statistics "
                "need spatial positions: use norm=instance with a CNN, or norm=layer / norm=group "
                "for an MLP."
            )
        return group_norm(self.name, num_channels, num_channels, dims, self.eps, self.affine)

    @property
    def has_shift(self) -> bool:
        return self.affine
