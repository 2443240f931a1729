"""``norm=normprop``: Normalization Propagation (Arpit, Zhou, Kota & Govindaraju, ICML 2016).

Data-independent: no batch statistics anywhere, so it trains at batch size 1 and behaves the
same in training and eval. The input is standardized with dataset statistics (the spec sets
``standardize_input``; the engine does it). Every weight layer has unit-norm rows and, except
the input layer (which sees the standardized input), first corrects its input for the moments
of the preceding activation applied to a standard Gaussian, so that each unit's input is again
≈ N(0, 1)::

    x' = (x − c₁) / c₂          u_i = (W_i / ‖W_i‖₂) · x' (+ b_i)          y = γ · u + β

with the rectified-Gaussian correction for ReLU (the paper's case)::

    c₁ = sqrt(1 / (2π))          c₂ = sqrt((1/2) · (1 − 1/π))

and, for the other ``activation`` choices, c₁ = E[f(z)], c₂ = sqrt(Var[f(z)]) for z ~ N(0, 1):
leaky ReLU of slope a = 0.1 (ConvPool-CNN-C's) in closed form, c₁ = (1 − a)/√(2π),
c₂ = sqrt((1 + a²)/2 − c₁²); sigmoid and tanh by Gauss–Hermite quadrature; identity: c₁ = 0,
c₂ = 1. A model whose nonlinearity is not ``activation`` is refused
(:meth:`NormPropSpec.check_activation`). ‖W_i‖ is over the
fan-in (in·kh·kw for a convolution). The norm slot is the per-channel affine γ·u + β
(γ = 1, β = 0 at init).

Each weight layer holds its own correction (``shift`` = c₁, and 1/c₂ in its weight's gain),
set when it is built from ``input_layer``: the model marks the layer that reads the network
input with ``spec.linear(..., input_layer=True)`` / ``spec.conv(..., input_layer=True)``.
Every other weight layer (``input_layer`` false or left out) is corrected. The spec counts
nothing: layers may be built in any order, and one spec may build any number of models.

The layer's ``weight`` is the parametrization Ŵ = W_i / (c₂ ‖W_i‖₂) (1/c₂ folded in; c₂ = 1
for the input layer), computed by :class:`UnitRowsFunction` with its gradient in closed form.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from normbench.errors import ConfigError
from normbench.norms.checks import channel_view, check_slot_input
from normbench.norms.first_order import first_order_backward
from normbench.norms.spec import IdentitySlot, NormSpec, check_dims


def _gaussian_moments(fn: np.ufunc | object) -> tuple[float, float]:
    """E[f(z)] and sqrt(Var[f(z)]) for z ~ N(0, 1), by 80-point Gauss–Hermite quadrature."""
    nodes, weights = np.polynomial.hermite_e.hermegauss(80)
    weights = weights / weights.sum()
    values = fn(nodes)
    mean = float((weights * values).sum())
    return mean, float(math.sqrt((weights * (values - mean) ** 2).sum()))


LEAKY_SLOPE = 0.1
_LEAKY_MEAN = (1 - LEAKY_SLOPE) / math.sqrt(2 * math.pi)

ACTIVATION_MOMENTS: dict[str, tuple[float, float]] = {
    "relu": (math.sqrt(1 / (2 * math.pi)), math.sqrt(0.5 * (1 - 1 / math.pi))),
    "leaky_relu": (_LEAKY_MEAN, math.sqrt((1 + LEAKY_SLOPE**2) / 2 - _LEAKY_MEAN**2)),
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
    @first_order_backward("norm=normprop")
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

    def extra_repr(self) -> str:
        return f"gain={self.gain}"


class InputCorrection:
    """Mixin: (x − c₁) / c₂ on the input; the 1/c₂ is the gain of the unit-rows weight."""

    shift: float = 0.0

    def _setup_normprop(self, activation: str, input_layer: bool) -> None:
        """Unit-norm rows, and the correction for ``activation`` unless this is the input layer."""
        self.activation, self.input_layer = activation, input_layer
        gain = 1.0
        if not input_layer:
            self.shift, scale = ACTIVATION_MOMENTS[activation]
            gain = 1.0 / scale
        parametrize.register_parametrization(self, "weight", UnitNormRows(gain))

    def _corrected(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return (x - self.shift if self.shift else x), self.weight

    def _correction_repr(self) -> str:
        return "input_layer=True" if self.input_layer else f"corrected_for={self.activation}"


class NormPropLinear(InputCorrection, nn.Linear):
    """Linear layer with unit-norm rows and the activation correction of its input."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        *,
        activation: str,
        input_layer: bool,
    ):
        super().__init__(in_features, out_features, bias=bias)
        self._setup_normprop(activation, input_layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, weight = self._corrected(x)
        return F.linear(x, weight, self.bias)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, {self._correction_repr()}"


class NormPropConv2d(InputCorrection, nn.Conv2d):
    """Convolution with unit-norm filters and the activation correction of its input."""

    def __init__(self, *args: Any, activation: str, input_layer: bool, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._setup_normprop(activation, input_layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, weight = self._corrected(x)
        return self._conv_forward(x, weight, self.bias)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, {self._correction_repr()}"


#: The NormProp layer of each plain weight layer class.
NORMPROP_LAYERS: dict[type[nn.Module], type[nn.Module]] = {
    nn.Linear: NormPropLinear,
    nn.Conv2d: NormPropConv2d,
}


class ChannelAffine(nn.Module):
    """y = γ · u + β per channel (NormProp's slot)."""

    def __init__(self, num_channels: int, *, dims: int):
        super().__init__()
        self.num_channels, self.dims = num_channels, dims
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_slot_input(x, self.dims, self.num_channels, type(self).__name__)
        return torch.addcmul(channel_view(self.bias, x), x, channel_view(self.weight, x))

    def extra_repr(self) -> str:
        return f"{self.num_channels}, dims={self.dims}"


@dataclass(frozen=True, kw_only=True)
class NormPropSpec(NormSpec):
    """Normalization Propagation.

    Attributes:
        activation: the nonlinearity that follows the norm slot in the model (``relu``,
            ``leaky_relu`` (slope 0.1), ``sigmoid``, ``tanh`` or ``identity``); sets the input
            correction c₁, c₂. The model checks it (:meth:`check_activation`).
        affine: learn γ and β in the slot (``False``: identity slot, weight layers keep a bias).
    """

    activation: str = "relu"
    affine: bool = True

    name = "normprop"
    standardize_input = True

    def __post_init__(self) -> None:
        if self.activation not in ACTIVATION_MOMENTS:
            raise ConfigError(
                f"norm=normprop: activation={self.activation!r} is not one of "
                f"{', '.join(ACTIVATION_MOMENTS)}."
            )

    def check_activation(self, activation: str) -> None:
        """The input correction is for :attr:`activation`: refuse a model with another one."""
        if activation != self.activation:
            raise ConfigError(
                f"norm=normprop corrects each layer's input for activation={self.activation!r}, "
                f"but this model's nonlinearity is {activation!r}. Set "
                f"norm.activation={activation}."
            )

    def layer(self, num_channels: int, dims: int) -> nn.Module:
        check_dims(dims)
        if self.affine:
            return ChannelAffine(num_channels, dims=dims)
        return IdentitySlot(num_channels, dims=dims)

    @property
    def has_shift(self) -> bool:
        return self.affine

    def weight_layer(
        self, kind: type[nn.Linear | nn.Conv2d], input_layer: bool, *args: Any, **kwargs: Any
    ) -> nn.Module:
        """``kind`` with unit-norm rows, corrected for :attr:`activation` unless ``input_layer``."""
        layer = NORMPROP_LAYERS[kind]
        return layer(*args, activation=self.activation, input_layer=bool(input_layer), **kwargs)
