"""ResNet-50 with any normalization in its slots (He, Zhang, Ren & Sun, CVPR 2016, arXiv 1512.03385).

Bottleneck blocks, [3, 4, 6, 3] per stage, expansion 4; the stride of a down-sampling block sits
on its 3×3 convolution (the "v1.5" / torchvision layout: the GroupNorm paper's PyTorch-style
ResNet, see docs/papers.md §2.5). Each block is::

    x → conv1 1×1 → bn1 → relu1 → conv2 3×3 (stride) → bn2 → relu2 → conv3 1×1 → bn3 ─┐
    x → [downsample: conv 1×1 (stride) → norm] ──────────────────────────────────────(+)→ relu3

At ``width=1`` with ``stem="imagenet"``, ``norm=batch`` and 1000 classes, parameter and buffer
names and shapes are torchvision's ``resnet50`` (``conv1, bn1, layer1.0.conv1, …,
layer1.0.downsample.0/1, fc``): its state_dict loads with ``strict=True``.

Options:

- ``width``: multiplier on every channel count (``round(64·width)`` stem channels,
  ``round(64·2^i·width)`` bottleneck channels in stage i, four times that out of each block).
  Grouped slots (``norm=group``/``ws_group``, EvoNorm-S0) need their group count to divide every
  one of these; the spec's own check raises a :class:`~normbench.errors.ConfigError` naming the
  layer's channel count, and :func:`build_resnet50` adds the model's channel counts to it.
- ``stem``: ``imagenet`` (7×7 stride-2 conv, norm, ReLU, 3×3 stride-2 max-pool) or ``cifar``
  (3×3 stride-1 conv, norm, ReLU, no pool) for 32×32-scale inputs.
- ``zero_init_last_norm``: γ = 0 in the last norm slot (``bn3``) of every block, so each block
  starts as ``relu(shortcut(x))`` (Wu & He 2018, §4 "Implementation details"; Goyal et al. 2017).
  It sets the slot's ``weight`` parameter. With ``norm=weight`` the slot has no γ and the scale
  is the last conv's g (w = g·v/‖v‖), so g = 0 there (and b = 0), in place of the data-dependent
  init; without it a 50-layer WN ResNet diverges in its first SGD steps even at lr 0.001 (each
  block's data-initialized output adds unit variance to the residual stream). Slots without a
  scale in a plain conv network (``norm=none``, ``affine: false``) are left as they are.

Initialization: :func:`~normbench.models.layers.init_weights` (shared with VGG-16): He
(Kaiming) normal, fan-out, ReLU gain for every plain convolution; the classifier ~ N(0, 0.01²)
with zero bias; norm slots keep their own (γ = 1, β = 0). Weight layers that the spec
reparametrizes (Weight Normalization, Weight Standardization, NormProp) keep the initialization
of their variant, as in the MLP.

Slots that contain their own nonlinearity (``spec.includes_activation``: FRN+TLU, EvoNorm) take
the place of ``relu1``/``relu2`` (which become identities). The ReLU after the residual sum is
the block's own and stays; ``bn3`` and the shortcut's norm, which have no ReLU after them in the
BN network, still apply the slot's nonlinearity (the spec has no activation-free form).
ReLUs are separate modules (so the activation probes see each one's input), computed in place
unless a hook watches them (:class:`~normbench.models.layers.ReLU`).
"""

from __future__ import annotations

import torch
from torch import nn

from normbench.models.layers import (
    ReLU,
    activation,
    check_options,
    init_weights,
    scaled,
    weight_bias,
)
from normbench.norms.spec import NormSpec

STAGES = (3, 4, 6, 3)
EXPANSION = 4


