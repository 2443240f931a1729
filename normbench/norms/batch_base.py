"""The bases of normbench's batch-statistics variants: :class:`BatchNormBase` for their modules
(BN, Batch Renorm, ghost BN, BN with detached statistics, mean-only BN, EvoNorm-B0 ...), and
:class:`BatchStatsSpec` / :class:`GroupedBatchStatsSpec` for the specs of the variants whose slot
is such a module with BN's options.

:class:`BatchNormBase` is a ``torch.nn.modules.batchnorm._BatchNorm``, so ``recompute_bn_stats``
finds every such module: channels-first inputs of a given rank, the batch-of-one check, the
running-estimate update of Ioffe & Szegedy (2015) with the unbiased variance, and BN over groups
of consecutive samples through :func:`~normbench.norms.grouped.grouped_function`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from normbench.norms.checks import check_batch_values, check_group_size, check_slot_input
from normbench.norms.grouped import Renorm, group_count, grouped_function
from normbench.norms.spec import NormSpec, check_dims


class BatchNormBase(_BatchNorm):
    """Channels-first BN of (N, C) (``dims=1``) or (N, C, H, W) (``dims=2``) inputs, with the
    batch-of-one check.

    Subclasses honour torch's convention: in training mode the batch statistics are used, and
    the running buffers are updated only when ``track_running_stats`` is true (statistics
    procedures turn it off to normalize with batch statistics without touching the buffers).
    """

    variant = "batch"

    def __init__(
        self, num_features: int, *, dims: int, eps: float, momentum: float | None, affine: bool
    ) -> None:
        super().__init__(num_features, eps=eps, momentum=momentum, affine=affine)
        self.dims = dims

    def _check_input_dim(self, input: torch.Tensor) -> None:  # noqa: A002 (torch's name)
        check_slot_input(input, self.dims, self.num_features, type(self).__name__)

    def uses_batch_stats(self) -> bool:
        """Whether this forward normalizes with batch statistics (training, or no buffers)."""
        return self.training or self.running_mean is None

    def check_input(self, x: torch.Tensor) -> None:
        """Input rank/channels, and more than one value per channel when batch stats are used."""
        self._check_input_dim(x)
        if self.uses_batch_stats():
            check_batch_values(x, self.variant)

    def running_factor(self) -> float | None:
        """Count this batch and return the update weight α, or None when buffers stay untouched."""
        if not (self.training and self.track_running_stats and self.running_mean is not None):
            return None
        self.num_batches_tracked.add_(1)
        if self.momentum is None:
            return 1.0 / float(self.num_batches_tracked)
        return float(self.momentum)

    @torch.no_grad()
    def update_running(
        self, mean: torch.Tensor, var_biased: torch.Tensor, count: int, factor: float
    ) -> None:
        """μ ← (1−α)μ + α μ_B and σ² ← (1−α)σ² + α m/(m−1) σ²_B (the paper's unbiased variance)."""
        unbiased = var_biased * (count / max(count - 1, 1))
        if mean.dtype != self.running_mean.dtype:
            mean, unbiased = mean.to(self.running_mean.dtype), unbiased.to(self.running_var.dtype)
        self.running_mean.lerp_(mean, factor)
        self.running_var.lerp_(unbiased, factor)

    def grouped_batch_norm(
        self,
        x: torch.Tensor,
        size: int,
        renorm: Renorm | None = None,
        detached: bool = False,
        impl: str = "auto",
    ) -> torch.Tensor:
        """Training-mode BN of ``x`` over groups of ``size`` consecutive samples.

        Complete groups update the running estimates with the mean of their statistics (each
        variance made unbiased); a trailing partial group is normalized by its own statistics
        and leaves them alone. ``renorm`` and ``detached``: see ``GroupedBatchNormFunction``;
        ``impl``: see :func:`~normbench.norms.grouped.grouped_function`.
        """
        n = x.shape[0]
        groups, rest = group_count(n, size)
        check_batch_values(x, self.variant, size)
        factor = self.running_factor()
        running = None if factor is None else (self.running_mean, self.running_var, factor)
        function = grouped_function(x, impl, groups)
        args = (self.weight, self.bias, self.eps)
        if not rest:
            return function.apply(x, *args, groups, renorm, detached, running)
        check_batch_values(x[n - rest :], self.variant)
        head = function.apply(x[: n - rest], *args, groups, renorm, detached, running)
        tail = function.apply(x[n - rest :], *args, 1, renorm, detached)
        return torch.cat([head, tail])

    def running_affine(self, x: torch.Tensor) -> torch.Tensor:
        """Eval-mode output γ (x − μ)/sqrt(σ² + ε) + β with the running estimates (native kernel)."""
        return F.batch_norm(
            x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps
        )


@dataclass(frozen=True, kw_only=True)
class BatchStatsSpec(NormSpec):
    """Base spec of the variants whose slot normalizes with batch statistics and keeps running
    estimates: BN's options, the slot :attr:`norm_module` built with every option, a learned
    shift when ``affine``. Subclasses set :attr:`norm_module` and add their own options.

    Attributes:
        momentum: running-estimate update weight α; ``None`` for the cumulative average.
        eps: ε added to the variance.
        affine: learn γ and β (``False``: the γ/β ablation).
    """

    momentum: float | None = 0.1
    eps: float = 1e-5
    affine: bool = True

    batch_dependent = True
    #: The slot's module, called as ``norm_module(num_channels, dims=dims, **spec.options())``.
    norm_module: ClassVar[Callable[..., nn.Module]]

    def layer(self, num_channels: int, dims: int) -> nn.Module:
        check_dims(dims)
        return self.norm_module(num_channels, dims=dims, **self.options())

    @property
    def has_shift(self) -> bool:
        return self.affine


@dataclass(frozen=True, kw_only=True)
class GroupedBatchStatsSpec(BatchStatsSpec):
    """A :class:`BatchStatsSpec` whose statistics may be those of groups of consecutive samples.

    Attributes:
        group_size: samples per statistics group (``None``: the whole batch); ``per_device(N)``
            sets it to N.
    """

    group_size: int | None = None

    def __post_init__(self) -> None:
        check_group_size(self.name, self.group_size)

    def per_device(self, images: int) -> NormSpec:
        """The same variant with its statistics over groups of ``images`` samples."""
        return self.with_options(group_size=images)
