"""``norm=frn``: Filter Response Normalization with a Thresholded Linear Unit.

Singh & Krishnan, CVPR 2020 (arXiv 1911.09737), Eq. 1-3. Per sample n and channel c, over the
H·W spatial values of that channel (no mean subtraction, no batch dependence)::

    ν² = (1/(H·W)) Σ_{h,w} x²          x̂ = x / sqrt(ν² + ε)
    y = γ · x̂ + β          z = max(y, τ)          (γ, β, τ per channel)

For (N, C) inputs (``dims=1``) ν² = x² and x̂ ≈ sign(x); the paper then learns ε:
``learnable_eps: true`` uses ε + |ε_l| with ε_l a parameter initialised to 1e-4.
The TLU replaces the activation (``spec.includes_activation``). (N, C, H, W) inputs run through
:class:`FilterResponseNormFunction` (closed-form backward); (N, C) inputs, where everything is
per value, through a few autograd ops (:func:`filter_response_norm_flat`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from normbench.norms.checks import check_slot_input
from normbench.norms.first_order import first_order_backward
from normbench.norms.spec import NormSpec, check_dims


class FilterResponseNormFunction(torch.autograd.Function):
    """FRN + TLU on (N, C, H, W) with its backward in closed form: 4 passes forward, 8 backward.

    Per (n, c), with m = H·W, s = (ν² + ε)^(-1/2), g = ∂L/∂z · [y > τ] and t = Σ_{h,w} g·x::

        ∂L/∂x = γ s g − γ s³ x t / m          ∂L/∂γ = Σ_n s t          ∂L/∂β = Σ g
        ∂L/∂τ = Σ ∂L/∂z − Σ g                ∂L/∂ε_l = Σ_n (−½ γ s³ t) · sign(ε_l)

    x² is written into z's buffer before z; the mask is ``threshold_backward`` on z − τ
    (boolean masks and ``where`` are far slower on CPU), in place; ∂L/∂x is then written in
    place into the buffer holding g: one new tensor per direction besides ``vecdot``'s.
    """

    @staticmethod
    def forward(
        ctx: Any,
        x: torch.Tensor,
        weight: torch.Tensor | None,
        bias: torch.Tensor | None,
        tau: torch.Tensor,
        eps_l: torch.Tensor | None,
        eps: float,
    ) -> torch.Tensor:
        xf = x.reshape(x.shape[0], x.shape[1], -1)
        z = torch.empty_like(x, memory_format=torch.contiguous_format)
        zf = z.view(xf.shape)
        nu2 = torch.mul(xf, xf, out=zf).sum(2).mul_(1.0 / xf.shape[2])  # x² in z's buffer
        nu2 = nu2.add_(eps) if eps_l is None else nu2.add_(eps_l.abs().add_(eps))
        s = nu2.rsqrt_()  # (N, C)
        a = (s if weight is None else s * weight).unsqueeze(-1)
        if bias is None:
            torch.mul(xf, a, out=zf)
        else:
            torch.addcmul(bias.view(1, -1, 1), xf, a, out=zf)
        zf.clamp_min_(tau.view(1, -1, 1))
        ctx.save_for_backward(x, z, s, weight, tau, eps_l)
        ctx.set_materialize_grads(False)
        return z

    @staticmethod
    @first_order_backward("norm=frn on (N, C, H, W) inputs")
    def backward(ctx: Any, grad_z: torch.Tensor | None) -> tuple[torch.Tensor | None, ...]:
        if grad_z is None:
            return (None,) * 6
        x, z, s, weight, tau, eps_l = ctx.saved_tensors
        shape = (x.shape[0], x.shape[1], -1)
        work = torch.promote_types(x.dtype, tau.dtype)  # bf16 activations: sums in float32
        xf, dzf = x.reshape(shape).to(work), grad_z.reshape(shape).to(work)
        g = torch.sub(z.view(xf.shape), tau.view(1, -1, 1))  # buffer of g, then of ∂L/∂x
        torch.ops.aten.threshold_backward.grad_input(dzf, g, 0.0, grad_input=g)
        t = torch.linalg.vecdot(g, xf)  # (N, C)
        a = s if weight is None else s * weight  # γ s
        grad_tau = dzf.sum((0, 2))
        sum_g = g.sum((0, 2))
        grad_tau -= sum_g
        grad_w = grad_b = grad_eps = None
        if weight is not None:
            grad_w, grad_b = (s * t).sum(0), sum_g
        k = (s * s).mul_(t).mul_(a)  # γ s³ t
        if eps_l is not None:
            grad_eps = k.sum(0).mul_(-0.5).mul_(torch.sign(eps_l))
        grad_x = None
        if ctx.needs_input_grad[0]:
            grad_x = g.mul_(a.unsqueeze(-1)).addcmul_(xf, k.unsqueeze(-1), value=-1 / xf.shape[2])
            grad_x = grad_x.view(x.shape)
        return grad_x, grad_w, grad_b, grad_tau, grad_eps, None


def filter_response_norm_flat(
    x: torch.Tensor,
    weight: torch.Tensor | None,
    bias: torch.Tensor | None,
    tau: torch.Tensor,
    eps_l: torch.Tensor | None,
    eps: float,
) -> torch.Tensor:
    """FRN + TLU on (N, C): ν² = x², so z = max(γ x / sqrt(x² + ε) + β, τ) per value.

    Six ops whose backward autograd runs in C++: for small (N, C) inputs the cost is per-op
    overhead, and this beats the Python backward of the Function. max(y, τ) is computed as
    relu(y − τ) + τ (the gradient flows where y > τ, as for the Function).
    """
    eps_t = eps if eps_l is None else eps_l.abs() + eps
    y = x * torch.rsqrt(x * x + eps_t)
    y = y - tau if weight is None else torch.addcmul(bias - tau, y, weight)
    return torch.relu(y) + tau


def filter_response_norm_formula(
    x: torch.Tensor,
    weight: torch.Tensor | None,
    bias: torch.Tensor | None,
    tau: torch.Tensor,
    eps_l: torch.Tensor | None,
    eps: float,
) -> torch.Tensor:
    """FRN + TLU on (N, C, *S) as autograd ops: ν² = mean over S of x², z = max(γ x / sqrt(ν² +
    ε) + β, τ). What ``torch.compile`` traces (the Function is faster in eager mode).

    max(y, τ) is written relu(γ s x + β − τ) + τ with s = (ν² + ε)^(-1/2): the gradient flows to
    y where y > τ, as in the Function. Inductor fuses this form (its compiled time is in the
    ``frn`` rows of results/bench); written with ``torch.maximum`` or ``torch.where`` it compiled
    to code slower than eager mode on CPU (compared once, 2026-12-05)."""
    shape = (1, -1, *([1] * (x.dim() - 2)))
    nu2 = x.square().mean(dim=tuple(range(2, x.dim())), keepdim=True)
    eps_t = eps if eps_l is None else eps_l.abs().view(shape) + eps
    scale = torch.rsqrt(nu2 + eps_t)
    if weight is None:
        return torch.relu(x * scale - tau.view(shape)) + tau.view(shape)
    scale = scale * weight.view(shape)
    return torch.relu(x * scale + (bias - tau).view(shape)) + tau.view(shape)


class FilterResponseNorm(nn.Module):
    """FRN followed by the TLU max(·, τ)."""

    def __init__(
        self, num_channels: int, *, dims: int, eps: float, learnable_eps: bool, affine: bool
    ):
        super().__init__()
        self.num_channels, self.dims, self.eps, self.affine = num_channels, dims, eps, affine
        self.weight = nn.Parameter(torch.ones(num_channels)) if affine else None
        self.bias = nn.Parameter(torch.zeros(num_channels)) if affine else None
        self.tau = nn.Parameter(torch.zeros(num_channels))
        self.eps_l = nn.Parameter(torch.full((num_channels,), 1e-4)) if learnable_eps else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_slot_input(x, self.dims, self.num_channels, type(self).__name__)
        args = (x, self.weight, self.bias, self.tau, self.eps_l, self.eps)
        if x.dim() == 2:
            return filter_response_norm_flat(*args)
        if torch.compiler.is_compiling():
            # inductor fuses the plain formula; traced, the hand-written Function ran 2.6x
            # slower than eager (bench norms, CPU)
            return filter_response_norm_formula(*args)
        return FilterResponseNormFunction.apply(*args)

    def extra_repr(self) -> str:
        return (
            f"{self.num_channels}, eps={self.eps}, learnable_eps={self.eps_l is not None}, "
            f"affine={self.affine}"
        )


@dataclass(frozen=True, kw_only=True)
class FilterResponseNormSpec(NormSpec):
    """FRN + TLU in the norm slot.

    Attributes:
        eps: ε added to the mean square ν².
        learnable_eps: add a learned |ε_l| to ε (the paper's choice for 1×1 / fully connected).
        affine: learn γ and β (τ is always learned: it is the activation).
    """

    eps: float = 1e-6
    learnable_eps: bool = False
    affine: bool = True

    name = "frn"
    includes_activation = True

    def layer(self, num_channels: int, dims: int) -> nn.Module:
        check_dims(dims)
        return FilterResponseNorm(num_channels, dims=dims, **self.options())

    @property
    def has_shift(self) -> bool:
        return self.affine