class Bottleneck(nn.Module):
    """1×1 reduce → 3×3 (carries the stride) → 1×1 expand, each followed by a norm slot."""

    def __init__(
        self,
        spec: NormSpec,
        in_channels: int,
        planes: int,
        stride: int = 1,
        bias_before_norm: bool = False,
    ) -> None:
        super().__init__()
        out_channels = planes * EXPANSION
        bias = weight_bias(spec, bias_before_norm)
        # Built in forward order (NormProp's spec counts the weight layers it builds).
        self.conv1 = spec.conv(in_channels, planes, 1, bias=bias)
        self.bn1 = spec.layer(planes, dims=2)
        self.relu1 = activation(spec)
        self.conv2 = spec.conv(planes, planes, 3, stride=stride, padding=1, bias=bias)
        self.bn2 = spec.layer(planes, dims=2)
        self.relu2 = activation(spec)
        self.conv3 = spec.conv(planes, out_channels, 1, bias=bias)
        self.bn3 = spec.layer(out_channels, dims=2)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                spec.conv(in_channels, out_channels, 1, stride=stride, bias=bias),
                spec.layer(out_channels, dims=2),
            )
        self.relu3 = ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.relu2(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu3(out + shortcut)


class ResNet50(nn.Module):
    """ResNet-50: stem, four stages of bottlenecks, global average pool, linear classifier.

    Args:
        spec: the normalization spec (one spec per model: NormProp's is stateful).
        in_channels: image channels, from the dataset.
        num_classes: classifier outputs, from the dataset.
        width: channel multiplier (1.0: the paper's network).
        stem: ``imagenet`` or ``cifar`` (see the module docstring).
        zero_init_last_norm: γ = 0 in each block's last norm slot, when it has a γ (Weight
            Norm: the last conv's g).
        bias_before_norm: keep each conv's bias even when the slot has a shift.
    """

    def __init__(
        self,
        spec: NormSpec,
        in_channels: int = 3,
        num_classes: int = 1000,
        width: float = 1.0,
        stem: str = "imagenet",
        zero_init_last_norm: bool = True,
        bias_before_norm: bool = False,
    ) -> None:
        super().__init__()
        check_options(width, stem)
        spec.check_activation("relu")
        self.width, self.stem = width, stem
        stem_channels = scaled(64, width)
        bias = weight_bias(spec, bias_before_norm)
        if stem == "imagenet":
            self.conv1 = spec.conv(
                in_channels, stem_channels, 7, stride=2, padding=3, bias=bias, input_layer=True
            )
        else:
            self.conv1 = spec.conv(
                in_channels, stem_channels, 3, stride=1, padding=1, bias=bias, input_layer=True
            )
        self.bn1 = spec.layer(stem_channels, dims=2)
        self.relu = activation(spec)
        self.maxpool: nn.Module = (
            nn.MaxPool2d(3, stride=2, padding=1) if stem == "imagenet" else nn.Identity()
        )
        channels = stem_channels
        for i, depth in enumerate(STAGES):
            planes = scaled(64 * 2**i, width)
            blocks = []
            for j in range(depth):
                stride = 2 if i > 0 and j == 0 else 1
                blocks.append(Bottleneck(spec, channels, planes, stride, bias_before_norm))
                channels = planes * EXPANSION
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = spec.classifier(channels, num_classes)
        self.num_features = channels
        self._initialize(zero_init_last_norm)

    def _initialize(self, zero_init_last_norm: bool) -> None:
        init_weights(self)
        if zero_init_last_norm:
            for block in self.blocks():
                zero_scale(block.bn3, block.conv3)

    def blocks(self) -> list[Bottleneck]:
        """Every bottleneck block, in forward order."""
        return [m for m in self.modules() if isinstance(m, Bottleneck)]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The last stage's feature map (N, 2048·width, H/32, W/32 for the ImageNet stem)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for stage in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = stage(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.avgpool(self.forward_features(x)), 1))


@torch.no_grad()
def zero_scale(norm: nn.Module, weight_layer: nn.Module) -> bool:
    """Start a residual branch at 0 through its scale; return whether it had one.

    The scale is the norm slot's γ (its ``weight`` parameter) or, for a slot without one, the
    gain g of a reparametrized weight layer before it (Weight Norm's ``zero_init_scale``).
    """
    weight = getattr(norm, "weight", None)
    if isinstance(weight, nn.Parameter):
        weight.zero_()
        return True
    if hasattr(weight_layer, "zero_init_scale"):
        weight_layer.zero_init_scale()
        return True
    return False


def resnet50_channels(width: float) -> list[int]:
    """Every channel count a norm slot of ResNet-50 at ``width`` sees, ascending, distinct."""
    stem = scaled(64, width)
    planes = [scaled(64 * 2**i, width) for i in range(len(STAGES))]
    return sorted({stem, *planes, *(p * EXPANSION for p in planes)})
