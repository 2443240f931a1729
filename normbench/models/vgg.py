"""VGG-16 with a norm slot after every convolution (Simonyan & Zisserman, ICLR 2015, arXiv 1409.1556).

Configuration D: thirteen 3×3 convolutions (padding 1) in five stages of
64, 64 | 128, 128 | 256 ×3 | 512 ×3 | 512 ×3 channels, each stage closed by a 2×2 max-pool;
every convolution is followed by the norm slot and a ReLU. This is the network of the
GroupNorm paper's VGG-16 comparison (Wu & He 2018, §5.1: no norm / BN / GN).

``features`` is a flat ``nn.Sequential`` of conv, [slot], ReLU, …, max-pool. The slot is left out
of ``features`` when the spec's slot is the identity (``norm=none``, ``norm=weight`` without
mean-only BN), so that the layout, and the state_dict names ``features.N``/``classifier.N``, are
torchvision's ``vgg16`` at ``width=1`` with the ImageNet classifier, and torchvision's
``vgg16_bn`` for every variant with a slot (``norm=batch`` loads vgg16_bn weights strictly).

Classifier (``stem``; VGG has no stem, the option names the input scale as for ResNet-50):

- ``imagenet``: adaptive average pool to 7×7, then Linear(512·7·7, 4096) → ReLU → Dropout →
  Linear(4096, 4096) → ReLU → Dropout → Linear(4096, classes), the paper's three FC layers
  (hidden size scaled by ``width`` too). No norm slot on the FC layers (as in vgg16_bn).
- ``cifar``: global average pool, then one Linear(512, classes): the usual small-image head
  (32×32 inputs are 1×1 after the five pools, so a 7×7 pool would only copy each value 49 times).
  ``dropout`` is not used by this head. Its max-pools round up (``ceil_mode``), so that 28×28
  inputs (MNIST, Fashion-MNIST) still reach 1×1 (28 → 14 → 7 → 4 → 2 → 1); sizes that are
  multiples of 32 pool exactly as with ``imagenet``, whose pools round down as torchvision's do
  (it needs inputs of at least 32×32: :func:`check_vgg16_input` says so before building).

Every weight layer, FC included, is built by the spec (so WN / WS / NormProp reach it, as in
the MLP). Initialization (:func:`~normbench.models.layers.init_weights`, shared with ResNet-50):
He (Kaiming) normal, fan-out, ReLU gain for plain convolutions, zero bias; plain FC layers
~ N(0, 0.01²) with zero bias; reparametrized layers keep their variant's initialization. A slot that carries its own nonlinearity (FRN, EvoNorm) replaces the ReLU after
it (the ReLU becomes an identity, keeping the indices).
"""

from __future__ import annotations

import torch
from torch import nn

from normbench.errors import ConfigError
from normbench.models.layers import (
    ReLU,
    activation,
    check_options,
    init_weights,
    scaled,
    weight_bias,
)
from normbench.norms.spec import NormSpec

#: Configuration D: channel counts, "M" for a 2×2 max-pool.
# fmt: off
CONFIG_D: tuple[int | str, ...] = (
    64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M",
)
# fmt: on
HIDDEN = 4096
POOL = 7


class VGG16(nn.Module):
    """VGG-16 (configuration D) with the norm slot after every convolution.

    Args:
        spec: the normalization spec (one spec per model: NormProp's is stateful).
        in_channels: image channels, from the dataset.
        num_classes: classifier outputs, from the dataset.
        width: channel multiplier on every convolution and on the FC hidden size.
        stem: ``imagenet`` (7×7 pool + three FC layers) or ``cifar`` (global pool + one FC).
        dropout: dropout probability of the ImageNet classifier's two hidden FC layers.
        bias_before_norm: keep each conv's bias even when the slot has a shift.
    """

    def __init__(
        self,
        spec: NormSpec,
        in_channels: int = 3,
        num_classes: int = 1000,
        width: float = 1.0,
        stem: str = "imagenet",
        dropout: float = 0.5,
        bias_before_norm: bool = False,
    ) -> None:
        super().__init__()
        check_options(width, stem)
        spec.check_activation("relu")
        self.width, self.stem = width, stem
        layers: list[nn.Module] = []
        channels = in_channels
        for item in CONFIG_D:
            if item == "M":
                layers.append(nn.MaxPool2d(2, stride=2, ceil_mode=stem == "cifar"))
                continue
            out = scaled(int(item), width)
            first = channels == in_channels and not layers
            bias = weight_bias(spec, bias_before_norm)
            layers.append(spec.conv(channels, out, 3, padding=1, bias=bias, input_layer=first))
            slot = spec.layer(out, dims=2)
            if isinstance(slot, nn.Identity):
                layers.append(ReLU())
            else:
                layers += [slot, activation(spec)]
            channels = out
        self.features = nn.Sequential(*layers)
        self.num_features = channels
        if stem == "imagenet":
            hidden = scaled(HIDDEN, width)
            self.avgpool = nn.AdaptiveAvgPool2d((POOL, POOL))
            self.classifier = nn.Sequential(
                spec.linear(channels * POOL * POOL, hidden),
                ReLU(),
                nn.Dropout(dropout),
                spec.linear(hidden, hidden),
                ReLU(),
                nn.Dropout(dropout),
                spec.classifier(hidden, num_classes),
            )
        else:
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            self.classifier = nn.Sequential(spec.classifier(channels, num_classes))
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def vgg16_feature_size(size: int, stem: str) -> int:
    """Spatial size of one side of a ``size``-sided input after the five max-pools."""
    for _ in range(CONFIG_D.count("M")):
        size = -(-size // 2) if stem == "cifar" else size // 2
    return size


def check_vgg16_input(height: int, width: int, stem: str) -> None:
    """Reject inputs the five max-pools would shrink to nothing, naming the fix.

    Raises:
        ConfigError: an input side shorter than 32 with ``stem=imagenet``.
    """
    if min(vgg16_feature_size(height, stem), vgg16_feature_size(width, stem)) < 1:
        raise ConfigError(
            f"model=vgg16 with stem={stem} needs inputs of at least 32×32 (five 2×2 max-pools), "
            f"but the dataset gives {height}×{width}. Use model.stem=cifar (its pools round up)."
        )


def vgg16_channels(width: float) -> list[int]:
    """Every channel count a norm slot of VGG-16 at ``width`` sees, ascending, distinct."""
    return sorted({scaled(int(c), width) for c in CONFIG_D if c != "M"})
