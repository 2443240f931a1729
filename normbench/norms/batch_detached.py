"""``norm=batch_detached``: the counter-example of Ioffe & Szegedy 2015, §2.

The forward pass is Batch Normalization, but the batch mean and variance are treated as
constants in the backward pass (stop-gradient, ``sg``), per channel over the m batch values::

    y = γ · (x − sg(μ_B)) / sqrt(sg(σ²_B) + ε) + β          ∂y/∂x = γ / sqrt(σ²_B + ε)

§2 of the paper shows that a gradient step which ignores the dependence of the statistics on
the parameters lets them grow without the loss changing. Running estimates are kept exactly as
in ``norm=batch`` (unbiased variance, exponential or cumulative).

With ``group_size`` set (images per device), μ_B and σ²_B are those of each group of
``group_size`` consecutive samples, and the running estimates are updated from the mean of the
groups' statistics, as in ``norm=ghost_batch``. The forward and backward are
``GroupedBatchNormFunction`` with ``detached=True`` (``normbench/norms/grouped.py``): two
passes of sums for the statistics, one fused multiply-add forward, one multiply backward.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from normbench.norms.batch_base import BatchNormBase, GroupedBatchStatsSpec


class DetachedBatchNorm(BatchNormBase):
    """BN whose batch statistics (over the batch or groups of it) are constants for autograd."""

    variant = "batch_detached"
    #: kernels of the grouped statistics (``normbench.norms.grouped.IMPLS``; tests set it).
    impl = "auto"

    def __init__(
        self,
        num_features: int,
        *,
        dims: int,
        eps: float,
        momentum: float | None,
        affine: bool,
        group_size: int | None,
    ) -> None:
        super().__init__(num_features, dims=dims, eps=eps, momentum=momentum, affine=affine)
        self.group_size = group_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        if not self.uses_batch_stats():
            return self.running_affine(x)
        size = self.group_size or x.shape[0]
        return self.grouped_batch_norm(x, size, detached=True, impl=self.impl)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, group_size={self.group_size}"


@dataclass(frozen=True, kw_only=True)
class DetachedBatchNormSpec(GroupedBatchStatsSpec):
    """BN with stop-gradient batch statistics in the norm slot; options: those of
    :class:`~normbench.norms.batch_base.GroupedBatchStatsSpec` (``momentum``, ``eps``,
    ``affine``, ``group_size``)."""

    name = "batch_detached"
    norm_module = DetachedBatchNorm
