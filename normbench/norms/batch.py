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

The base every batch-statistics module derives from is
:class:`~normbench.norms.batch_base.BatchNormBase`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from normbench.errors import ConfigError
from normbench.norms.batch_base import BatchNormBase, BatchStatsSpec
from normbench.norms.checks import reduce_dims
from normbench.norms.ghost_batch import GhostBatchNormSpec
from normbench.norms.grouped import grouped_mean_var
from normbench.norms.spec import NormSpec

IMPLS = ("native", "closed_form")


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
class BatchNormSpec(BatchStatsSpec):
    """Batch Normalization in the norm slot.

    Attributes:
        momentum, eps, affine: see :class:`~normbench.norms.batch_base.BatchStatsSpec`.
        impl: ``native`` (torch's kernel) or ``closed_form`` (``GroupedBatchNormFunction``).
    """

    impl: str = "native"

    name = "batch"
    norm_module = BatchNorm

    def __post_init__(self) -> None:
        if self.impl not in IMPLS:
            raise ConfigError(f"norm=batch: impl={self.impl!r} is not one of {', '.join(IMPLS)}.")

    def per_device(self, images: int) -> NormSpec:
        """BN over groups of ``images`` samples: Ghost Batch Normalization, same ``impl``."""
        return GhostBatchNormSpec(
            group_size=images,
            momentum=self.momentum,
            eps=self.eps,
            affine=self.affine,
            impl="closed_form" if self.impl == "closed_form" else "auto",
        )
