"""``norm=evonorm``: EvoNorm-S0 and EvoNorm-B0 (Liu, Brock, Simonyan & Le, NeurIPS 2020, Table 1).

Normalization-activation layers found by search; each replaces BN + ReLU. With v₁, γ, β
learned per channel (v₁ = γ = 1, β = 0 at init)::

    S0:  y = x · σ(v₁ x) / sqrt(s²_{w,h,c/g}(x) + ε) · γ + β
    B0:  y = x / max(sqrt(s²_{b,w,h}(x) + ε), v₁ x + sqrt(s²_{w,h}(x) + ε)) · γ + β

s²_{w,h,c/g} is the (biased) variance of each sample over the H·W values of its group of C/g
channels (batch-independent, like GN); s²_{b,w,h} is the batch variance of each channel (over
N·H·W values, replaced by a running estimate in eval mode, unbiased as in BN); s²_{w,h} is the
variance of each sample's channel over H·W (0 for (N, C) inputs). σ is the logistic sigmoid.

Both run as autograd Functions with the gradient in closed form (formulas in their
docstrings). B0 with ``group_size`` (images per device) takes s²_{b,w,h} over each group of
``group_size`` consecutive samples; the running variance averages the groups' (unbiased)
variances, as ``norm=ghost_batch`` does; a trailing partial group uses its own variance and
leaves the running estimate alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from normbench.errors import ConfigError
from normbench.norms.batch_base import BatchNormBase
from normbench.norms.checks import (
    check_batch_values,
    check_group_size,
    check_groups,
    check_slot_input,
)
from normbench.norms.first_order import first_order_backward
from normbench.norms.grouped import Running, group_count, grouped_view, update_running_estimates
from normbench.norms.spec import NormSpec, check_dims

VERSIONS = ("S0", "B0")


def _spatial(x: torch.Tensor) -> int:
    return math.prod(x.shape[2:])


def _sigmoid_backward(grad: torch.Tensor, sig: torch.Tensor) -> torch.Tensor:
    """grad · σ(1 − σ), written into ``grad`` (a buffer the caller owns)."""
    return torch.ops.aten.sigmoid_backward.grad_input(grad, sig, grad_input=grad)


def _threshold_backward(grad: torch.Tensor, margin: torch.Tensor) -> torch.Tensor:
    """grad where margin > 0, else 0, written into ``margin`` (a buffer the caller owns)."""
    return torch.ops.aten.threshold_backward.grad_input(grad, margin, 0.0, grad_input=margin)


class EvoNormS0Function(torch.autograd.Function):
    """EvoNorm-S0 with its backward in closed form (5 passes forward, 14 backward).

    Per sample n and channel group g (m = C/g·H·W values), with s = (σ²_ng + ε)^(-1/2),
    σ = σ(v x), h = x σ, a = γ s, w = dy·x·σ(1 − σ), D₁ = Σ_{h,w} dy·h, D₂ = Σ_{h,w} w·x::

        ∂L/∂x = a · (dy σ + v w) − s³ T (x − μ_ng) / m,   T = Σ_{c∈g} γ_c D₁
        ∂L/∂v = Σ_n a D₂          ∂L/∂γ = Σ_n s D₁          ∂L/∂β = Σ dy

    The group statistics come from torch's group-norm kernel, whose output buffer becomes y;
    σ is recomputed in the backward pass rather than kept (one tensor less held between the
    passes, no more allocations), and every further step is in place on two buffers.
    """

    @staticmethod
    def forward(
        ctx: Any,
        x: torch.Tensor,
        v: torch.Tensor,
        weight: torch.Tensor | None,
        bias: torch.Tensor | None,
        groups: int,
        eps: float,
    ) -> torch.Tensor:
        x = x.contiguous()  # views below assume it; CUDA's group-norm kernel needs it
        n, c = x.shape[:2]
        y, mean, rstd = torch.native_group_norm(x, None, None, n, c, _spatial(x), groups, eps)
        shape = (n, groups, c // groups, -1)  # (N, g, C/g, H·W): statistics broadcast per group
        xg, yg = x.reshape(shape), y.view(shape)
        a = rstd.view(n, groups, 1, 1)  # s
        a = a if weight is None else a * weight.view(1, groups, -1, 1)
        torch.mul(xg, v.view(1, groups, -1, 1), out=yg).sigmoid_().mul_(xg)  # h = x σ(v x)
        if bias is None:
            yg.mul_(a)
        else:
            torch.addcmul(bias.view(1, groups, -1, 1), yg, a, out=yg)
        ctx.save_for_backward(x, mean, rstd, v, weight)
        ctx.groups = groups
        ctx.set_materialize_grads(False)
        return y

    @staticmethod
    @first_order_backward("norm=evonorm (version=S0)")
    def backward(ctx: Any, grad_y: torch.Tensor | None) -> tuple[torch.Tensor | None, ...]:
        if grad_y is None:
            return (None,) * 6
        x, mean, rstd, v, weight = ctx.saved_tensors
        n, c = x.shape[:2]
        groups = ctx.groups
        shape = (n, groups, c // groups, -1)
        xg, dyg = x.reshape(shape), grad_y.reshape(shape)
        per_channel = (1, groups, -1, 1)
        s = rstd.view(n, groups, 1, 1)
        a = s if weight is None else s * weight.view(per_channel)  # γ s
        grad_b = dyg.sum((0, 3)).view(-1) if weight is not None else None
        vg = v.view(per_channel)
        sig = torch.mul(xg, vg).sigmoid_()
        buf = torch.mul(dyg, xg).mul_(sig)  # dy·h
        d1 = buf.sum(3, keepdim=True)  # (N, g, C/g, 1)
        buf.addcmul_(buf, sig, value=-1.0)  # w = dy·x·σ(1 − σ)
        t = d1 if weight is None else d1 * weight.view(per_channel)
        k = t.sum(2, keepdim=True).mul_(s.pow(3)).mul_(1 / (xg.shape[2] * xg.shape[3]))
        shift = k * mean.view(n, groups, 1, 1)  # s³T/m and its μ term per (n, g)
        grad_x = sig.mul_(dyg).addcmul_(buf, vg).mul_(a).addcmul_(xg, k, value=-1.0).add_(shift)
        grad_v = (a * buf.mul_(xg).sum(3, keepdim=True)).sum((0, 3)).view(-1)
        grad_w = (s * d1).sum((0, 3)).view(-1) if weight is not None else None
        return grad_x.view(x.shape), grad_v, grad_w, grad_b, None, None


class EvoNormB0Function(torch.autograd.Function):
    """EvoNorm-B0 with its backward in closed form (6 passes forward, 17 backward).

    den = max(σ_b, v x + σ_i), σ_b over each group of ``size`` samples (images per device)
    or the running estimate (``batch_std`` given: a constant), σ_i per (n, c) over H·W.
    With w = ∂L/∂den = −γ dy x / den², split into the batch branch (den = σ_b) and the
    instance branch (den > σ_b)::

        ∂L/∂x = γ dy / den + v w_inst + W_b (x − μ_b) / (m_b σ_b) + W_i (x − μ_i) / (m_i σ_i)
        W_b = Σ_{group, h, w} w_batch          W_i = Σ_{h, w} w_inst
        ∂L/∂v = Σ w_inst x          ∂L/∂γ = Σ dy x / den          ∂L/∂β = Σ dy

    Instance statistics come from torch's group-norm kernel (one group per channel), whose
    output buffer becomes 1/den; the batch statistics are combined from them (mean of the
    instance variances plus the variance of the instance means), with no further pass.
    """

    @staticmethod
    def forward(
        ctx: Any,
        x: torch.Tensor,
        v: torch.Tensor,
        weight: torch.Tensor | None,
        bias: torch.Tensor | None,
        eps: float,
        groups: int,
        batch_std: torch.Tensor | None = None,
        running: Running | None = None,
    ) -> torch.Tensor:
        x = x.contiguous()  # views below assume it; CUDA's group-norm kernel needs it
        n, c = x.shape[:2]
        m_i = _spatial(x)
        size = n // groups
        xv = grouped_view(x, groups)
        if m_i == 1:  # (N, C): s²_{w,h} = 0, μ_i = x (torch's group norm is slow on it)
            inv_den, mean_i, var_i = torch.empty_like(x), xv, None
            sigma_i = torch.full((), math.sqrt(eps), dtype=x.dtype, device=x.device)
        else:
            inv_den, mean_i, rstd_i = torch.native_group_norm(x, None, None, n, c, m_i, c, eps)
            sigma_i = rstd_i.reciprocal().view(groups, size, c, 1)
            mean_i = mean_i.view(groups, size, c, 1)
            var_i = rstd_i.pow(-2).sub_(eps).view(groups, size, c, 1)
        rv = grouped_view(inv_den, groups)
        mean_b = None
        if batch_std is None:
            mean_b = mean_i.mean(1, keepdim=True)
            var_b = (mean_i - mean_b).square_()
            var_b = (var_b if var_i is None else var_b.add_(var_i)).mean(1, keepdim=True)
            if running is not None:
                m_b = size * m_i
                mean_k, var_k = mean_b.view(groups, c), var_b.view(groups, c)
                update_running_estimates(running, mean_k, var_k, 1.0, m_b / max(m_b - 1, 1))
            sigma_b = var_b.add_(eps).sqrt_()  # (G, 1, C, 1)
        else:
            sigma_b = batch_std.view(1, 1, c, 1)
        torch.addcmul(sigma_i, xv, v.view(1, 1, c, 1), out=rv)
        rv.clamp_min_(sigma_b).reciprocal_()  # 1/den
        y = x * inv_den
        if weight is not None:
            torch.addcmul(bias.view(1, -1, *([1] * (x.dim() - 2))), y, _chan(weight, x), out=y)
        ctx.save_for_backward(x, inv_den, sigma_b, sigma_i, mean_b, mean_i, v, weight)
        ctx.groups = groups
        ctx.set_materialize_grads(False)
        return y

    @staticmethod
    @first_order_backward("norm=evonorm (version=B0)")
    def backward(ctx: Any, grad_y: torch.Tensor | None) -> tuple[torch.Tensor | None, ...]:
        none = (None,) * 8
        if grad_y is None:
            return none
        grad_y = grad_y.contiguous()  # a channels_last gradient from the next layer
        x, inv_den, sigma_b, sigma_i, mean_b, mean_i, v, weight = ctx.saved_tensors
        groups = ctx.groups
        xv, rv, dyv = (grouped_view(t, groups) for t in (x, inv_den, grad_y))
        c = xv.shape[2]
        gamma = weight.view(1, 1, c, 1) if weight is not None else None
        grad_b = dyv.sum((0, 1, 3)) if weight is not None else None
        buf = (dyv * xv).mul_(rv)  # dy x / den
        grad_w = buf.sum((0, 1, 3)) if weight is not None else None
        buf.mul_(rv)  # dy x / den² = −w/γ
        # Instance branch (den > σ_b, i.e. 1/σ_b − 1/den > 0): w there, 0 in the batch branch.
        inst = _threshold_backward(buf, torch.sub(sigma_b.reciprocal(), rv))
        coef = shift = None  # per (n, c): the terms through σ_i and σ_b, divided by γ
        if xv.shape[3] > 1:  # σ_i depends on x (for (N, C) inputs it is the constant sqrt(ε))
            coef = inst.sum(3, keepdim=True).neg_().mul_(1.0 / xv.shape[3]).div_(sigma_i)
            shift = coef * mean_i  # W_i/(m_i σ_i) and its μ_i term
        if mean_b is not None:  # batch statistics: gradient through σ_b
            w_b = inst.sum((1, 3), keepdim=True).sub_(buf.sum((1, 3), keepdim=True))
            coef_b = w_b.mul_(1.0 / (xv.shape[1] * xv.shape[3])).div_(sigma_b)
            coef = coef_b if coef is None else coef + coef_b
            shift = coef_b * mean_b if shift is None else shift.addcmul_(coef_b, mean_b)
        grad_x = torch.mul(dyv, rv, out=buf)  # dy / den, in the buffer no longer needed
        grad_x.addcmul_(inst, v.view(1, 1, c, 1), value=-1.0)
        if coef is not None:
            grad_x.addcmul_(xv, coef).sub_(shift)
        if gamma is not None:
            grad_x.mul_(gamma)
        grad_v = inst.mul_(xv).sum((0, 1, 3)).neg_()
        if gamma is not None:
            grad_v.mul_(weight)
        return grad_x.view(x.shape), grad_v, grad_w, grad_b, *(None,) * 4


def _chan(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return t.view(1, -1, *([1] * (x.dim() - 2)))


class EvoNormS0(nn.Module):
    """EvoNorm-S0: x·σ(v₁x) over the group standard deviation (batch-independent)."""

    def __init__(self, num_channels: int, *, dims: int, groups: int, eps: float, affine: bool):
        super().__init__()
        self.num_channels, self.dims, self.groups = num_channels, dims, groups
        self.eps, self.affine = eps, affine
        self.v = nn.Parameter(torch.ones(num_channels))
        self.weight = nn.Parameter(torch.ones(num_channels)) if affine else None
        self.bias = nn.Parameter(torch.zeros(num_channels)) if affine else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_slot_input(x, self.dims, self.num_channels, type(self).__name__)
        return EvoNormS0Function.apply(x, self.v, self.weight, self.bias, self.groups, self.eps)

    def extra_repr(self) -> str:
        return f"{self.num_channels}, groups={self.groups}, eps={self.eps}, affine={self.affine}"


def evonorm_b0_formula(
    x: torch.Tensor,
    v: torch.Tensor,
    weight: torch.Tensor | None,
    bias: torch.Tensor | None,
    eps: float,
    groups: int,
    running: Running | None = None,
) -> torch.Tensor:
    """EvoNorm-B0 in training on (N, C, *S) as autograd ops, statistics over ``groups`` groups of
    consecutive samples: x / max(v x + σ_instance, σ_batch), then γ, β. What ``torch.compile``
    traces (the Function is faster in eager mode); the same running-variance update."""
    n, c = x.shape[:2]
    xg = x.reshape(groups, n // groups, c, -1)
    var_i, mean_i = torch.var_mean(xg, dim=3, correction=0, keepdim=True)  # (G, n/G, C, 1)
    mean_b = mean_i.mean(1, keepdim=True)
    var_b = ((mean_i - mean_b).square() + var_i).mean(1, keepdim=True)  # (G, 1, C, 1)
    if running is not None:
        m_b = (n // groups) * xg.shape[3]
        with torch.no_grad():
            update_running_estimates(
                running, mean_b.view(groups, c), var_b.view(groups, c), 1.0, m_b / max(m_b - 1, 1)
            )
    den = torch.maximum(v.view(1, 1, c, 1) * xg + (var_i + eps).sqrt(), (var_b + eps).sqrt())
    y = (xg / den).reshape(x.shape)
    if weight is None:
        return y
    shape = (1, c, *([1] * (x.dim() - 2)))
    return y * weight.view(shape) + bias.view(shape)


class EvoNormB0(BatchNormBase):
    """EvoNorm-B0: x over max(batch std, v₁x + instance std); running batch variance at eval.

    With ``group_size`` the batch standard deviation is over groups of that many consecutive
    samples (images per device); the running variance then averages the groups' variances.
    """

    variant = "evonorm"

    def __init__(
        self,
        num_channels: int,
        *,
        dims: int,
        eps: float,
        momentum: float | None,
        affine: bool,
        group_size: int | None,
    ):
        super().__init__(num_channels, dims=dims, eps=eps, momentum=momentum, affine=affine)
        self.v = nn.Parameter(torch.ones(num_channels))
        self.group_size = group_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(x)
        args = (x, self.v, self.weight, self.bias, self.eps)
        if not self.uses_batch_stats():
            std = torch.add(self.running_var, self.eps).sqrt_()
            return EvoNormB0Function.apply(*args, 1, std.to(x.dtype))
        n = x.shape[0]
        groups, rest = group_count(n, self.group_size or n)
        check_batch_values(x, self.variant, self.group_size)
        factor = self.running_factor()
        running = None if factor is None else (self.running_mean, self.running_var, factor)
        if not rest:
            if x.dim() > 2 and torch.compiler.is_compiling():
                # inductor fuses the plain formula; traced, the Function was 1.5-2x native BN
                return evonorm_b0_formula(*args, groups, running)
            return EvoNormB0Function.apply(*args, groups, None, running)
        check_batch_values(x[n - rest :], self.variant)
        head = EvoNormB0Function.apply(x[: n - rest], *args[1:], groups, None, running)
        return torch.cat([head, EvoNormB0Function.apply(x[n - rest :], *args[1:], 1)])

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, group_size={self.group_size}"


@dataclass(frozen=True, kw_only=True)
class EvoNormSpec(NormSpec):
    """EvoNorm in the norm slot (it replaces the activation: ``includes_activation``).

    Attributes:
        version: ``S0`` (batch-independent, grouped) or ``B0`` (batch-dependent).
        groups: channel groups of S0's variance; must divide the channel count.
        eps: ε added to every variance.
        momentum: B0's running-variance update weight; ``None`` for the cumulative average.
        affine: learn γ and β (v₁ is always learned: it is part of the activation).
        group_size: B0's batch variance over groups of this many consecutive samples (``None``:
            the whole batch); ``per_device`` sets it. S0 ignores it.
    """

    version: str = "S0"
    groups: int = 32
    eps: float = 1e-5
    momentum: float | None = 0.1
    affine: bool = True
    group_size: int | None = None

    name = "evonorm"
    includes_activation = True

    def __post_init__(self) -> None:
        if self.version not in VERSIONS:
            raise ConfigError(
                f"norm=evonorm: version={self.version!r} is not one of {', '.join(VERSIONS)}."
            )
        check_group_size(self.name, self.group_size)

    @property
    def batch_dependent(self) -> bool:  # type: ignore[override]
        """B0 divides by a batch standard deviation; S0 never looks at other samples."""
        return self.version == "B0"

    def per_device(self, images: int) -> NormSpec:
        """B0 with its batch variance over groups of ``images`` samples; S0 unchanged."""
        return self.with_options(group_size=images) if self.batch_dependent else self

    def layer(self, num_channels: int, dims: int) -> nn.Module:
        check_dims(dims)
        common = {"dims": dims, "eps": self.eps, "affine": self.affine}
        if self.version == "B0":
            return EvoNormB0(
                num_channels, momentum=self.momentum, group_size=self.group_size, **common
            )
        check_groups(self.groups, num_channels, self.name, key="groups")
        return EvoNormS0(num_channels, groups=self.groups, **common)

    @property
    def has_shift(self) -> bool:
        return self.affine
