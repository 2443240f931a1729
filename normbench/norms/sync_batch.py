"""``norm=sync_batch``: cross-process synchronized BN (Peng et al., MegDet, CVPR 2018).

The BN formula of ``norm=batch`` (Ioffe & Szegedy 2015), with μ_B and σ²_B computed over the
batch of *every* process of the ``torch.distributed`` group (torch's ``nn.SyncBatchNorm``)::

    μ_B = (1/M) Σ_p Σ_i x_{p,i}          σ²_B = (1/M) Σ_p Σ_i (x_{p,i} − μ_B)²,  M = Σ_p m_p

In a single process (no process group initialized, or world size 1) it is plain BN.

Images per device (``per_device``): the simulated devices of one batch are synchronized too,
so the statistics stay over the whole batch (over every device) and ``per_device(N)``
returns the spec unchanged. That is what SyncBN is for: the GroupNorm paper's small-batch
problem is BN with statistics per device, which SyncBN removes (MegDet). For statistics per
device use ``norm=batch`` (it becomes ghost BN with N images per group).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from normbench.norms.checks import check_batch_values, check_slot_input
from normbench.norms.spec import NormSpec, check_dims


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class SyncBatchNorm(nn.SyncBatchNorm):
    """torch's SyncBatchNorm with normbench's input-shape and batch-of-one checks."""

    variant = "sync_batch"

    def __init__(
        self, num_features: int, *, dims: int, eps: float, momentum: float | None, affine: bool
    ) -> None:
        super().__init__(num_features, eps=eps, momentum=momentum, affine=affine)
        self.dims = dims

    def _check_input_dim(self, input: torch.Tensor) -> None:  # noqa: A002 (torch's name)
        check_slot_input(input, self.dims, self.num_features, type(self).__name__)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(x)
        if self.training and not _distributed():
            check_batch_values(x, self.variant)
        return super().forward(x)


@dataclass(frozen=True, kw_only=True)
class SyncBatchNormSpec(NormSpec):
    """Synchronized BN in the norm slot.

    Attributes:
        momentum: running-estimate update weight; ``None`` for the cumulative average.
        eps: ε added to the variance.
        affine: learn γ and β.
    """

    momentum: float | None = 0.1
    eps: float = 1e-5
    affine: bool = True

    name = "sync_batch"
    batch_dependent = True

    def layer(self, num_channels: int, dims: int) -> nn.Module:
        check_dims(dims)
        return SyncBatchNorm(num_channels, dims=dims, **self.options())

    def per_device(self, images: int) -> NormSpec:
        """Unchanged: the statistics are synchronized over all (simulated) devices."""
        return self

    @property
    def has_shift(self) -> bool:
        return self.affine
