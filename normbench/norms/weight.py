"""``norm=weight``: Weight Normalization (Salimans & Kingma, NIPS 2016, arXiv 1602.07868).

Every fully connected and convolution weight is reparametrized per output unit i (torch's
``parametrizations.weight_norm``, dim 0)::

    w_i = g_i · v_i / ‖v_i‖          y = w · x + b

Data-dependent initialization (§3 of the paper), done lazily on the layer's first
training-mode forward (a persistent ``wn_initialized`` buffer, so a loaded checkpoint is not
re-initialized): with t = (v / ‖v‖) · x and μ[t], σ[t] its per-unit mean and (biased) standard
deviation over the batch (and spatial positions)::

    g ← 1 / σ[t]          b ← −μ[t] / σ[t]          (so y = (t − μ[t]) / σ[t] on that batch)

Two extensions (options; off by default):

- ``log_scale: c`` parametrizes the gain by its logarithm, g_i = exp(c · s_i), and learns s
  (the ``original0`` of the parametrization then holds s; the data-dependent init sets
  s = −ln σ[t] / c). c = 3 is the factor of OpenAI's weight-norm code (pixel-cnn++, Glow).
  A zero gain (``model.zero_init_last_norm``) is impossible in this form and refused.
- ``max_v_norm: r`` bounds the direction's norm: before each training-mode forward every
  ‖v_i‖ > r is scaled down to r (a projection; w does not change, since w depends on
  v / ‖v‖ only). The gradient of v is (g/‖v‖)(I − v̂v̂ᵀ)∇_w L: it is orthogonal to v, so
  under SGD ‖v‖ only grows and the effective step on the direction shrinks as 1/‖v‖² (the
  paper's §2.1: self-stabilization at a high learning rate); the bound removes that brake.
  torch's default init gives ‖v_i‖ ≈ 1/√3 ≈ 0.58 for every fan-in.

The data-dependent init needs more than one value per unit (batch × positions): a
fully connected layer at batch size 1 is refused with the fix (``norm.data_init=false``).

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
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import weight_norm

from normbench.errors import ConfigError
from normbench.norms.checks import (
    check_group_size,
    reduce_dims,
)
from normbench.norms.mean_batch import MeanOnlyBatchNorm
from normbench.norms.spec import IdentitySlot, NormSpec, check_dims

INIT_EPS = 1e-12


class LogScaleWeightNorm(nn.Module):
    """Parametrization (s, v) ↦ w_i = exp(c · s_i) · v_i / ‖v_i‖ (the log-scale gain)."""

    def __init__(self, c: float) -> None:
        super().__init__()
        self.c = c

    def forward(self, log_gain: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return torch._weight_norm(v, torch.exp(self.c * log_gain), 0)

    def right_inverse(self, weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.log(torch.norm_except_dim(weight, 2, 0)) / self.c, weight

    def extra_repr(self) -> str:
        return f"c={self.c}"


class DataDependentInit(nn.Module):
    """Mixin for weight-normalized layers: the paper's init on the first training forward."""

    def _setup_weight_norm(
        self, data_init: bool, log_scale: float | None = None, max_v_norm: float | None = None
    ) -> None:
        if log_scale is None:
            weight_norm(self, "weight", dim=0)
        else:
            parametrize.register_parametrization(
                self, "weight", LogScaleWeightNorm(log_scale), unsafe=True
            )
        self.log_scale, self.max_v_norm = log_scale, max_v_norm
        self.register_buffer("wn_initialized", torch.tensor(not data_init))
        self._wn_ready = not data_init  # host-side mirror: no device sync per forward
        self._wn_zero_scale = False

    def _gain_param(self, gain: torch.Tensor) -> torch.Tensor:
        """What ``original0`` holds for the gain ``gain``: g, or ln g / c with the log scale."""
        return gain if self.log_scale is None else torch.log(gain) / self.log_scale

    @torch.no_grad()
    def bound_direction(self) -> None:
        """Scale every ‖v_i‖ above ``max_v_norm`` down to it (w unchanged)."""
        v = self.parametrizations.weight.original1
        norms = v.reshape(v.shape[0], -1).norm(dim=1)
        v.mul_((self.max_v_norm / norms).clamp_(max=1.0).view(-1, *([1] * (v.dim() - 1))))

    @torch.no_grad()
    def zero_init_scale(self) -> None:
        """Start with g = 0 (and b = 0): the layer outputs zeros, as γ = 0 does in a BN slot.

        For the last layer of a residual branch (``model.zero_init_last_norm``): the block starts
        as its shortcut. With data-dependent init the zero replaces that init, on the same first
        batch, so the layers after this one initialize on what it really outputs.
        """
        if self.log_scale is not None:
            raise ConfigError(
                "norm=weight with log_scale cannot start with a zero gain (g = exp(c·s) > 0), "
                "which model.zero_init_last_norm asks for. Set model.zero_init_last_norm=false "
                "or norm.log_scale=null."
            )
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
        if t.numel() // t.shape[1] <= 1:
            raise ConfigError(
                f"norm=weight's data-dependent init sets each unit's gain from the spread of its "
                f"responses over the first batch, but {type(self).__name__} got one value per unit "
                f"(input of shape {tuple(x.shape)}). Set norm.data_init=false, or train with a "
                "batch of at least 2."
            )
        var, mean = torch.var_mean(t, dim=reduce_dims(t), correction=0)
        inv_std = torch.rsqrt(var + INIT_EPS)
        params.original0.copy_(self._gain_param(inv_std).view_as(params.original0))
        if self.bias is not None:
            self.bias.copy_(-mean * inv_std)
        self.wn_initialized.fill_(True)
        self._wn_ready = True

    def maybe_initialize(self, x: torch.Tensor) -> None:
        """Run :meth:`initialize_from` on the first training-mode batch, once; then (every
        training forward) bound ‖v‖ if asked."""
        if not self.training:
            return
        if not self._wn_ready:
            self.initialize_from(x)
        if self.max_v_norm is not None:
            self.bound_direction()


