"""``norm=normprop``: Normalization Propagation (Arpit, Zhou, Kota & Govindaraju, ICML 2016).

Data-independent: no batch statistics anywhere, so it trains at batch size 1 and behaves the
same in training and eval. The input is standardized with dataset statistics (the spec sets
``standardize_input``; the engine does it). Every weight layer has unit-norm rows and, except
the first one built (which sees the standardized input), first corrects its input for the
moments of the preceding activation applied to a standard Gaussian, so that each unit's input
is again ≈ N(0, 1)::

    x' = (x − c₁) / c₂          u_i = (W_i / ‖W_i‖₂) · x' (+ b_i)          y = γ · u + β

with the rectified-Gaussian correction for ReLU (the paper's case)::

    c₁ = sqrt(1 / (2π))          c₂ = sqrt((1/2) · (1 − 1/π))

and, for the other ``activation`` choices, c₁ = E[f(z)], c₂ = sqrt(Var[f(z)]) for z ~ N(0, 1)
(sigmoid, tanh by Gauss–Hermite quadrature; identity: c₁ = 0, c₂ = 1). ‖W_i‖ is over the
fan-in (in·kh·kw for a convolution). The norm slot is the per-channel affine γ·u + β
(γ = 1, β = 0 at init). One spec builds one model: it counts the weight layers it builds.

The layer's ``weight`` is the parametrization Ŵ = W_i / (c₂ ‖W_i‖₂) (1/c₂ folded in; c₂ = 1
for the first layer), computed by :class:`UnitRowsFunction` with its gradient in closed form.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable
from torch.nn.utils import parametrize

from normbench.errors import ConfigError
from normbench.norms.batch import channel_view
from normbench.norms.spec import NormSpec, check_dims


def _gaussian_moments(fn: np.ufunc | object) -> tuple[float, float]:
    """E[f(z)] and sqrt(Var[f(z)]) for z ~ N(0, 1), by 80-point Gauss–Hermite quadrature."""
    nodes, weights = np.polynomial.hermite_e.hermegauss(80)
    weights = weights / weights.sum()
    values = fn(nodes)
    mean = float((weights * values).sum())
    return mean, float(math.sqrt((weights * (values - mean) ** 2).sum()))


ACTIVATION_MOMENTS: dict[str, tuple[float, float]] = {
    "relu": (math.sqrt(1 / (2 * math.pi)), math.sqrt(0.5 * (1 - 1 / math.pi))),
    "sigmoid": _gaussian_moments(lambda z: 1 / (1 + np.exp(-z))),
    "tanh": _gaussian_moments(np.tanh),
    "identity": (0.0, 1.0),
}


class UnitRowsFunction(torch.autograd.Function):
    """W ↦ g · W_i / ‖W_i‖₂ per row i (g a constant gain), with the gradient in closed form.

    With u_i = W_i / ‖W_i‖ and G = ∂L/∂Ŵ: ∂L/∂W_i = (g / ‖W_i‖) (G_i − u_i (u_i · G_i)).
    Four ops each way instead of ``F.normalize``'s chain and its autograd nodes (the weight
    is recomputed every step). ‖W_i‖ is clamped at 1e-12 as in ``F.normalize``.
    """

    @staticmethod
    def forward(ctx: Any, weight: torch.Tensor, gain: float) -> torch.Tensor:
        rows = weight.reshape(weight.shape[0], -1)
        inv = (rows * rows).sum(1, keepdim=True).clamp_min_(1e-24).rsqrt_()  # 1/‖W_i‖
        ctx.save_for_backward(weight, inv)
        ctx.gain = gain
        return (rows * inv.mul(gain)).view_as(weight)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        weight, inv = ctx.saved_tensors
        rows, g = weight.reshape(weight.shape[0], -1), grad.reshape(weight.shape[0], -1)
        # (g/‖W‖)·G − (g/‖W‖³)(W·G)·W
        k = (g * rows).sum(1, keepdim=True).mul_(inv.pow(3)).mul_(-ctx.gain)
        return torch.addcmul(rows * k, g, inv, value=ctx.gain).view_as(weight), None


class UnitNormRows(nn.Module):
    """Parametrization W ↦ g · W_i / ‖W_i‖₂ per output unit i (g = 1/c₂ folds the input scale)."""

    def __init__(self, gain: float = 1.0):
        super().__init__()
        self.gain = gain

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return UnitRowsFunction.apply(weight, self.gain)


class InputCorrection:
    """Mixin: (x − c₁) / c₂ on the input; the 1/c₂ is the gain of the unit-rows weight."""

    shift: float = 0.0

    def _corrected(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return (x - self.shift if self.shift else x), self.weight


class NormPropLinear(InputCorrection, nn.Linear):
    """Linear layer with unit-norm rows and the activation correction of its input."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, weight = self._corrected(x)
        return F.linear(x, weight, self.bias)


class NormPropConv2d(InputCorrection, nn.Conv2d):
    """Convolution with unit-norm filters and the activation correction of its input."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, weight = self._corrected(x)
        return self._conv_forward(x, weight, self.bias)


class ChannelAffine(nn.Module):
    """y = γ · u + β per channel (NormProp's slot)."""

    def __init__(self, num_channels: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.addcmul(channel_view(self.bias, x), x, channel_view(self.weight, x))


class NormPropSpec(NormSpec):
    """Normalization Propagation.

    Args:
        activation: the nonlinearity that follows the norm slot in the model (``relu``,
            ``sigmoid``, ``tanh`` or ``identity``); sets the input correction c₁, c₂.
        affine: learn γ and β in the slot (``False``: identity slot, weight layers keep a bias).
    """

    name = "normprop"
    standardize_input = True

    def __init__(self, activation: str = "relu", affine: bool = True):
        if activation not in ACTIVATION_MOMENTS:
            raise ConfigError(
                f"norm=normprop: activation={activation!r} is not one of "
                f"{', '.join(ACTIVATION_MOMENTS)}."
            )
        self.activation, self.affine = activation, affine
        self._built = 0

    def _finish(self, layer: InputCorrection) -> nn.Module:
        gain = 1.0
        if self._built > 0:
            layer.shift, scale = ACTIVATION_MOMENTS[self.activation]
            gain = 1.0 / scale
        self._built += 1
        parametrize.register_parametrization(layer, "weight", UnitNormRows(gain))
        return layer

    def layer(self, num_channels: int, dims: int) -> nn.Module:
        check_dims(dims)
        return ChannelAffine(num_channels) if self.affine else nn.Identity()

    @property
    def has_shift(self) -> bool:
        return self.affine

    def linear(self, in_features: int, out_features: int, bias: bool = True) -> nn.Module:
        return self._finish(NormPropLinear(in_features, out_features, bias=bias))

    def conv(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        bias: bool = True,
        groups: int = 1,
    ) -> nn.Module:
        layer = NormPropConv2d(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=padding,
            bias=bias,
            groups=groups,
        )
        return self._finish(layer)
