"""``norm=batch_detached``: the counter-example of Ioffe & Szegedy 2015, §2.

The forward pass is Batch Normalization, but the batch mean and variance are treated as
constants in the backward pass (stop-gradient, ``sg``), per channel over the m batch values::

    y = γ · (x − sg(μ_B)) / sqrt(sg(σ²_B) + ε) + β          ∂y/∂x = γ / sqrt(σ²_B + ε)

§2 of the paper shows that a gradient step which ignores the dependence of the statistics on
the parameters lets them grow without the loss changing. Running estimates are kept exactly as
in ``norm=batch`` (unbiased variance, exponential or cumulative).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from normbench.norms.batch import BatchNormBase, batch_mean_var
from normbench.norms.checks import values_per_channel
from normbench.norms.spec import NormSpec, check_dims


class DetachedBatchNorm(BatchNormBase):
    """BN whose batch statistics are constants for autograd (native eval-mode kernel)."""

    variant = "batch_detached"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        factor = self.running_factor()
        if not self.uses_batch_stats():
            return self.running_affine(x)
        mean, var = batch_mean_var(x)
        if factor is not None:
            self.update_running(mean, var, values_per_channel(x), factor)
        # Eval-mode kernel with the (constant) batch statistics in place of the running ones.
        return F.batch_norm(x, mean, var, self.weight, self.bias, False, 0.0, self.eps)


class DetachedBatchNormSpec(NormSpec):
    """BN with stop-gradient batch statistics in the norm slot.

    Args:
        momentum: running-estimate update weight; ``None`` for the cumulative average.
        eps: ε added to the variance.
        affine: learn γ and β.
    """

    name = "batch_detached"

    def __init__(self, momentum: float | None = 0.1, eps: float = 1e-5, affine: bool = True):
        self.momentum = momentum
        self.eps = eps
        self.affine = affine

    def layer(self, num_channels: int, dims: int) -> nn.Module:
        check_dims(dims)
        return DetachedBatchNorm(num_channels, self.eps, self.momentum, self.affine)

    @property
    def has_shift(self) -> bool:
        return self.affine
