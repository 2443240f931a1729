"""``norm=sync_batch``: cross-process synchronized BN (Peng et al., MegDet, CVPR 2018).

The BN formula of ``norm=batch`` (Ioffe & Szegedy 2015), with μ_B and σ²_B computed over the
batch of *every* process of the ``torch.distributed`` group (torch's ``nn.SyncBatchNorm``)::

    μ_B = (1/M) Σ_p Σ_i x_{p,i}          σ²_B = (1/M) Σ_p Σ_i (x_{p,i} − μ_B)²,  M = Σ_p m_p

In a single process (no process group initialized, or world size 1) it is plain BN.

On GPU the layer calls torch's synchronized BN (the CUDA kernels of ``nn.SyncBatchNorm``, nccl).
torch's function refuses CPU inputs (and DDP refuses an ``nn.SyncBatchNorm`` on CPU, so the layer is
not one), so on CPU (gloo) :class:`SyncBatchNormFunction` does the same computation: the
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

from normbench.norms.batch_base import BatchNormBase, BatchStatsSpec
from normbench.norms.first_order import first_order_backward
from normbench.norms.spec import NormSpec


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class SyncBatchNorm(BatchNormBase):
    """BN with training statistics over every process of the default group (CPU and GPU).

    Not an ``nn.SyncBatchNorm``: DistributedDataParallel refuses any instance of that class on
    CPU ("SyncBatchNorm layers only work with GPU modules"). It is a ``_BatchNorm`` (normbench's
    :class:`~normbench.norms.batch_base.BatchNormBase`) with the same parameters and buffers, so its
    state dict is that of ``nn.SyncBatchNorm``; on GPU it calls the autograd Function of torch's
    ``nn.SyncBatchNorm`` (its CUDA kernels), on CPU :class:`SyncBatchNormFunction`.

    Only a training forward that updates the running estimates is synchronized: every process
    takes part in it. Outside a group of several processes, in eval mode, and in the statistics
    procedures that one process runs alone with ``track_running_stats`` off (the activation
    probe, prediction-time BN, recomputed statistics: :mod:`normbench.norms.stats`), it is
    plain BN over this process's batch (torch's kernel); synchronized, rank 0's probe would wait
    for ever for the other ranks.
    """

    variant = "sync_batch"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and self.track_running_stats and _distributed()):
            self.check_input(x)  # a batch of one is refused here, not across processes
            return super().forward(x)
        self._check_input_dim(x)
        factor = self.running_factor()  # counts the batch
        if x.device.type == "cpu":
            running = None if factor is None else (self.running_mean, self.running_var, factor)
            return SyncBatchNormFunction.apply(x, self.weight, self.bias, self.eps, running)
        return self._torch_sync(x, factor)

    def _torch_sync(self, x: torch.Tensor, factor: float | None) -> torch.Tensor:
        """torch's synchronized BN (what ``nn.SyncBatchNorm.forward`` calls in training)."""
        from torch.nn.modules._functions import SyncBatchNorm as TorchSyncBatchNorm

        return TorchSyncBatchNorm.apply(
            x,
            self.weight,
            self.bias,
            self.running_mean,
            self.running_var,
            self.eps,
            0.0 if factor is None else factor,
            dist.group.WORLD,
            dist.get_world_size(),
        )


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
