"""``norm=noisy_batch``: Batch Normalization followed by noise whose mean and scale change at
every step: internal covariate shift injected on purpose (Santurkar et al. 2018, "How does
batch normalization help optimization?", §2.1, "noisy BatchNorm"; docs/papers.md §12).

Training, per channel c, with fresh draws at every training forward (every step)::

    y = BN(x)                                        (norm=batch, native kernel)
    m_c ~ U(−noise_mean, noise_mean)        s_c ~ U(1, noise_scale)
    z = s_c · y + m_c

so the distribution of every channel the next layer sees moves by a random shift and scale at
each step, while BN's own statistics stay those of its input. The noise of a layer's t-th
training forward is drawn from a generator seeded with (the layer's ``noise_seed``, t): the seed
is drawn from torch's generator when the layer is built (so it follows the run's seed) and t is
the ``noise_step`` buffer, both saved in checkpoints, so a resumed run, or a copy of the layer,
draws the same noise. It is a constant for autograd (∂z/∂y = s_c). Evaluation mode draws no
noise and applies its expectation, z = E[s] · BN(x) + E[m] = (1 + noise_scale)/2 · BN(x) with
the running estimates, as dropout rescales: the next layers were trained on inputs scaled by
E[s] on average, and without it the mismatch compounds over depth (a 13-layer VGG then predicts
one class). ``noise_mean: 0`` and ``noise_scale: 1`` make it BN. With ``group_size`` (images per device) BN's statistics are those of each group, as in
``norm=ghost_batch``.

Santurkar et al. perturb each activation of each sample with i.i.d. noise from a distribution
whose mean and variance are redrawn every step; here the shift and scale are shared by the
samples and positions of a channel, the distribution shift the argument is about, without the
per-sample noise on top.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from normbench.norms.batch import BatchNorm
from normbench.norms.batch_base import BatchStatsSpec
from normbench.norms.checks import channel_view
from normbench.norms.spec import NormSpec


class NoisyBatchNorm(BatchNorm):
    """BN, then a per-channel random scale and shift redrawn at every training forward."""

    variant = "noisy_batch"

    def __init__(
        self,
        num_features: int,
        *,
        dims: int,
        eps: float,
        momentum: float | None,
        affine: bool,
        noise_mean: float,
        noise_scale: float,
        group_size: int | None = None,
    ) -> None:
        super().__init__(
            num_features, dims=dims, eps=eps, momentum=momentum, affine=affine, impl="native"
        )
        self.noise_mean, self.noise_scale, self.group_size = noise_mean, noise_scale, group_size
        self.register_buffer("noise_seed", torch.randint(0, 2**31 - 1, ()))
        self.register_buffer("noise_step", torch.zeros((), dtype=torch.long))

    def draw(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """This step's (m, s), one per channel, on ``like``'s device and dtype; counts the step."""
        g = torch.Generator().manual_seed(int(self.noise_seed) * 1_000_003 + int(self.noise_step))
        self.noise_step.add_(1)
        u = torch.rand(2, self.num_features, dtype=torch.float64, generator=g)
        m = (2 * u[0] - 1) * self.noise_mean
        s = 1 + u[1] * (self.noise_scale - 1)
        return m.to(like), s.to(like)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.group_size and self.uses_batch_stats():
            self.check_input(x)
            y = self.grouped_batch_norm(x, self.group_size)
        else:
            y = super().forward(x)
        if not self.training:  # the noise's expectation: E[s] = (1 + noise_scale)/2, E[m] = 0
            return y * ((1 + self.noise_scale) / 2)
        m, s = self.draw(y)
        return y * channel_view(s, y) + channel_view(m, y)

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, noise_mean={self.noise_mean}, noise_scale={self.noise_scale}"
        )


@dataclass(frozen=True, kw_only=True)
class NoisyBatchNormSpec(BatchStatsSpec):
    """BN with per-step random per-channel shift and scale after it.

    Attributes:
        momentum, eps, affine: see :class:`~normbench.norms.batch_base.BatchStatsSpec`.
        noise_mean: the shift m_c is uniform on [−noise_mean, noise_mean].
        noise_scale: the scale s_c is uniform on [1, noise_scale].
        group_size: BN's statistics over groups of this many samples (``per_device`` sets it).
    """

    noise_mean: float = 0.5
    noise_scale: float = 1.5
    group_size: int | None = None

    name = "noisy_batch"
    norm_module = NoisyBatchNorm

    def per_device(self, images: int) -> NormSpec:
        """BN's statistics over groups of ``images`` samples (ghost BN), the same noise."""
        return self.with_options(group_size=images)
