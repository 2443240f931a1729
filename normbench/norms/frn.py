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

import torch
from torch import nn

from normbench.norms.spec import NormSpec, check_dims


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
        shape = (1, -1, *([1] * (x.dim() - 2)))
        nu2 = (
            x.square().mean(dim=tuple(range(2, x.dim())), keepdim=True)
            if x.dim() > 2
            else x.square()
        )
        eps = self.eps if self.eps_l is None else self.eps + self.eps_l.abs().view(shape)
        y = x * torch.rsqrt(nu2 + eps)
        if self.weight is not None:
            y = torch.addcmul(self.bias.view(shape), y, self.weight.view(shape))
        return torch.maximum(y, self.tau.view(shape))

    def extra_repr(self) -> str:
        return f"{self.num_channels}, eps={self.eps}, learnable_eps={self.eps_l is not None}, affine={self.affine}"


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
