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

Defaults (docs/papers.md §3): plain BN for 5k steps, r_max → 3 by 40k steps, d_max → 5 by 25k steps.

Microbatches (the paper's §4.2 experiment, and images per device): with ``group_size`` set,
μ_B, σ_B, r and d are computed per group k of ``group_size`` consecutive samples (r_k, d_k
against the same running estimates), and the running estimates are updated from the mean of
the groups' statistics (μ ← (1−α)μ + α mean_k μ_k, σ² ← (1−α)σ² + α mean_k m/(m−1) σ²_k),
as ``norm=ghost_batch`` does. A trailing partial group is normalized by its own statistics
and leaves the running estimates alone. The forward and the closed-form backward are
``GroupedBatchNormFunction`` (``normbench/norms/grouped.py``): BN's gradient with γ·r_k in
place of γ, ∂L/∂γ = Σ_k (r_k Σ dy x̂ + d_k Σ dy). Under ``torch.compile`` the same formula
runs as plain autograd ops (:func:`batch_renorm_formula`), and the buffers are replaced by new
tensors instead of being updated in place (see ``BatchRenorm._compiled_forward``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from normbench.norms.batch_base import BatchNormBase, GroupedBatchStatsSpec
from normbench.norms.checks import check_batch_values, values_per_channel
from normbench.norms.grouped import Renorm, group_count


def batch_renorm_formula(
    x: torch.Tensor,
    weight: torch.Tensor | None,
    bias: torch.Tensor | None,
    eps: float,
    groups: int,
    renorm: Renorm | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Training-mode Batch Renorm of (N, C, *S) over ``groups`` groups of consecutive samples, as
    autograd ops: y = γ ((x − μ_k) / σ_k · r_k + d_k) + β, with r_k, d_k = ``renorm(μ_k, 1/σ_k)``
    computed without gradient (r = 1, d = 0 when ``renorm`` is None). What ``torch.compile``
    traces. Statistics in float32 at least (bf16 activations under autocast).

    Returns:
        y in x's dtype, and the groups' means and biased variances, each (G, C).
    """
    n, c = x.shape[:2]
    work = torch.promote_types(x.dtype, torch.float32)
    xg = x.reshape(groups, n // groups, c, -1).to(work)
    var, mean = torch.var_mean(xg, dim=(1, 3), correction=0, keepdim=True)  # (G, 1, C, 1)
    invstd = torch.rsqrt(var + eps)
    xhat = (xg - mean) * invstd
    if renorm is not None:
        with torch.no_grad():
            r, d = renorm(mean.view(groups, c), invstd.view(groups, c))
        xhat = xhat * r.view(mean.shape) + d.view(mean.shape)
    y = xhat.reshape(x.shape)
    if weight is not None:
        shape = (1, c, *([1] * (x.dim() - 2)))
        y = y * weight.view(shape) + bias.view(shape)
    return y.to(x.dtype), mean.view(groups, c), var.view(groups, c)


class BatchRenorm(BatchNormBase):
    """Batch Renormalization with the r/d schedule driven by a ``step`` buffer."""

    variant = "batch_renorm"
    #: kernels of the grouped statistics (``normbench.norms.grouped.IMPLS``; tests set it).
    impl = "auto"

    def __init__(
        self,
        num_features: int,
        *,
        dims: int,
        eps: float,
        momentum: float | None,
        affine: bool,
        r_max: float,
        d_max: float,
        warmup_steps: int,
        r_max_steps: int,
        d_max_steps: int,
        group_size: int | None,
    ) -> None:
        super().__init__(num_features, dims=dims, eps=eps, momentum=momentum, affine=affine)
        self.group_size = group_size
        self.r_max, self.d_max = float(r_max), float(d_max)
        self.warmup_steps, self.r_max_steps, self.d_max_steps = (
            warmup_steps,
            r_max_steps,
            d_max_steps,
        )
        self.register_buffer("step", torch.zeros((), dtype=torch.long))

    def _ramp(self, end: int) -> torch.Tensor | float:
        """clip((t − warmup) / (end − warmup), 0, 1): a float on CPU in eager mode, else a 0-d
        tensor (no device sync; under torch.compile, no graph break and no recompile per step)."""
        span = max(end - self.warmup_steps, 1)
        if self.step.device.type == "cpu" and not torch.compiler.is_compiling():
            return min(max((int(self.step) - self.warmup_steps) / span, 0.0), 1.0)
        return ((self.step.to(self.running_var.dtype) - self.warmup_steps) / span).clamp(0.0, 1.0)

    def limits(self) -> tuple[torch.Tensor | float, torch.Tensor | float]:
        """The current (r_max(t), d_max(t)): floats or 0-d tensors, as :meth:`_ramp` gives."""
        r_lim = 1.0 + (self.r_max - 1.0) * self._ramp(self.r_max_steps)
        d_lim = self.d_max * self._ramp(self.d_max_steps)
        return r_lim, d_lim

    def _renorm(self) -> Renorm:
        """(μ_k, 1/σ_k) ↦ (r_k, d_k) against the running estimates as they are now."""
        r_lim, d_lim = self.limits()
        inv_sigma = torch.add(self.running_var, self.eps).rsqrt_()  # 1/σ
        neg_mean = torch.mul(self.running_mean, inv_sigma).neg_()  # −μ/σ

        def renorm(mean: torch.Tensor, invstd: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            r = torch.div(inv_sigma, invstd).clamp_(1.0 / r_lim, r_lim)  # σ_k/σ
            d = torch.addcmul(neg_mean, mean, inv_sigma).clamp_(-d_lim, d_lim)  # (μ_k − μ)/σ
            return r.to(mean.dtype), d.to(mean.dtype)

        return renorm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        if not self.uses_batch_stats():
            return self.running_affine(x)
        size = self.group_size or x.shape[0]
        if not (self.track_running_stats and self.running_mean is not None):
            return self.grouped_batch_norm(x, size, impl=self.impl)  # batch stats: r = 1, d = 0
        if torch.compiler.is_compiling():
            return self._compiled_forward(x, size)
        y = self.grouped_batch_norm(x, size, self._renorm(), impl=self.impl)
        self.step.add_(1)
        return y

    def _compiled_forward(self, x: torch.Tensor, size: int) -> torch.Tensor:
        """The training forward under ``torch.compile``: :func:`batch_renorm_formula`, then the
        running estimates and the step counter as new tensors in the buffers' places.

        Not in-place updates: compiled (torch 2.14, with inductor and with ``aot_eager``), a
        backward whose r, d depend on a buffer that the forward updates in place read the
        updated value, so r, d were those of the next step and ∂L/∂x, ∂L/∂γ wrong (reproduced
        without normbench's Functions, with a step buffer and ``add_``). DDP collects the
        buffers again at every sync. tests/test_norms_compiled.py checks the gradients.
        """
        n = x.shape[0]
        groups, rest = group_count(n, size)
        check_batch_values(x, self.variant, size)
        factor = self.running_factor()
        head = x[: n - rest] if rest else x
        args, renorm = (self.weight, self.bias, self.eps), self._renorm()
        y, mean, var = batch_renorm_formula(head, *args, groups, renorm)
        if rest:  # a trailing partial group: its own statistics and r, d; no update from it
            check_batch_values(x[n - rest :], self.variant)
            y = torch.cat([y, batch_renorm_formula(x[n - rest :], *args, 1, renorm)[0]])
        if factor is not None:
            m = values_per_channel(head) // groups
            with torch.no_grad():
                new_mean = mean.mean(0).to(self.running_mean.dtype)
                new_var = var.mean(0).mul(m / max(m - 1, 1)).to(self.running_var.dtype)
                self.running_mean = torch.lerp(self.running_mean, new_mean, factor)
                self.running_var = torch.lerp(self.running_var, new_var, factor)
        self.step = self.step + 1
        return y

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, r_max={self.r_max}, d_max={self.d_max}, "
            f"warmup_steps={self.warmup_steps}, r_max_steps={self.r_max_steps}, "
            f"d_max_steps={self.d_max_steps}, group_size={self.group_size}"
        )


@dataclass(frozen=True, kw_only=True)
class BatchRenormSpec(GroupedBatchStatsSpec):
    """Batch Renormalization in the norm slot.

    Attributes:
        momentum: running-estimate update weight (the paper's α); ``None`` for cumulative.
        eps, affine: see :class:`~normbench.norms.batch_base.BatchStatsSpec`.
        group_size: samples per microbatch whose statistics give μ_B, σ_B, r, d (``None``: the
            whole batch); ``per_device(N)`` sets it to N.
        r_max: final bound on r (r ∈ [1/r_max, r_max]), ≥ 1; 1 keeps r = 1.
        d_max: final bound on d (d ∈ [−d_max, d_max]), ≥ 0; 0 keeps d = 0.
        warmup_steps: training steps of plain BN (r_max = 1, d_max = 0) before relaxing.
        r_max_steps: step by which r_max reaches its final value (linear from ``warmup_steps``).
        d_max_steps: step by which d_max reaches its final value (linear from ``warmup_steps``).
    """

    momentum: float | None = 0.01
    r_max: float = 3.0
    d_max: float = 5.0
    warmup_steps: int = 5000
    r_max_steps: int = 40000
    d_max_steps: int = 25000

    name = "batch_renorm"
    norm_module = BatchRenorm
