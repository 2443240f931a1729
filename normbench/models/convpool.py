"""ConvPool-CNN-C as the Weight Normalization paper trained it (Salimans & Kingma, NIPS 2016,
arXiv 1602.07868, appendix; the network of Springenberg et al., ICLR-W 2015, arXiv 1412.6806).

The paper's CIFAR-10 network (docs/papers.md §5), at ``width=1``::

    Gaussian noise σ = 0.15 (training only)
    3×3 conv 96, pad 1      → slot → leaky ReLU      × 3
    2×2 max-pool, stride 2 ; dropout p = 0.5
    3×3 conv 192, pad 1     → slot → leaky ReLU      × 3
    2×2 max-pool, stride 2 ; dropout p = 0.5
    3×3 conv 192, no pad    → slot → leaky ReLU
    1×1 conv 192            → slot → leaky ReLU      × 2
    global average pool → dense (classes), softmax

Nine convolutions and one dense layer; leaky ReLU slope 0.1. At ``width=1`` with 3 input
channels and 10 classes the weights and biases number 1,406,794 (:func:`convpool_parameters`).
``width`` scales every channel count (0.25: 24 and 48 channels). On 28×28 inputs (Fashion-MNIST)
the maps are 28 → 14 → 7 → 5 (the unpadded conv) instead of 32 → 16 → 8 → 6.

The norm slot follows every convolution, not the dense output layer (the paper's mean-only BN
and BN sit on the hidden layers). Every weight layer, the dense one included, is built by the
spec, so Weight Normalization and NormProp reach all ten, as in the paper. Plain convolutions
are He-normal (fan-out, leaky-ReLU gain), the plain dense layer N(0, 0.01²)
(:func:`~normbench.models.layers.init_weights`); reparametrized layers keep their variant's.
"""

from __future__ import annotations

import torch
from torch import nn

from normbench.errors import ConfigError
from normbench.models.layers import activation, check_options, init_weights, scaled, weight_bias
from normbench.norms.spec import NormSpec

#: (channels, kernel, padding) of the nine convolutions; "M" a 2×2 max-pool then dropout.
LAYERS: tuple[tuple[int, int, int] | str, ...] = (
    (96, 3, 1),
    (96, 3, 1),
    (96, 3, 1),
    "M",
    (192, 3, 1),
    (192, 3, 1),
    (192, 3, 1),
    "M",
    (192, 3, 0),
    (192, 1, 0),
    (192, 1, 0),
)
NEGATIVE_SLOPE = 0.1
ACTIVATION = "leaky_relu"


class GaussianNoise(nn.Module):
    """x + σ·ε, ε ~ N(0, 1), in training mode only (the paper's input noise)."""

    def __init__(self, sigma: float) -> None:
        super().__init__()
        self.sigma = sigma

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.sigma == 0:
            return x
        return x + self.sigma * torch.randn_like(x)

    def extra_repr(self) -> str:
        return f"sigma={self.sigma}"


class ConvPoolCNNC(nn.Module):
    """ConvPool-CNN-C with the norm slot after every convolution.

    Args:
        spec: the normalization spec.
        in_channels: image channels, from the dataset.
        num_classes: outputs of the dense layer, from the dataset.
        width: channel multiplier on every convolution.
        input_noise: σ of the Gaussian noise added to the input in training (0: none).
        dropout: dropout probability after each of the two max-pools.
        bias_before_norm: keep each conv's bias even when the slot has a shift.
    """

    def __init__(
        self,
        spec: NormSpec,
        in_channels: int = 3,
        num_classes: int = 10,
        width: float = 1.0,
        input_noise: float = 0.15,
        dropout: float = 0.5,
        bias_before_norm: bool = False,
    ) -> None:
        super().__init__()
        check_options(width)
        spec.check_activation(ACTIVATION)
        self.width = width
        layers: list[nn.Module] = [GaussianNoise(float(input_noise))]
        channels = in_channels
        for item in LAYERS:
            if item == "M":
                layers += [nn.MaxPool2d(2, stride=2), nn.Dropout(dropout)]
                continue
            out, kernel, padding = item
            out = scaled(out, width)
            first = channels == in_channels
            bias = weight_bias(spec, bias_before_norm)
            layers.append(
                spec.conv(channels, out, kernel, padding=padding, bias=bias, input_layer=first)
            )
            layers += [spec.layer(out, dims=2), activation(spec, NEGATIVE_SLOPE)]
            channels = out
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = spec.classifier(channels, num_classes)
        init_weights(self, NEGATIVE_SLOPE)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


def convpool_channels(width: float) -> list[int]:
    """Every channel count a norm slot of ConvPool-CNN-C at ``width`` sees, ascending, distinct."""
    return sorted({scaled(item[0], width) for item in LAYERS if item != "M"})


def convpool_parameters(width: float, in_channels: int = 3, num_classes: int = 10) -> int:
    """Weights and biases of the plain network (no norm parameters) at ``width``."""
    total, channels = 0, in_channels
    for item in LAYERS:
        if item == "M":
            continue
        out, kernel, _ = item
        out = scaled(out, width)
        total += channels * out * kernel * kernel + out
        channels = out
    return total + channels * num_classes + num_classes


def check_convpool_input(height: int, width: int, stem: str | None = None) -> None:
    """Reject inputs too small for two 2×2 pools and the unpadded 3×3 conv (at least 12×12)."""
    if min(height, width) // 2 // 2 < 3:
        raise ConfigError(
            f"model=convpool needs inputs of at least 12×12 (two 2×2 max-pools, then an unpadded "
            f"3×3 conv), but the dataset gives {height}×{width}."
        )
