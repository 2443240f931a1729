"""``norm=ws_group``: Weight Standardization with Group Normalization (Qiao et al., arXiv 1903.10520).

Every convolution and hidden fully connected weight is standardized per output unit i over its
fan-in (in·kh·kw values), as a torch parametrization, so the optimizer sees W and the layer
uses Ŵ::

    Ŵ_i = (W_i − mean(W_i)) / sqrt(var(W_i) + ε_ws)          (biased variance)

The output layer (``classifier``) stays a plain linear layer. The norm slot is Group
Normalization (``norm=group``: Wu & He 2018) with ``num_groups`` and ``eps``. Ŵ is computed with torch's native layer-norm kernel on the (out, fan-in) view of W.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from normbench.norms.group import GroupNormSpec


class WeightStandardization(nn.Module):
    """Parametrization W ↦ (W − mean) / sqrt(var + ε) per output unit (row of the fan-in view)."""

    def __init__(self, eps: float):
        super().__init__()
        self.eps = eps

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        rows = weight.reshape(weight.shape[0], -1)
        return F.layer_norm(rows, rows.shape[1:], eps=self.eps).view_as(weight)


def standardize_weight(layer: nn.Module, eps: float) -> nn.Module:
    """Register :class:`WeightStandardization` on ``layer.weight`` and return the layer."""
    parametrize.register_parametrization(layer, "weight", WeightStandardization(eps))
    return layer


@dataclass(frozen=True, kw_only=True)
class WSGroupNormSpec(GroupNormSpec):
    """Weight-standardized weight layers and Group Normalization in the slot.

    Attributes:
        num_groups: G of the GN slot; must divide the channel count of every layer.
        eps: ε of GN.
        affine: learn GN's per-channel γ and β.
        ws_eps: ε of the weight standardization.
    """

    ws_eps: float = 1e-5

    name = "ws_group"

    def weight_layer(
        self, kind: type[nn.Linear | nn.Conv2d], input_layer: bool, *args: Any, **kwargs: Any
    ) -> nn.Module:
        """The plain ``kind`` with its weight standardized (a parametrization)."""
        layer = super().weight_layer(kind, input_layer, *args, **kwargs)
        return standardize_weight(layer, self.ws_eps)

    def classifier(
        self, in_features: int, num_classes: int, *, input_layer: bool = False
    ) -> nn.Module:
        """The output layer stays plain: the paper standardizes the convolutions, and a
        standardized output layer could not scale its logits."""
        return nn.Linear(in_features, num_classes)
