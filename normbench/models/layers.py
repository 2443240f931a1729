"""Pieces shared by the CNNs (ResNet-50, VGG-16): width scaling, option checks, the ReLU after a
norm slot, and the initialization of plain weight layers.

Initialization (:func:`init_weights`): every plain ``nn.Conv2d`` is He (Kaiming) normal with
fan-out and the ReLU gain, std = √(2 / (out_channels · k_h · k_w)), zero bias; every plain
``nn.Linear`` is N(0, :data:`CLASSIFIER_STD`²) with zero bias. Weight layers that the spec
reparametrizes (Weight Normalization, Weight Standardization, NormProp) keep the
initialization of their variant; norm slots keep their own (γ = 1, β = 0).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from normbench.errors import ConfigError
from normbench.norms.spec import NormSpec

STEMS = ("imagenet", "cifar")
#: Standard deviation of the initial weights of plain fully connected layers.
CLASSIFIER_STD = 0.01


def scaled(channels: int, width: float) -> int:
    """``channels · width`` rounded to the nearest integer, at least 1."""
    return max(1, round(channels * width))


def weight_bias(spec: NormSpec, bias_before_norm: bool) -> bool:
    """Whether a weight layer before a norm slot has a bias: when the slot adds no shift of its
    own (BN's β replaces b), or when ``model.bias_before_norm`` keeps it anyway (the BN paper's
    §2 counter-example, where the slot's statistics are detached)."""
    return bias_before_norm or not spec.has_shift


def check_options(width: float, stem: str | None = None) -> None:
    """Reject a non-positive width or an unknown stem (``None``: the model has no stem option)
    with a message naming the fix."""
    if not isinstance(width, int | float) or isinstance(width, bool) or width <= 0:
        raise ConfigError(f"model.width={width!r} must be a positive number (1.0: full width).")
    if stem is not None and stem not in STEMS:
        raise ConfigError(f"model.stem={stem!r} is not one of {', '.join(STEMS)}.")


class ReLU(nn.ReLU):
    """ReLU computed in place (as torchvision's networks do: about 7% of ResNet-50's CPU forward
    time, see ``results/bench/README.md``), except while a hook watches the module: the
    activation probes' pre-hooks keep a reference to the input, which must stay the pre-activation.
    """

    def __init__(self) -> None:
        super().__init__(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        watched = bool(self._forward_pre_hooks or self._forward_hooks)
        return F.relu(x, inplace=not watched)


class LeakyReLU(nn.LeakyReLU):
    """Leaky ReLU, in place unless a hook watches the module (see :class:`ReLU`)."""

    def __init__(self, negative_slope: float) -> None:
        super().__init__(negative_slope, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        watched = bool(self._forward_pre_hooks or self._forward_hooks)
        return F.leaky_relu(x, self.negative_slope, inplace=not watched)


def activation(spec: NormSpec, negative_slope: float = 0.0) -> nn.Module:
    """The ReLU (leaky with ``negative_slope`` > 0) after a norm slot, or an identity when the
    slot carries its own nonlinearity."""
    if spec.includes_activation:
        return nn.Identity()
    return LeakyReLU(negative_slope) if negative_slope else ReLU()


@torch.no_grad()
def init_weights(model: nn.Module, negative_slope: float = 0.0) -> None:
    """Initialize the plain conv and linear layers of ``model`` (see the module docstring).

    ``negative_slope`` > 0: the convolutions' gain is the leaky ReLU's, √(2 / (1 + slope²)).
    Modules are visited in ``model.modules()`` order, so a seed gives the same weights.
    """
    for module in model.modules():
        if parametrize.is_parametrized(module):
            continue  # WN / WS / NormProp keep their variant's initialization
        if isinstance(module, nn.Conv2d):
            if negative_slope:
                nn.init.kaiming_normal_(
                    module.weight, negative_slope, mode="fan_out", nonlinearity="leaky_relu"
                )
            else:
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, 0.0, CLASSIFIER_STD)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
