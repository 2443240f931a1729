"""``norm=ghost_batch``: Ghost Batch Normalization (Hoffer, Hubara & Soudry, NIPS 2017).

Batch statistics over virtual groups ("ghost batches") of ``group_size`` consecutive samples
inside a larger batch: the images-per-device setting of the GroupNorm paper (Wu & He 2018, §2).
For group k holding samples S_k, per channel over the m = |S_k|·H·W values of the group::

    y_i = γ · (x_i − μ_k) / sqrt(σ²_k + ε) + β          for i ∈ S_k

Running estimates (eval mode uses them, as BN does) average the groups' statistics::

    μ ← (1 − α) μ + α · mean_k μ_k          σ² ← (1 − α) σ² + α · mean_k (m/(m − 1) σ²_k)

A trailing partial group (N not a multiple of ``group_size``) is normalized by its own
statistics and leaves the running estimates alone. With ``group_size ≥ N`` this is BN.
No loop over groups; ``impl`` picks the kernels (``normbench/norms/grouped.py``):

- ``closed_form``: ``GroupedBatchNormFunction`` on the (G, group_size, C, H·W) view: plain
  sums for the statistics and the gradient in closed form;
- ``native``: ``NativeGroupedBatchNormFunction``: torch's BN kernels on the (group_size, G·C,
  H·W) layout, each (group, channel) pair one channel (a transposed copy in and out);
- ``auto`` (default): ``closed_form`` for CPU inputs of at least 2¹⁶ values, where plain sums
  beat torch's CPU BN kernel; ``native`` otherwise (small inputs are bound by per-op
  overhead, and GPU kernels are fused). See ``normbench bench norms``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from normbench.errors import ConfigError
from normbench.norms.batch_base import BatchNormBase, GroupedBatchStatsSpec
from normbench.norms.grouped import IMPLS


class GhostBatchNorm(BatchNormBase):
    """BN over consecutive groups of ``group_size`` samples."""

    variant = "ghost_batch"

    def __init__(
        self,
        num_features: int,
        *,
        dims: int,
        group_size: int,
        eps: float,
        momentum: float | None,
        affine: bool,
        impl: str,
    ) -> None:
        super().__init__(num_features, dims=dims, eps=eps, momentum=momentum, affine=affine)
        self.group_size, self.impl = group_size, impl

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(x)
        if not self.uses_batch_stats():
            return self.running_affine(x)
        return self.grouped_batch_norm(x, self.group_size, impl=self.impl)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, group_size={self.group_size}, impl={self.impl}"


@dataclass(frozen=True, kw_only=True)
class GhostBatchNormSpec(GroupedBatchStatsSpec):
    """Ghost Batch Normalization in the norm slot.

    Attributes:
        momentum, eps, affine: see :class:`~normbench.norms.batch_base.BatchStatsSpec`.
        group_size: samples per ghost batch (images per device in the GN paper).
        impl: ``auto`` (closed form on CPU, native elsewhere), ``native`` or ``closed_form``.
    """

    group_size: int = 32
    impl: str = "auto"

    name = "ghost_batch"
    norm_module = GhostBatchNorm

    def __post_init__(self) -> None:
        if self.group_size < 1:
            raise ConfigError(f"norm=ghost_batch: group_size must be ≥ 1, got {self.group_size}.")
        if self.impl not in IMPLS:
            raise ConfigError(
                f"norm=ghost_batch: impl={self.impl!r} is not one of {', '.join(IMPLS)}."
            )
