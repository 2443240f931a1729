"""``norm=sync_batch``: cross-process synchronized BN (Peng et al., MegDet, CVPR 2018).

The BN formula of ``norm=batch`` (Ioffe & Szegedy 2015), with μ_B and σ²_B computed over the
batch of *every* process of the ``torch.distributed`` group (torch's ``nn.SyncBatchNorm``)::

    μ_B = (1/M) Σ_p Σ_i x_{p,i}          σ²_B = (1/M) Σ_p Σ_i (x_{p,i} − μ_B)²,  M = Σ_p m_p

In a single process (no process group initialized, or world size 1) it is plain BN.

On GPU it is torch's ``nn.SyncBatchNorm`` (its CUDA kernels, nccl). torch's module refuses CPU
inputs, so on CPU (gloo) :class:`SyncBatchNormFunction` does the same computation: the
processes' counts, means and biased variances are all-gathered and combined (no Σx² − (Σx)²
cancellation), and the backward all-reduces Σdy and Σdy·(x − μ), as torch does. The gradients
of γ and β stay per process (DDP averages them).

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

from normbench.norms.batch_base import BatchStatsSpec
from normbench.norms.checks import check_batch_values, check_slot_input
from normbench.norms.first_order import first_order_backward
from normbench.norms.spec import NormSpec


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
        if self.training and _distributed() and x.device.type == "cpu":
            return self._cpu_sync_forward(x)
        return super().forward(x)

    def _cpu_sync_forward(self, x: torch.Tensor) -> torch.Tensor:
        momentum = 0.0 if self.momentum is None else self.momentum
        if self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:  # cumulative moving average
                momentum = 1.0 / float(self.num_batches_tracked)
        running = (
            (self.running_mean, self.running_var, momentum) if self.track_running_stats else None
        )
        return SyncBatchNormFunction.apply(x, self.weight, self.bias, self.eps, running)


def _channel_view(t: torch.Tensor, dims: int) -> torch.Tensor:
    return t.view(1, -1, *([1] * dims))


class SyncBatchNormFunction(torch.autograd.Function):
    """BN with statistics over every process of the default group (CPU, gloo)."""

    @staticmethod
    def forward(ctx, x, weight, bias, eps, running):  # noqa: ANN001, ANN205 (autograd's API)
        dims = tuple(d for d in range(x.dim()) if d != 1)
        count = x.numel() // x.shape[1]
        local_var, local_mean = torch.var_mean(x, dim=dims, correction=0)
        packed = torch.cat(
            [local_mean, local_var, torch.tensor([float(count)], dtype=x.dtype, device=x.device)]
        )
        gathered = [torch.empty_like(packed) for _ in range(dist.get_world_size())]
        dist.all_gather(gathered, packed)
        stats = torch.stack(gathered)  # (P, 2C + 1)
        c = x.shape[1]
        means, variances, counts = stats[:, :c], stats[:, c : 2 * c], stats[:, 2 * c :]
        total = counts.sum()
        mean = (counts * means).sum(0) / total
        var = (counts * (variances + (means - mean).square())).sum(0) / total
        invstd = torch.rsqrt(var + eps)
        spatial = x.dim() - 2
        xhat = (x - _channel_view(mean, spatial)) * _channel_view(invstd, spatial)
        y = xhat
        if weight is not None:
            y = xhat * _channel_view(weight, spatial) + _channel_view(bias, spatial)
        if running is not None:
            running_mean, running_var, momentum = running
            with torch.no_grad():
                unbiased = var * (total / (total - 1).clamp_min(1))
                running_mean.mul_(1 - momentum).add_(mean.to(running_mean.dtype), alpha=momentum)
                running_var.mul_(1 - momentum).add_(unbiased.to(running_var.dtype), alpha=momentum)
        ctx.save_for_backward(xhat, invstd, weight, total)
        ctx.affine = weight is not None
        return y

    @staticmethod
    @first_order_backward("norm=sync_batch (CPU processes)")
    def backward(ctx, grad_y):  # noqa: ANN001, ANN205
        xhat, invstd, weight, total = ctx.saved_tensors
        dims = tuple(d for d in range(xhat.dim()) if d != 1)
        spatial = xhat.dim() - 2
        sum_dy = grad_y.sum(dims)
        sum_dy_xhat = (grad_y * xhat).sum(dims)
        grad_weight = sum_dy_xhat if ctx.affine else None  # this process's share (DDP averages)
        grad_bias = sum_dy if ctx.affine else None
        both = torch.cat([sum_dy, sum_dy_xhat])
        dist.all_reduce(both)  # over every process's samples, as in the forward statistics
        c = xhat.shape[1]
        g_sum, g_xhat = both[:c] / total, both[c:] / total
        scale = invstd if weight is None else invstd * weight
        grad_x = _channel_view(scale, spatial) * (
            grad_y - _channel_view(g_sum, spatial) - xhat * _channel_view(g_xhat, spatial)
        )
        return grad_x, grad_weight, grad_bias, None, None


@dataclass(frozen=True, kw_only=True)
class SyncBatchNormSpec(BatchStatsSpec):
    """Synchronized BN in the norm slot; options: those of
    :class:`~normbench.norms.batch_base.BatchStatsSpec` (``momentum``, ``eps``, ``affine``)."""

    name = "sync_batch"
    norm_module = SyncBatchNorm

    def per_device(self, images: int) -> NormSpec:
        """Unchanged: the statistics are synchronized over all (simulated) devices."""
        return self