class WeightNormLinear(DataDependentInit, nn.Linear):
    """``nn.Linear`` with w = g·v/‖v‖ and data-dependent init."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        *,
        data_init: bool,
        log_scale: float | None = None,
        max_v_norm: float | None = None,
    ) -> None:
        super().__init__(in_features, out_features, bias=bias)
        self._setup_weight_norm(data_init, log_scale, max_v_norm)

    def _direction_response(self, x: torch.Tensor, direction: torch.Tensor) -> torch.Tensor:
        return F.linear(x, direction)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.maybe_initialize(x)
        return F.linear(x, self.weight, self.bias)


class WeightNormConv2d(DataDependentInit, nn.Conv2d):
    """``nn.Conv2d`` with w = g·v/‖v‖ per output channel and data-dependent init."""

    def __init__(
        self,
        *args: Any,
        data_init: bool,
        log_scale: float | None = None,
        max_v_norm: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self._setup_weight_norm(data_init, log_scale, max_v_norm)

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
        log_scale: c > 0: learn s with g = exp(c · s) (``None``: learn g itself).
        max_v_norm: r > 0: keep every ‖v_i‖ ≤ r by projection (``None``: unbounded).
        mean_only_bn: put mean-only BN (with a learned shift) in the norm slot.
        momentum: running-mean update weight of mean-only BN; ``None`` for cumulative.
        group_size: mean-only BN's mean over groups of this many consecutive samples
            (``None``: the whole batch); ``per_device`` sets it.
    """

    data_init: bool = True
    log_scale: float | None = None
    max_v_norm: float | None = None
    mean_only_bn: bool = False
    momentum: float | None = 0.1
    group_size: int | None = None

    name = "weight"

    def __post_init__(self) -> None:
        check_group_size(self.name, self.group_size)
        for key in ("log_scale", "max_v_norm"):
            value = getattr(self, key)
            if value is not None and not (isinstance(value, int | float) and value > 0):
                raise ConfigError(
                    f"norm={self.name}: {key} must be a positive number or null, got {value!r}."
                )

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
        return WEIGHT_NORM_LAYERS[kind](
            *args,
            data_init=self.data_init,
            log_scale=None if self.log_scale is None else float(self.log_scale),
            max_v_norm=None if self.max_v_norm is None else float(self.max_v_norm),
            **kwargs,
        )
