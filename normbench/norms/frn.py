"""``norm=frn``: Filter Response Normalization with a Thresholded Linear Unit.

Singh & Krishnan, CVPR 2020 (arXiv 1911.09737), Eq. 1-3. Per sample n and channel c, over the
H·W spatial values of that channel (no mean subtraction, no batch dependence)::

    ν² = (1/(H·W)) Σ_{h,w} x²          x̂ = x / sqrt(ν² + ε)
    y = γ · x̂ + β          z = max(y, τ)          (γ, β, τ per channel)

For (N, C) inputs (``dims=1``) ν² = x² and x̂ ≈ sign(x); the paper then learns ε:
``learnable_eps: true`` uses ε + |ε_l| with ε_l a parameter initialised to 1e-4.
The TLU replaces the activation (``spec.includes_activation``).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torch.autograd.function import once_differentiable

from normbench.norms.batch import channel_view
from normbench.norms.spec import NormSpec, check_dims


class FilterResponseNormFunction(torch.autograd.Function):
    """FRN + TLU with its backward written out (three passes forward, six backward).

    With s = (ν² + ε)^(-1/2), g = ∂L/∂z · [y > τ], t = Σ_{h,w} g·x and m = H·W::

        ∂L/∂x = γ s g − γ s³ x t / m          ∂L/∂γ = Σ_n s t          ∂L/∂β = Σ g
        ∂L/∂τ = Σ ∂L/∂z − Σ g                ∂L/∂ε = Σ_n (−½ γ s³ t)
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
        spatial = tuple(range(2, x.dim()))
        nu2 = x.square().mean(spatial, keepdim=True) if spatial else x.square()
        eps_t = eps if eps_l is None else channel_view(eps_l.abs(), x) + eps
        s = torch.rsqrt(nu2 + eps_t)
        if weight is not None:
            z = torch.addcmul(channel_view(bias, x), x, s * channel_view(weight, x))
        else:
            z = x * s
        z = torch.maximum(z, channel_view(tau, x), out=z)
        ctx.save_for_backward(x, z, s, weight, tau, eps_l)
        return z

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_z: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, z, s, weight, tau, eps_l = ctx.saved_tensors
        spatial = tuple(range(2, x.dim()))
        dims = (0, *spatial)
        m = math.prod(x.shape[2:])
        g = torch.where(z > channel_view(tau, x), grad_z, 0.0)
        t = (g * x).sum(spatial, keepdim=True) if spatial else g * x
        gs = s if weight is None else s * channel_view(weight, x)  # γ s per (n, c)
        grad_x = torch.addcmul(x * (-gs * s.square() * t / m), g, gs)
        sum_g = g.sum(dims)
        grad_tau = grad_z.sum(dims) - sum_g
        grad_w = grad_b = grad_eps = None
        if weight is not None:
            grad_w, grad_b = (s * t).sum(dims), sum_g
        if eps_l is not None:
            grad_eps = (-0.5 * gs * s.square() * t).sum(dims) * torch.sign(eps_l)
        return grad_x, grad_w, grad_b, grad_tau, grad_eps, None


class FilterResponseNorm(nn.Module):
    """FRN followed by the TLU max(·, τ)."""

    def __init__(
        self, num_channels: int, eps: float = 1e-6, learnable_eps: bool = False, affine: bool = True
    ):
        super().__init__()
        self.num_channels, self.eps, self.affine = num_channels, eps, affine
        self.weight = nn.Parameter(torch.ones(num_channels)) if affine else None
        self.bias = nn.Parameter(torch.zeros(num_channels)) if affine else None
        self.tau = nn.Parameter(torch.zeros(num_channels))
        self.eps_l = nn.Parameter(torch.full((num_channels,), 1e-4)) if learnable_eps else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return FilterResponseNormFunction.apply(
            x, self.weight, self.bias, self.tau, self.eps_l, self.eps
        )

    def extra_repr(self) -> str:
        return (
            f"{self.num_channels}, eps={self.eps}, learnable_eps={self.eps_l is not None}, "
            f"affine={self.affine}"
        )


class FilterResponseNormSpec(NormSpec):
    """FRN + TLU in the norm slot.

    Args:
        eps: ε added to the mean square ν².
        learnable_eps: add a learned |ε_l| to ε (the paper's choice for 1×1 / fully connected).
        affine: learn γ and β (τ is always learned: it is the activation).
    """

    name = "frn"
    includes_activation = True

    def __init__(self, eps: float = 1e-6, learnable_eps: bool = False, affine: bool = True):
        self.eps, self.learnable_eps, self.affine = eps, learnable_eps, affine

    def layer(self, num_channels: int, dims: int) -> nn.Module:
        check_dims(dims)
        return FilterResponseNorm(num_channels, self.eps, self.learnable_eps, self.affine)

    @property
    def has_shift(self) -> bool:
        return self.affine
