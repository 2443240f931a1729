"""Per-layer KL divergence between source and target responses (``normbench eval ... kl=true``).

AdaBN (Li et al. 2016) compares, per neuron, the distribution of a BN layer's response on the
source domain with its distribution on the target domain (a Gaussian fit of each), before and
after adapting the statistics. Here, for every layer with batch statistics (every
``_BatchNorm`` with running statistics) or, in a model without them, every norm slot (GN, LN,
FRN, ...; :func:`~normbench.evaluation.tent.norm_layers`), forward hooks collect the per-channel
mean and (biased, maximum-likelihood) variance of the layer's OUTPUT, the normalized and
affine-transformed response, in float64 over the batch and spatial positions, on

- the source: ``K`` samples of the run's clean training split (default 2,000; a fixed random
  subset, seeded by the run's seed, without augmentation; an image folder's augmented training
  stream), and
- the target: up to ``K`` samples of the evaluation data (corruption applied), in the fixed
  random order of the evaluation modes.

Each channel's divergence is the closed form for univariate Gaussians::

    KL(N(μ_s, σ_s²) ‖ N(μ_t, σ_t²)) = log(σ_t/σ_s) + (σ_s² + (μ_s − μ_t)²) / (2 σ_t²) − 1/2

and a layer's row holds its mean and median over the channels whose variance is above
:data:`VAR_FLOOR` in both domains (a channel whose scale γ is 0 is a constant).

Both domains go through the model as the evaluated mode runs it, each domain on its own data:

========  ====================================================================================
mode      how each domain is normalized for the measurement
========  ====================================================================================
running   the running statistics (both domains alike: the source statistics)
precise   the precise (source population) statistics the mode set
adapt     each domain by population statistics of its own: the target by those the mode
          estimated (AdaBN), the source by those of its K samples (AdaBN's source model)
batch     each batch's own statistics, batches of the mode's ``batch_size``
partial   each batch's statistics mixed with the running ones (prior N, ``batch_size`` n)
tent      each batch's statistics with the affine parameters Tent adapted (its ``batch_size``)
========  ====================================================================================

A mode that did not apply (a model without batch statistics) is measured as ``running``.
Feeding both domains through one shared per-channel affine normalization would leave the
Gaussian KL of the layer's output equal to that of its input (KL is invariant under an
invertible affine map applied to both), so "after adaptation" can only mean what AdaBN does:
each domain normalized by statistics of its own. Batch-statistics modes use whole batches only
(a trailing smaller batch is dropped) so that no batch has fewer samples than the mode's.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from normbench.data.folder import FolderData
from normbench.engine.evaluate import predict
from normbench.evaluation.modes import (
    EvalSetup,
    Outcome,
    random_order,
    training_batches,
    whole_batches,
)
from normbench.evaluation.records import KEY
from normbench.evaluation.tent import norm_layers
from normbench.norms.stats import (
    bn_layers,
    recompute_bn_stats,
    require_defined_batch_stats,
    use_batch_stats_at_eval,
    use_prior_weighted_stats,
)

FILE = "kl.csv"
#: Source samples of ``kl=true`` (``kl=K`` asks for K).
SOURCE_SAMPLES = 2000
#: A channel with a variance at most this in either domain is left out (it is a constant).
VAR_FLOOR = 1e-12
#: kl.csv's columns after the evaluation's key columns (``eval_records.KEY``).
KL_COLUMNS = (
    "layer",
    "layer_type",
    "kl_mean",
    "kl_median",
    "channels",
    "source_samples",
    "target_samples",
    "step",
    "time_s",
    "evaluated_at",
)
#: kl.csv's header.
COLUMNS = (*KEY, *KL_COLUMNS)
BATCH_STAT_MODES = ("batch", "partial", "tent")

Batch = tuple[torch.Tensor, torch.Tensor]


def gaussian_kl(
    mean_p: torch.Tensor, var_p: torch.Tensor, mean_q: torch.Tensor, var_q: torch.Tensor
) -> torch.Tensor:
    """KL(N(mean_p, var_p) ‖ N(mean_q, var_q)), elementwise (variances > 0)."""
    return 0.5 * (torch.log(var_q / var_p) + (var_p + (mean_p - mean_q).square()) / var_q - 1.0)


class ChannelMoments:
    """Count, mean and sum of squared deviations per channel of a layer's outputs, in float64
    (batches merged exactly, Chan et al.'s parallel update)."""

    def __init__(self) -> None:
        self.count = 0
        self.mean: torch.Tensor | None = None
        self.m2: torch.Tensor | None = None

    def add(self, out: torch.Tensor) -> None:
        """Count one output batch (N, C, ...): channel dim 1, every other dim pooled."""
        x = out.detach().double().transpose(0, 1).reshape(out.shape[1], -1)
        m = x.shape[1]
        if m == 0:
            return
        mean_b = x.mean(1)
        m2_b = (x - mean_b[:, None]).square().sum(1)
        if self.mean is None or self.m2 is None:
            self.count, self.mean, self.m2 = m, mean_b, m2_b
            return
        total = self.count + m
        delta = mean_b - self.mean
        self.mean = self.mean + delta * (m / total)
        self.m2 = self.m2 + m2_b + delta.square() * (self.count * m / total)
        self.count = total

    @property
    def var(self) -> torch.Tensor:
        """The biased (maximum-likelihood Gaussian fit) variance per channel."""
        assert self.m2 is not None
        return self.m2 / self.count


@dataclass(frozen=True)
class LayerKL:
    """One layer's divergence between the domains."""

    layer: str
    layer_type: str
    kl_mean: float | None
    kl_median: float | None
    channels: int


def layer_divergence(
    name: str, kind: str, source: ChannelMoments, target: ChannelMoments
) -> LayerKL:
    """Mean and median over channels of KL(source ‖ target) (None when no channel varies)."""
    if source.mean is None or target.mean is None:
        return LayerKL(name, kind, None, None, 0)
    keep = (source.var > VAR_FLOOR) & (target.var > VAR_FLOOR)
    kl = gaussian_kl(source.mean[keep], source.var[keep], target.mean[keep], target.var[keep])
    if kl.numel() == 0:
        return LayerKL(name, kind, None, None, 0)
    return LayerKL(name, kind, kl.mean().item(), kl.median().item(), int(kl.numel()))


def measured_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The layers with batch statistics, or (a model without them) every norm slot, by name."""
    wanted = bn_layers(model) or norm_layers(model)
    ids = {id(m) for m in wanted}
    return [(name, m) for name, m in model.named_modules() if id(m) in ids]


@torch.no_grad()
def output_moments(
    model: nn.Module,
    layers: list[tuple[str, nn.Module]],
    batches: Iterator[Batch],
    setup: EvalSetup,
) -> tuple[dict[str, ChannelMoments], int]:
    """Per-channel moments of each layer's output over ``batches``, and the samples seen."""
    moments = {name: ChannelMoments() for name, _ in layers}
    hooks = [
        layer.register_forward_hook(lambda _m, _a, out, acc=moments[name]: acc.add(out))
        for name, layer in layers
    ]
    seen = 0
    try:
        for x, _ in batches:
            predict(model, x, setup.fast)
            seen += len(x)
    finally:
        for hook in hooks:
            hook.remove()
    return moments, seen


def source_batches(setup: EvalSetup, samples: int, size: int) -> Iterator[Batch]:
    """The first ``samples`` of the source subset in batches of ``size``: a fixed random subset
    of the training split (no augmentation), or an image folder's training stream."""
    data = setup.train_data
    if isinstance(data, FolderData):
        yield from training_batches(data, size, samples, setup.seed)
        return
    generator = torch.Generator().manual_seed(setup.seed)
    order = torch.randperm(len(data.train_x), generator=generator)[:samples]
    for idx in order.to(data.train_x.device).split(size):
        yield data.train_x.index_select(0, idx), data.train_y.index_select(0, idx)


@contextlib.contextmanager
def measuring_state(mode: str, outcome: Outcome, model: nn.Module) -> Iterator[None]:
    """The model, in eval mode, normalizing as ``mode`` does (see the module docstring)."""
    was_training = model.training
    model.eval()
    try:
        if not outcome.applied or mode not in BATCH_STAT_MODES:
            yield
        elif mode == "partial":
            with use_prior_weighted_stats(model, float(outcome.knobs.prior or 0.0)):
                yield
        else:
            with use_batch_stats_at_eval(model), require_defined_batch_stats(model):
                yield
    finally:
        model.train(was_training)


def _counts(mode: str, outcome: Outcome, setup: EvalSetup, asked: int) -> tuple[int, int, int]:
    """(source samples, target samples, forward batch size) of a measurement."""
    source = min(asked, setup.train_size)
    target = min(asked, setup.data.num_samples)
    if outcome.applied and mode in BATCH_STAT_MODES:
        size = int(outcome.knobs.batch_size or setup.train_batch_size)
        return whole_batches(source, size), whole_batches(target, size), size
    return source, target, setup.eval_batch_size


def measure_kl(mode: str, outcome: Outcome, setup: EvalSetup, samples: int) -> list[dict[str, Any]]:
    """Per-layer KL(source ‖ target) of the model as ``mode`` left it (call right after
    :func:`~normbench.evaluation.modes.run_mode`, before reloading the model).

    Returns:
        One dict per layer: the :data:`KL_COLUMNS` without step and evaluated_at.

    Raises:
        UndefinedStatisticsError: a batch-statistics mode meets a group of one value per channel.
    """
    start = time.perf_counter()
    model = setup.model
    layers = measured_layers(model)
    if not layers:
        return []
    n_source, n_target, size = _counts(mode, outcome, setup, samples)
    order = random_order(setup.data.num_samples)[:n_target]
    with measuring_state(mode, outcome, model):
        target, seen_t = output_moments(model, layers, setup.data.batches(size, order), setup)
    if mode == "adapt" and outcome.applied:  # the source by statistics of its own samples
        train_size = min(setup.train_batch_size, n_source)
        used = whole_batches(n_source, train_size)
        with require_defined_batch_stats(model):
            recompute_bn_stats(model, source_batches(setup, used, train_size), "population")
    with measuring_state(mode, outcome, model):
        source, seen_s = output_moments(model, layers, source_batches(setup, n_source, size), setup)
    elapsed = round(time.perf_counter() - start, 3)
    rows = []
    for name, layer in layers:
        kl = layer_divergence(name, type(layer).__name__, source[name], target[name])
        rows.append(
            {
                **vars(kl),
                "source_samples": seen_s,
                "target_samples": seen_t,
                "time_s": elapsed,
            }
        )
    return rows
