"""Batch statistics over groups of consecutive samples, with the gradient in closed form.

One :class:`GroupedBatchNormFunction` serves every variant that normalizes with per-channel
batch statistics: Batch Normalization (Ioffe & Szegedy 2015, Alg. 1; one group), Ghost Batch
Normalization / images per device (Hoffer et al. 2017; Wu & He 2018), Batch Renormalization
(Ioffe 2017, Alg. 1, with its microbatches) and BN with detached statistics (Ioffe & Szegedy
2015, §2). The N samples are split into G = N / size groups of ``size`` consecutive samples;
per group k and channel c, over the m = size·H·W values of the group::

    μ_k = (1/m) Σ x          σ²_k = (1/m) Σ (x − μ_k)²          x̂ = (x − μ_k) / sqrt(σ²_k + ε)
    y = γ · (r_k · x̂ + d_k) + β          (r_k = 1, d_k = 0 unless a ``renorm`` callback is given)

r_k and d_k are constants for autograd (Batch Renorm's stop-gradient). With
a_k = γ r_k / sqrt(σ²_k + ε), the backward pass is, per group and channel::

    ∂L/∂x = a_k · (dy − mean_k(dy) − x̂ · mean_k(dy · x̂))          (detached: a_k · dy)
    ∂L/∂γ = Σ_k (r_k Σ dy x̂ + d_k Σ dy)          ∂L/∂β = Σ dy

The statistics are two passes of plain sums (torch's CPU Welford kernels behind ``var_mean``
and the BN statistics op are several times slower), and the gradient is expanded to
a·dy + k₁·x + k₀ with per-(group, channel) k₁, k₀, written into the buffer that held dy·x.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from normbench.norms.first_order import first_order_backward

#: (μ_k, 1/sqrt(σ²_k + ε)), each (G, C) → (r_k, d_k), each (G, C): Batch Renorm's correction.
#: It must not read the running estimates, which the Function may update first.
Renorm = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
#: (running mean, running variance, update weight α), updated in place by the Functions.
Running = tuple[torch.Tensor, torch.Tensor, float]

#: Who runs each Function, for the error on a second derivative through it.
CLOSED_FORM_USERS = (
    "norm=batch (impl=closed_form), norm=ghost_batch (impl=closed_form, or auto on large CPU "
    "inputs), norm=batch_renorm and norm=batch_detached"
)
NATIVE_USERS = (
    "norm=ghost_batch (impl=native, or auto on GPU and small CPU inputs), norm=batch_renorm "
    "and norm=batch_detached"
)
#: ``auto`` on CPU: the closed form, except for one group over fewer than :data:`LARGE_INPUT`
#: values, where torch's BN kernel (one op each way) wins because per-op overhead dominates;
#: plain sums beat torch's CPU BN kernel on large inputs, and the (N/G, G·C) layout of the
#: native path costs a transposed copy in and out. Elsewhere (GPU): torch's kernels.
IMPLS = ("auto", "native", "closed_form")
LARGE_INPUT = 1 << 16


def grouped_function(x: torch.Tensor, impl: str, groups: int) -> type[torch.autograd.Function]:
    """The Function computing grouped BN of ``x`` for ``impl`` (see :data:`IMPLS`)."""
    if impl == "auto":
        native = x.device.type != "cpu" or (groups == 1 and x.numel() < LARGE_INPUT)
        impl = "native" if native else "closed_form"
    return GroupedBatchNormFunction if impl == "closed_form" else NativeGroupedBatchNormFunction


def group_count(n: int, size: int) -> tuple[int, int]:
    """(complete groups, samples left over) when ``n`` samples are split into groups of ``size``."""
    size = min(size, n)
    return divmod(n, size) if size > 0 else (0, n)


def grouped_view(x: torch.Tensor, groups: int) -> torch.Tensor:
    """(N, C, *S) → (G, N/G, C, prod S): the groups as dim 0, their values in dims 1 and 3."""
    return x.reshape(groups, x.shape[0] // groups, x.shape[1], -1)


def _per_channel(t: torch.Tensor | None) -> torch.Tensor | None:
    return None if t is None else t.view(1, 1, -1, 1)


def value_dims(xv: torch.Tensor) -> tuple[int, ...]:
    """The dims of a grouped view holding a group's values (a simpler reduction when H·W = 1)."""
    return (1,) if xv.shape[3] == 1 else (1, 3)


