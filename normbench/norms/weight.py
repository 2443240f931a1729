"""``norm=weight``: Weight Normalization (Salimans & Kingma, NIPS 2016, arXiv 1602.07868).

Every fully connected and convolution weight is reparametrized per output unit i (torch's
``parametrizations.weight_norm``, dim 0)::

    w_i = g_i · v_i / ‖v_i‖          y = w · x + b

Data-dependent initialization (§3 of the paper), done lazily on the layer's first
training-mode forward (a persistent ``wn_initialized`` buffer, so a loaded checkpoint is not
re-initialized): with t = (v / ‖v‖) · x and μ[t], σ[t] its per-unit mean and (biased) standard
deviation over the batch (and spatial positions)::

    g ← 1 / σ[t]          b ← −μ[t] / σ[t]          (so y = (t − μ[t]) / σ[t] on that batch)

``mean_only_bn: true`` puts mean-only Batch Normalization in the slot (§5 of the paper; the
module of ``norm=mean_batch``, :mod:`normbench.norms.mean_batch`)::

    training: y = x − μ_B + β          eval: y = x − μ + β          (μ: running mean of μ_B)

and the weight layers then have no bias (β plays its role; their init sets only g). With
``group_size`` (images per device) μ_B is the mean of each group of ``group_size``
consecutive samples and μ is updated from the mean of the groups' means; a trailing partial
group uses its own mean and leaves μ alone. The data-dependent init is a one-time use of the
whole first batch, not a per-step batch dependence, and is not grouped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from normbench.norms.checks import (
    check_group_size,
    reduce_dims,
)
from normbench.norms.mean_batch import MeanOnlyBatchNorm
from normbench.norms.spec import IdentitySlot, NormSpec, check_dims

INIT_EPS = 1e-12


class DataDependentInit(nn.Module):
    """Mixin for weight-normalized layers: the paper's init on the first training forward."""

    def _setup_weight_norm(self, data_init: bool) -> None:
        weight_norm(self, "weight", dim=0)
        self.register_buffer("wn_initialized", torch.tensor(not data_init))
        self._wn_ready = not data_init  # host-side mirror: no device sync per forward
        self._wn_zero_scale = False

    @torch.no_grad()
    def zero_init_scale(self) -> None:
        """Start with g = 0 (and b = 0): the layer outputs zeros, as γ = 0 does in a BN slot.

        For the last layer of a residual branch (``model.zero_init_last_norm``): the block starts
        as its shortcut. With data-dependent init the zero replaces that init, on the same first
        batch, so the layers after this one initialize on what it really outputs.
        """
        self._wn_zero_scale = True
        self.parametrizations.weight.original0.zero_()
        if self.bias is not None:
            self.bias.zero_()

    def _load_from_state_dict(self, *args: object, **kwargs: object) -> None:
        super()._load_from_state_dict(*args, **kwargs)
        self._wn_ready = bool(self.wn_initialized)

    def _direction_response(self, x: torch.Tensor, direction: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def initialize_from(self, x: torch.Tensor) -> None:
        """Set g = 1/σ[t] and b = −μ[t]/σ[t] from the batch ``x`` (t the unit-norm response)."""
        params = self.parametrizations.weight
        if self._wn_zero_scale:
            self.zero_init_scale()
            self.wn_initialized.fill_(True)
            self._wn_ready = True
            return
        v = params.original1
        norms = v.reshape(v.shape[0], -1).norm(dim=1)
        t = self._direction_response(x, v / norms.view(-1, *([1] * (v.dim() - 1))))
        var, mean = torch.var_mean(t, dim=reduce_dims(t), correction=0)
        inv_std = torch.rsqrt(var + INIT_EPS)
        params.original0.copy_(inv_std.view_as(params.original0))
        if self.bias is not None:
            self.bias.copy_(-mean * inv_std)
        self.wn_initialized.fill_(True)
        self._wn_ready = True

    def maybe_initialize(self, x: torch.Tensor) -> None:
        """Run :meth:`initialize_from` on the first training-mode batch, once."""
        if self.training and not self._wn_ready:
            self.initialize_from(x)


class WeightNormLinear(DataDependentInit, nn.Linear):
    """``nn.Linear`` with w = g·v/‖v‖ and data-dependent init."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *, data_init: bool):
        super().__init__(in_features, out_features, bias=bias)
        self._setup_weight_norm(data_init)

    def _direction_response(self, x: torch.Tensor, direction: torch.Tensor) -> torch.Tensor:
        return F.linear(x, direction)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.maybe_initialize(x)
        return F.linear(x, self.weight, self.bias)


class WeightNormConv2d(DataDependentInit, nn.Conv2d):
    """``nn.Conv2d`` with w = g·v/‖v‖ per output channel and data-dependent init."""

    def __init__(self, *args: object, data_init: bool, **kwargs: object):
        super().__init__(*args, **kwargs)
        self._setup_weight_norm(data_init)

    def _direction_response(self, x: torch.Tensor, direction: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, direction, None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.maybe_initialize(x)
        return self._conv_forward(x, self.weight, self.bias)


#: The weight-normalized layer of each plain weight layer class.
WEIGHT_NORM_LAYERS: dict[type[nn.Module], type[nn.Module]] = {
    nn.Linear: WeightNormLinear,
    nn.Conv2d: WeightNormConv2d,
}


@dataclass(frozen=True, kw_only=True)
class WeightNormSpec(NormSpec):
    """Weight-normalized weight layers; identity or mean-only BN in the slot.

    Attributes:
        data_init: the paper's data-dependent init of g and b on the first training batch.
        mean_only_bn: put mean-only BN (with a learned shift) in the norm slot.
        momentum: running-mean update weight of mean-only BN; ``None`` for cumulative.
        group_size: mean-only BN's mean over groups of this many consecutive samples
            (``None``: the whole batch); ``per_device`` sets it.
    """

    data_init: bool = True
    mean_only_bn: bool = False
    momentum: float | None = 0.1
    group_size: int | None = None

    name = "weight"

    def __post_init__(self) -> None:
        check_group_size(self.name, self.group_size)

    @property
    def batch_dependent(self) -> bool:  # type: ignore[override]
        """Only mean-only BN looks at other samples (the data-dependent init is one-time)."""
        return self.mean_only_bn

    def per_device(self, images: int) -> NormSpec:
        """Mean-only BN over groups of ``images`` samples; plain weight norm unchanged."""
        return self.with_options(group_size=images) if self.mean_only_bn else self

    def layer(self, num_channels: int, dims: int) -> nn.Module:
        check_dims(dims)
        if not self.mean_only_bn:
            return IdentitySlot(num_channels, dims=dims)
        return MeanOnlyBatchNorm(
            num_channels,
            dims=dims,
            momentum=self.momentum,
            group_size=self.group_size,
            variant=self.name,
        )

    @property
    def has_shift(self) -> bool:
        return self.mean_only_bn

    def weight_layer(
        self, kind: type[nn.Linear | nn.Conv2d], input_layer: bool, *args: Any, **kwargs: Any
    ) -> nn.Module:
        """The weight-normalized ``kind``: w = g·v/‖v‖, with the data-dependent init if asked."""
        return WEIGHT_NORM_LAYERS[kind](*args, data_init=self.data_init, **kwargs)
