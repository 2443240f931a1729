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

from torch import nn

from normbench.errors import ConfigError
from normbench.norms.checks import check_groups
from normbench.norms.spec import NormSpec, check_dims


class GroupNormSpec(NormSpec):
    """Group Normalization in the norm slot.

    Args:
        num_groups: G; must divide the channel count of every normalized layer.
        eps: ε added to the variance.
        affine: learn per-channel γ and β.
    """

    name = "group"

    def __init__(self, num_groups: int = 32, eps: float = 1e-5, affine: bool = True):
        self.num_groups, self.eps, self.affine = num_groups, eps, affine

    def groups_for(self, num_channels: int) -> int:
        """The group count for a layer of ``num_channels`` channels (checked to divide it)."""
        check_groups(self.num_groups, num_channels, self.name)
        return self.num_groups

    def layer(self, num_channels: int, dims: int) -> nn.Module:
        check_dims(dims)
        groups = self.groups_for(num_channels)
        return nn.GroupNorm(groups, num_channels, eps=self.eps, affine=self.affine)

    @property
    def has_shift(self) -> bool:
        return self.affine


class LayerNormSpec(GroupNormSpec):
    """Layer Normalization (channels-first: one group, per-channel γ and β).

    Args:
        eps: ε added to the variance.
        affine: learn per-channel γ and β.
    """

    name = "layer"

    def __init__(self, eps: float = 1e-5, affine: bool = True):
        self.eps, self.affine = eps, affine

    def groups_for(self, num_channels: int) -> int:
        return 1


class InstanceNormSpec(GroupNormSpec):
    """Instance Normalization (one group per channel, per-channel γ and β).

    Args:
        eps: ε added to the variance.
        affine: learn per-channel γ and β.
    """

    name = "instance"

    def __init__(self, eps: float = 1e-5, affine: bool = True):
        self.eps, self.affine = eps, affine

    def groups_for(self, num_channels: int) -> int:
        return num_channels

    def layer(self, num_channels: int, dims: int) -> nn.Module:
        if dims == 1:
            raise ConfigError(
                "norm=instance on (N, C) features normalizes every value by itself (the output is "
                "β whatever the input, and no gradient reaches earlier layers). Instance statistics "
                "need spatial positions: use norm=instance with a CNN, or norm=layer / norm=group "
                "for an MLP."
            )
        return super().layer(num_channels, dims)
