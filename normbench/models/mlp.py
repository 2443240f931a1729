"""Fully connected network of the BN paper's Figure 1 (Ioffe & Szegedy 2015, §4.1).

784-100-100-100-10 by default: each hidden layer is weight layer -> norm slot -> activation;
the weight layer has no bias when the norm supplies its own shift (BN's β replaces b), unless
``bias_before_norm`` keeps it (the BN paper's §2 counter-example).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.utils import parametrize

from normbench.models.layers import weight_bias
from normbench.norms.spec import NormSpec

ACTIVATIONS: dict[str, type[nn.Module]] = {"sigmoid": nn.Sigmoid, "relu": nn.ReLU, "tanh": nn.Tanh}


class HiddenLayer(nn.Module):
    """``act(norm(W u [+ b]))``: one hidden layer; ``act`` is the probed nonlinearity."""

    def __init__(
        self,
        spec: NormSpec,
        in_features: int,
        out_features: int,
        activation: str,
        input_layer: bool = False,
        bias_before_norm: bool = False,
    ) -> None:
        super().__init__()
        bias = weight_bias(spec, bias_before_norm)
        self.linear = spec.linear(in_features, out_features, bias=bias, input_layer=input_layer)
        self.norm = spec.layer(out_features, dims=1)
        # FRN and EvoNorm carry their own nonlinearity in the slot.
        self.act = nn.Identity() if spec.includes_activation else ACTIVATIONS[activation]()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.linear(x)))


class MLP(nn.Module):
    """Flatten -> hidden layers -> linear classifier."""

    def __init__(
        self,
        spec: NormSpec,
        in_features: int,
        num_classes: int,
        hidden: list[int],
        activation: str = "sigmoid",
        init_std: float | None = 0.1,
        bias_before_norm: bool = False,
    ) -> None:
        super().__init__()
        spec.check_activation(activation)
        widths = [in_features, *hidden]
        self.hidden = nn.ModuleList(
            HiddenLayer(spec, a, b, activation, i == 0, bias_before_norm)
            for i, (a, b) in enumerate(zip(widths[:-1], widths[1:], strict=True))
        )
        self.head = spec.classifier(widths[-1], num_classes)
        if init_std is not None:
            self._init_gaussian(init_std)

    def _init_gaussian(self, std: float) -> None:
        """Weights ~ N(0, std²), biases 0, for plain linear layers. Reparametrized weights
        (e.g. Weight Normalization) keep their own initialization."""
        for module in self.modules():
            if isinstance(module, nn.Linear) and not parametrize.is_parametrized(module):
                nn.init.normal_(module.weight, 0.0, std)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        for layer in self.hidden:
            x = layer(x)
        return self.head(x)


def mlp_in_features(in_shape: tuple[int, ...]) -> int:
    """Number of input features of a flattened example of shape ``in_shape``."""
    return math.prod(in_shape)