def _sums(xv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(Σ x, Σ (x − μ)²) per (group, channel) of a grouped view, shaped (G, 1, C, 1).

    Two passes of plain sums, the second over x − μ (no cancellation as in Σx² − mΣμ²).
    """
    dims = value_dims(xv)
    total = xv.sum(dims, keepdim=True)
    centered = torch.sub(xv, total, alpha=1.0 / (xv.shape[1] * xv.shape[3]))
    return total, centered.mul_(centered).sum(dims, keepdim=True)


def grouped_mean_var(x: torch.Tensor, groups: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-(group, channel) mean and biased variance, each (G, C), outside autograd."""
    with torch.no_grad():
        xv = grouped_view(x, groups)
        total, squares = _sums(xv)
        inv_m = 1.0 / (xv.shape[1] * xv.shape[3])
    return total.view(groups, -1).mul_(inv_m), squares.view(groups, -1).mul_(inv_m)


def update_running_estimates(
    running: Running, mean: torch.Tensor, var: torch.Tensor, mean_scale: float, var_scale: float
) -> None:
    """μ ← (1−α)μ + α mean_k μ_k and σ² ← (1−α)σ² + α mean_k (unbiased σ²_k).

    ``mean`` and ``var`` are (G, C); μ_k = mean_scale · mean and the unbiased σ²_k =
    var_scale · var (the Functions pass sums or biased variances with the matching scale).
    """
    running_mean, running_var, factor = running
    groups = mean.shape[0]
    if groups > 1:
        mean, var = mean.sum(0), var.sum(0)
    running_mean.mul_(1.0 - factor).add_(mean.view(-1), alpha=factor * mean_scale / groups)
    running_var.mul_(1.0 - factor).add_(var.view(-1), alpha=factor * var_scale / groups)


class GroupedBatchNormFunction(torch.autograd.Function):
    """BN over ``groups`` groups of consecutive samples, gradient in closed form.

    ``apply(x, weight, bias, eps, groups, renorm=None, detached=False, running=None)``:
    ``renorm`` gives Batch Renorm's r_k, d_k; ``detached`` treats the statistics as constants;
    ``running`` (buffers and α) is updated in place with the mean of the groups' statistics.
    """

    @staticmethod
    def forward(
        ctx: Any,
        x: torch.Tensor,
        weight: torch.Tensor | None,
        bias: torch.Tensor | None,
        eps: float,
        groups: int,
        renorm: Renorm | None = None,
        detached: bool = False,
        running: Running | None = None,
    ) -> torch.Tensor:
        xv = grouped_view(x, groups)
        m = xv.shape[1] * xv.shape[3]
        if groups == 1 and x.numel() < LARGE_INPUT:  # one op: fewest for small inputs
            mean, var = (
                t.view(1, 1, -1, 1) for t in torch.batch_norm_update_stats(x, None, None, 0)
            )
        else:
            total, squares = _sums(xv)  # m·μ_k and m·σ²_k
            mean, var = total.mul_(1.0 / m), squares.mul_(1.0 / m)
        invstd = torch.add(var, eps).rsqrt_()
        gamma, beta = _per_channel(weight), _per_channel(bias)
        scale = invstd if gamma is None else invstd * gamma
        r = d = None
        if renorm is not None:
            r, d = renorm(mean.view(groups, -1), invstd.view(groups, -1))
            r, d = r.view(mean.shape), d.view(mean.shape)
            scale = scale * r
            shift = d if gamma is None else d * gamma
            shift = shift if beta is None else shift.add_(beta)
            shift = shift.addcmul_(mean, scale, value=-1.0)
        elif beta is None:
            shift = torch.mul(mean, scale).neg_()
        else:
            shift = torch.addcmul(beta, mean, scale, value=-1.0)
        # y is created with x's shape and written through a view: a custom Function must not
        # return a view (in-place ops on it, such as an in-place ReLU, would be refused).
        y = torch.empty_like(x, memory_format=torch.contiguous_format)
        torch.addcmul(shift, xv, scale, out=y.view(xv.shape))
        if running is not None:
            mean_k, var_k = mean.view(groups, -1), var.view(groups, -1)
            update_running_estimates(running, mean_k, var_k, 1.0, m / max(m - 1, 1))
        ctx.save_for_backward(x, mean, invstd, scale, r, d)
        ctx.groups, ctx.detached, ctx.affine = groups, detached, weight is not None
        ctx.set_materialize_grads(False)
        return y

    @staticmethod
    @first_order_backward(CLOSED_FORM_USERS)
    def backward(ctx: Any, grad_y: torch.Tensor | None) -> tuple[torch.Tensor | None, ...]:
        none = (None,) * 8
        if grad_y is None:
            return none
        x, mean, invstd, scale, r, d = ctx.saved_tensors
        xv = grouped_view(x, ctx.groups)
        dyv = grouped_view(grad_y, ctx.groups)
        dims = value_dims(xv)
        inv_m = 1.0 / (xv.shape[1] * xv.shape[3])
        sum_dy = dyv.sum(dims, keepdim=True)
        buffer = dyv * xv
        # Σ dy·(x − μ) = Σ dy·x − μ Σ dy;  Σ dy·x̂ is that times 1/σ.
        sum_dy_xhat = torch.addcmul(buffer.sum(dims, keepdim=True), mean, sum_dy, value=-1.0)
        sum_dy_xhat.mul_(invstd)
        grad_x = None
        if ctx.needs_input_grad[0]:
            if ctx.detached:
                torch.mul(dyv, scale, out=buffer)
            else:
                # a·(dy − Σdy/m − x̂ Σdy x̂/m) = a·dy + k₁·x + k₀ with x̂ = (x − μ)/σ expanded.
                k1 = (invstd * sum_dy_xhat).mul_(scale)  # −m·k₁
                k0 = torch.addcmul(scale * sum_dy, k1, mean, value=-1.0).mul_(-inv_m)
                torch.addcmul(k0, xv, k1, value=-inv_m, out=buffer)
                buffer.addcmul_(dyv, scale)
            grad_x = buffer.view(x.shape)
        grad_w = grad_b = None
        if ctx.affine:
            if ctx.needs_input_grad[1]:
                per_group = sum_dy_xhat if r is None else sum_dy_xhat.mul_(r).addcmul_(d, sum_dy)
                grad_w = per_group.view(-1, per_group.shape[2]).sum(0)
            if ctx.needs_input_grad[2]:
                grad_b = sum_dy.view(-1, sum_dy.shape[2]).sum(0)
        return grad_x, grad_w, grad_b, *none[3:]


def _to_channels(x: torch.Tensor, groups: int) -> torch.Tensor:
    """(N, C, *S) → (N/G, G·C, prod S): each (group, channel) pair becomes one BN channel.

    A transposed copy when G > 1 (the groups' samples must leave dim 0); x itself for G = 1.
    """
    if groups == 1:
        return x
    n, c = x.shape[:2]
    return (
        x.reshape(groups, n // groups, c, -1).transpose(0, 1).reshape(n // groups, groups * c, -1)
    )


def _from_channels(t: torch.Tensor, groups: int, shape: torch.Size) -> torch.Tensor:
    """Inverse of :func:`_to_channels` (a new tensor, never a view, when G > 1)."""
    if groups == 1:
        return t
    return t.reshape(t.shape[0], groups, shape[1], -1).transpose(0, 1).reshape(shape)


class NativeGroupedBatchNormFunction(torch.autograd.Function):
    """The formula of :class:`GroupedBatchNormFunction` with torch's BN kernels.

    The groups become channels of a (N/G, G·C, H·W) layout (:func:`_to_channels`), normalized
    by ``torch.native_batch_norm`` (which also updates the running estimates when G = 1) and
    differentiated by ``aten::native_batch_norm_backward`` with the per-(group, channel)
    weight γ r_k: one kernel each way plus, for G > 1, a transposed copy in and out. Fewest
    ops: the fast path for small, overhead-bound inputs. Same arguments as
    :class:`GroupedBatchNormFunction`.
    """

    @staticmethod
    def forward(
        ctx: Any,
        x: torch.Tensor,
        weight: torch.Tensor | None,
        bias: torch.Tensor | None,
        eps: float,
        groups: int,
        renorm: Renorm | None = None,
        detached: bool = False,
        running: Running | None = None,
    ) -> torch.Tensor:
        xt = _to_channels(x, groups)
        if groups > 1 and weight is not None:
            weight = weight.expand(groups, -1).reshape(-1)  # cheaper than repeat
            bias = bias.expand(groups, -1).reshape(-1)
        in_kernel = running if groups == 1 else None
        buffers, factor = ((None, None), 0.0) if in_kernel is None else (running[:2], running[2])
        scale, shift = (weight, bias) if renorm is None else (None, None)
        y, mean, invstd = torch.native_batch_norm(xt, scale, shift, *buffers, True, factor, eps)
        r = d = None
        if renorm is not None:
            r, d = renorm(mean.view(groups, -1), invstd.view(groups, -1))
            r, d = r.view(-1), d.view(-1)
            scale = r if weight is None else weight * r
            shift = d if weight is None else torch.addcmul(bias, weight, d)
            channel = (1, -1, *([1] * (xt.dim() - 2)))
            # in y's dtype (bf16 under autocast), as torch's BN returns; r, d stay float for backward
            y = torch.addcmul(shift.view(channel).to(y.dtype), y, scale.view(channel).to(y.dtype))
        if running is not None and in_kernel is None:
            m = xt.shape[0] * math.prod(xt.shape[2:])
            var = invstd.pow(-2).sub_(eps).view(groups, -1)
            update_running_estimates(running, mean.view(groups, -1), var, 1.0, m / max(m - 1, 1))
        ctx.save_for_backward(xt, mean, invstd, scale, r, d)
        ctx.groups, ctx.detached, ctx.eps, ctx.shape = groups, detached, eps, x.shape
        ctx.affine = weight is not None
        ctx.set_materialize_grads(False)
        return _from_channels(y, groups, x.shape)

    @staticmethod
    @first_order_backward(NATIVE_USERS)
    def backward(ctx: Any, grad_y: torch.Tensor | None) -> tuple[torch.Tensor | None, ...]:
        none = (None,) * 8
        if grad_y is None:
            return none
        xt, mean, invstd, scale, r, d = ctx.saved_tensors
        groups = ctx.groups
        dyt = _to_channels(grad_y, groups)
        need_x = ctx.needs_input_grad[0]
        mask = [need_x and not ctx.detached, ctx.affine, ctx.affine]
        grad_x, sum_dy_xhat, sum_dy = torch.ops.aten.native_batch_norm_backward(
            dyt, xt, scale, None, None, mean, invstd, True, ctx.eps, mask
        )
        if need_x and ctx.detached:
            a = invstd if scale is None else invstd * scale
            grad_x = dyt * a.view(1, -1, *([1] * (xt.dim() - 2)))
        grad_w = grad_b = None
        if ctx.affine:
            if r is not None:
                sum_dy_xhat = sum_dy_xhat.mul_(r).addcmul_(d, sum_dy)
            grad_w = sum_dy_xhat.view(groups, -1).sum(0) if groups > 1 else sum_dy_xhat
            grad_b = sum_dy.view(groups, -1).sum(0) if groups > 1 else sum_dy
        if grad_x is not None:
            grad_x = _from_channels(grad_x, groups, ctx.shape)
        return grad_x, grad_w, grad_b, *none[3:]
