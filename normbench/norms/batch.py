"""``norm=batch``: Batch Normalization (Ioffe & Szegedy, ICML 2015, arXiv 1502.03167, Alg. 1-2).

Training, per channel c over the m = N·H·W values of the batch (m = N for ``dims=1``)::

    μ_B = (1/m) Σ x_i          σ²_B = (1/m) Σ (x_i − μ_B)²
    x̂_i = (x_i − μ_B) / sqrt(σ²_B + ε)          y_i = γ · x̂_i + β

Running estimates (used in eval mode), with the paper's unbiased variance::

    μ ← (1 − α) μ + α μ_B          σ² ← (1 − α) σ² + α · m/(m − 1) · σ²_B

α = ``momentum``; ``momentum: null`` makes them the cumulative average over all batches seen.

``impl=native`` calls torch's kernel. ``impl=closed_form`` is
:class:`~normbench.norms.grouped.GroupedBatchNormFunction` with one group, whose backward is
the matrix-form gradient of the paper written out, per channel (vectors over the m values, no
loop over units)::

    ∂L/∂x = (γ / sqrt(σ²_B + ε)) · (I − (1/m) 1 1ᵀ − (1/m) x̂ x̂ᵀ) · ∂L/∂y
    ∂L/∂γ = x̂ᵀ ∂L/∂y          ∂L/∂β = 1ᵀ ∂L/∂y

With images per device (``per_device``), ``norm=batch`` becomes ``norm=ghost_batch`` with
``group_size`` = images: ``impl=native`` maps to ghost's ``impl=auto`` (there is no native
ghost kernel; auto picks the faster path per device) and ``impl=closed_form`` to ghost's
``impl=closed_form``.

:class:`BatchNormBase` is the base every batch-statistics module of normbench derives from (it
is a ``torch.nn.modules.batchnorm._BatchNorm``), so ``recompute_bn_stats`` finds them all.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from normbench.errors import ConfigError
from normbench.norms.checks import check_batch_values, check_slot_input, reduce_dims
from normbench.norms.grouped import Renorm, group_count, grouped_function, grouped_mean_var
from normbench.norms.spec import NormSpec, check_dims

IMPLS = ("native", "closed_form")


def channel_view(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Reshape a per-channel vector ``t`` (C,) to broadcast against channels-first ``x``."""
    return t.view(1, -1, *([1] * (x.dim() - 2)))


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


def batch_mean_var(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel batch mean and biased variance over N (and H, W), outside autograd.

    On CPU two passes of plain sums (:func:`~normbench.norms.grouped.grouped_mean_var`) are
    several times faster than torch's Welford kernels (``var_mean``, the BN statistics op);
    elsewhere ``var_mean`` is used.
    """
    if x.device.type == "cpu":
        mean, var = grouped_mean_var(x)
        return mean[0], var[0]
    with torch.no_grad():
        var, mean = torch.var_mean(x, dim=reduce_dims(x), correction=0)
    return mean, var


class BatchNorm(BatchNormBase):
    """Batch Normalization with a choice of kernel: torch's (``native``) or the closed form."""

    variant = "batch"

    def __init__(
        self,
        num_features: int,
        *,
        dims: int,
        eps: float,
        momentum: float | None,
        affine: bool,
        impl: str,
    ) -> None:
        super().__init__(num_features, dims=dims, eps=eps, momentum=momentum, affine=affine)
        self.impl = impl

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        if self.impl == "native":
            return super().forward(x)
        if not self.uses_batch_stats():
            return self.running_affine(x)
        return self.grouped_batch_norm(x, x.shape[0], impl="closed_form")

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, impl={self.impl}"


@dataclass(frozen=True, kw_only=True)
class BatchNormSpec(NormSpec):
    """Batch Normalization in the norm slot.

    Attributes:
        momentum: running-estimate update weight α; ``None`` for the cumulative average.
        eps: ε added to the variance.
        affine: learn γ and β (``False``: the γ/β ablation).
        impl: ``native`` (torch's kernel) or ``closed_form`` (``GroupedBatchNormFunction``).
    """

    momentum: float | None = 0.1
    eps: float = 1e-5
    affine: bool = True
    impl: str = "native"

    name = "batch"
    batch_dependent = True

    def __post_init__(self) -> None:
        if self.impl not in IMPLS:
            raise ConfigError(f"norm=batch: impl={self.impl!r} is not one of {', '.join(IMPLS)}.")

    def layer(self, num_channels: int, dims: int) -> nn.Module:
        check_dims(dims)
        return BatchNorm(num_channels, dims=dims, **self.options())

    def per_device(self, images: int) -> NormSpec:
        """BN over groups of ``images`` samples: Ghost Batch Normalization, same ``impl``."""
        from normbench.norms.ghost_batch import GhostBatchNormSpec

        return GhostBatchNormSpec(
            group_size=images,
            momentum=self.momentum,
            eps=self.eps,
            affine=self.affine,
            impl="closed_form" if self.impl == "closed_form" else "auto",
        )

    @property
    def has_shift(self) -> bool:
        return self.affine
