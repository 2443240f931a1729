"""``norm=batch_renorm``: Batch Renormalization (Ioffe, NIPS 2017, arXiv 1702.03275, Alg. 1).

Training, per channel over the m batch values, with μ and σ² the running estimates::

    σ_B = sqrt(σ²_B + ε)          σ = sqrt(σ² + ε)
    r = sg(clip(σ_B / σ, 1/r_max, r_max))          d = sg(clip((μ_B − μ) / σ, −d_max, d_max))
    y = γ · ((x − μ_B) / σ_B · r + d) + β

r and d are stop-gradient (``sg``): the backward pass is BN's with γ·r in place of γ. The
running estimates are updated after computing r and d, as in ``norm=batch`` (unbiased running
variance; the paper updates σ itself, which differs only at second order). Eval mode uses the
running estimates, exactly like BN.

Schedule, as a function of the module's own step counter t (a buffer counting training
forwards, so no engine hook is needed)::

    r_max(t) = 1 + (r_max − 1) · clip((t − warmup_steps) / (r_max_steps − warmup_steps), 0, 1)
    d_max(t) = d_max · clip((t − warmup_steps) / (d_max_steps − warmup_steps), 0, 1)

Defaults (PAPERS.md §3): plain BN for 5k steps, r_max → 3 by 40k steps, d_max → 5 by 25k steps.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from normbench.norms.batch import BatchNormBase, batch_mean_var
from normbench.norms.checks import values_per_channel
from normbench.norms.spec import NormSpec, check_dims


class BatchRenorm(BatchNormBase):
    """Batch Renormalization with the r/d schedule driven by a ``step`` buffer."""

    variant = "batch_renorm"

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.01,
        affine: bool = True,
        r_max: float = 3.0,
        d_max: float = 5.0,
        warmup_steps: int = 5000,
        r_max_steps: int = 40000,
        d_max_steps: int = 25000,
    ):
        super().__init__(num_features, eps=eps, momentum=momentum, affine=affine)
        self.r_max, self.d_max = float(r_max), float(d_max)
        self.warmup_steps, self.r_max_steps, self.d_max_steps = (
            warmup_steps,
            r_max_steps,
            d_max_steps,
        )
        self.register_buffer("step", torch.zeros((), dtype=torch.long))

    def _ramp(self, end: int) -> torch.Tensor:
        """clip((t − warmup) / (end − warmup), 0, 1) on the buffer's device (no host sync)."""
        span = max(end - self.warmup_steps, 1)
        return ((self.step.to(self.running_var.dtype) - self.warmup_steps) / span).clamp(0.0, 1.0)

    def limits(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The current (r_max(t), d_max(t)) as 0-d tensors."""
        r_lim = 1.0 + (self.r_max - 1.0) * self._ramp(self.r_max_steps)
        d_lim = self.d_max * self._ramp(self.d_max_steps)
        return r_lim, d_lim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        if not self.uses_batch_stats():
            return self.running_affine(x)
        factor = self.running_factor()
        if factor is None:  # batch statistics without touching the buffers: plain BN
            return F.batch_norm(x, None, None, self.weight, self.bias, True, 0.0, self.eps)
        with torch.no_grad():
            mean_b, var_b = batch_mean_var(x)
            sigma = torch.sqrt(self.running_var + self.eps)
            r_lim, d_lim = self.limits()
            r = (torch.sqrt(var_b + self.eps) / sigma).clamp(1.0 / r_lim, r_lim)
            d = ((mean_b - self.running_mean) / sigma).clamp(-d_lim, d_lim)
            self.update_running(mean_b, var_b, values_per_channel(x), factor)
            self.step.add_(1)
        # γ(x̂ r + d) + β = (γ r) x̂ + (γ d + β): the native kernel with a corrected affine.
        if self.weight is not None:
            weight, bias = self.weight * r, torch.addcmul(self.bias, self.weight, d)
        else:
            weight, bias = r, d
        return F.batch_norm(
            x, None, None, weight.to(x.dtype), bias.to(x.dtype), True, 0.0, self.eps
        )

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, r_max={self.r_max}, d_max={self.d_max}, "
            f"warmup_steps={self.warmup_steps}, r_max_steps={self.r_max_steps}, "
            f"d_max_steps={self.d_max_steps}"
        )


class BatchRenormSpec(NormSpec):
    """Batch Renormalization in the norm slot.

    Args:
        momentum: running-estimate update weight (the paper's α); ``None`` for cumulative.
        eps: ε added to the variances.
        affine: learn γ and β.
        r_max: final bound on r (r ∈ [1/r_max, r_max]); 1 keeps r = 1.
        d_max: final bound on d (d ∈ [−d_max, d_max]); 0 keeps d = 0.
        warmup_steps: training steps of plain BN (r_max = 1, d_max = 0) before relaxing.
        r_max_steps: step by which r_max reaches its final value (linear from ``warmup_steps``).
        d_max_steps: step by which d_max reaches its final value (linear from ``warmup_steps``).
    """

    name = "batch_renorm"

    def __init__(
        self,
        momentum: float | None = 0.01,
        eps: float = 1e-5,
        affine: bool = True,
        r_max: float = 3.0,
        d_max: float = 5.0,
        warmup_steps: int = 5000,
        r_max_steps: int = 40000,
        d_max_steps: int = 25000,
    ):
        self.momentum, self.eps, self.affine = momentum, eps, affine
        self.r_max, self.d_max = r_max, d_max
        self.warmup_steps, self.r_max_steps, self.d_max_steps = (
            warmup_steps,
            r_max_steps,
            d_max_steps,
        )

    def layer(self, num_channels: int, dims: int) -> nn.Module:
        check_dims(dims)
        return BatchRenorm(
            num_channels,
            self.eps,
            self.momentum,
            self.affine,
            self.r_max,
            self.d_max,
            self.warmup_steps,
            self.r_max_steps,
            self.d_max_steps,
        )

    @property
    def has_shift(self) -> bool:
        return self.affine
