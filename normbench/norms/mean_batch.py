"""``norm=mean_batch``: mean-only Batch Normalization, with the mean inside or outside the
gradient.

Per channel, over the m values of the batch (and spatial positions)::

    training: y = x − μ_B (+ β)          eval: y = x − μ (+ β)          (μ: running mean of μ_B)

``affine: true`` adds the learned shift β (Salimans & Kingma 2016, §5, where it follows Weight
Normalization); ``affine: false`` is the bare centring x̂ = x − E[x] of the BN paper's §2.

``detached: true`` treats μ_B as a constant in the backward pass (stop-gradient), so
∂y/∂x = 1: the mean-only version of ``norm=batch_detached``. That is the §2 counter-example
(Ioffe & Szegedy 2015): with a learned bias b before the slot (``model.bias_before_norm``),
x = u + b and ``y = x − sg(E[x])``; the forward output does not depend on b, but the gradient
step on b is −η Σ ∂ℓ/∂y, so b grows step after step while the loss does not change. With the
mean in the gradient (``detached: false``) ∂ℓ/∂b = Σ ∂ℓ/∂y · (1 − 1) = 0 and b stays where it
was initialised.

With ``group_size`` (images per device) μ_B is the mean of each group of ``group_size``
consecutive samples and μ is updated from the mean of the groups' means; a trailing partial
group uses its own mean and leaves μ alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from normbench.norms.batch_base import BatchNormBase
from normbench.norms.checks import channel_view, check_batch_values, check_group_size, reduce_dims
from normbench.norms.grouped import group_count, grouped_view, value_dims
from normbench.norms.spec import NormSpec, check_dims


class MeanOnlyBatchNorm(BatchNormBase):
    """Subtract the batch (or group) mean, the running mean in eval; add β when ``affine``;
    the mean is a constant for autograd when ``detached``."""

    variant = "mean_batch"

    def __init__(
        self,
        num_features: int,
        *,
        dims: int,
        momentum: float | None,
        group_size: int | None,
        affine: bool = True,
        detached: bool = False,
        variant: str = "mean_batch",
    ):
        super().__init__(num_features, dims=dims, eps=0.0, momentum=momentum, affine=False)
        self.bias = nn.Parameter(torch.zeros(num_features)) if affine else None
        self.group_size, self.detached, self.variant = group_size, detached, variant

    def _shift(self, mean: torch.Tensor) -> torch.Tensor:
        """μ − β (μ alone without β), channels last."""
        return mean if self.bias is None else mean - self.bias.to(mean.dtype)

    def _normalized(self, x: torch.Tensor, groups: int, factor: float | None) -> torch.Tensor:
        """x − μ_k (+ β) over ``groups`` groups; updates μ from the groups' means."""
        if groups == 1:
            mean = x.mean(dim=reduce_dims(x))
            mean = mean.detach() if self.detached else mean
            shift, group_mean = channel_view(self._shift(mean), x), mean
        else:
            xv = grouped_view(x, groups)
            mean = xv.mean(value_dims(xv), keepdim=True)  # (G, 1, C, 1)
            mean = mean.detach() if self.detached else mean
            shift = self._shift(mean.view(groups, -1)).view(mean.shape)
            group_mean = mean.view(groups, -1).mean(0)
        if factor is not None:
            with torch.no_grad():
                self.running_mean.lerp_(group_mean.detach().to(self.running_mean.dtype), factor)
        return x - shift if groups == 1 else (grouped_view(x, groups) - shift).view(x.shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        if not self.uses_batch_stats():
            return x - channel_view(self._shift(self.running_mean.to(x.dtype)), x)
        n = x.shape[0]
        groups, rest = group_count(n, self.group_size or n)
        check_batch_values(x, self.variant, self.group_size)
        factor = self.running_factor()
        if not rest:
            return self._normalized(x, groups, factor)
        check_batch_values(x[n - rest :], self.variant)
        head = self._normalized(x[: n - rest], groups, factor)
        return torch.cat([head, self._normalized(x[n - rest :], 1, None)])

    def extra_repr(self) -> str:
        return (
            f"{self.num_features}, momentum={self.momentum}, affine={self.bias is not None}, "
            f"detached={self.detached}, group_size={self.group_size}"
        )


@dataclass(frozen=True, kw_only=True)
class MeanBatchNormSpec(NormSpec):
    """Mean-only BN in the norm slot.

    Attributes:
        momentum: running-mean update weight; ``None`` for the cumulative average.
        affine: learn the shift β (``False``: the bare x − E[x] of the BN paper's §2).
        detached: the batch mean is a constant in backward (the §2 counter-example).
        group_size: the mean over groups of this many consecutive samples (``None``: the
            whole batch); ``per_device`` sets it.
    """

    momentum: float | None = 0.1
    affine: bool = True
    detached: bool = False
    group_size: int | None = None

    name = "mean_batch"
    batch_dependent = True

    def __post_init__(self) -> None:
        check_group_size(self.name, self.group_size)

    def per_device(self, images: int) -> NormSpec:
        """The mean over groups of ``images`` samples."""
        return self.with_options(group_size=images)

    def layer(self, num_channels: int, dims: int) -> nn.Module:
        check_dims(dims)
        return MeanOnlyBatchNorm(num_channels, dims=dims, **self.options())

    @property
    def has_shift(self) -> bool:
        return self.affine
