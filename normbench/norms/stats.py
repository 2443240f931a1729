"""Statistics procedures over a model's BN layers, usable by any study.

``recompute_bn_stats`` re-estimates the running statistics of every batch-statistics layer
(every ``torch.nn.modules.batchnorm._BatchNorm``: torch's BN and SyncBN, and normbench's BN,
closed-form BN, detached BN, BRN, ghost BN, mean-only BN and EvoNorm-B0) from batches of data,
with the weights frozen. The model runs in eval mode (dropout off) except that every BN layer
normalizes with the statistics of the current batch (its training-mode normalization, without
touching its buffers; BRN uses r = 1, d = 0), as in Precise BN (Wu & Johnson 2021, §3). For each
BN layer the per-channel statistics of its input are collected from every batch b holding
m_b values per channel:

- ``population`` (Precise BN): the exact statistics of all values seen, each batch weighted by
  its size, so they do not depend on how the same data is split into batches::

      μ = Σ_b m_b μ_b / M          σ² = Σ_b m_b (σ²_b + (μ_b − μ)²) / (M − 1),  M = Σ_b m_b

  (σ²_b biased; σ² unbiased, as BN's running variance.) AdaBN (Li et al. 2016) is this call on
  target-domain data.
- ``ema``: BN's own rule per batch, starting from the current running statistics:
  μ ← (1 − α) μ + α μ_b, σ² ← (1 − α) σ² + α m_b/(m_b − 1) σ²_b, with α = ``momentum`` or
  the layer's momentum (a layer with ``momentum=None`` uses the cumulative α = 1/b).

``use_batch_stats_at_eval`` is prediction-time BN: inside the context, BN layers normalize with
the statistics of each evaluated batch; on exit every mode and buffer is restored exactly.

``use_prior_weighted_stats`` is the partial adaptation of Schneider et al. (NeurIPS 2020,
arXiv 2006.16971): each evaluated batch of n samples is normalized with its statistics mixed
with the running (source) ones under a prior strength N (a pseudo sample count)::

    μ = N/(N + n) · μ_s + n/(N + n) · μ_t          σ² = N/(N + n) · σ²_s + n/(N + n) · σ²_t

(μ_t, σ²_t: the batch's per-channel mean and biased variance, as BN's training-mode
normalization uses them, so that N = 0 is prediction-time BN and N → ∞ the running statistics.)

``require_defined_batch_stats`` turns a BN layer about to normalize a group holding a single
value per channel (a batch of one after global pooling or in an MLP: a variance of one value)
into :class:`UndefinedStatisticsError`, naming the layer, before the layer's own check.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from normbench.errors import ConfigError, NormbenchError
from normbench.norms.batch import batch_mean_var
from normbench.norms.checks import values_per_channel

ESTIMATORS = ("population", "ema")


def bn_layers(model: nn.Module) -> list[_BatchNorm]:
    """Every batch-statistics layer of ``model`` that keeps running statistics."""
    return [m for m in model.modules() if isinstance(m, _BatchNorm) and m.running_mean is not None]


class _Accumulator:
    """Per-channel statistics of one layer's input over batches, in float64."""

    def __init__(self, layer: _BatchNorm, estimator: str, momentum: float | None):
        self.layer, self.estimator, self.momentum = layer, estimator, momentum
        self.count = 0
        self.batches = 0
        self.mean = layer.running_mean.detach().double().clone()
        self.var = layer.running_var.detach().double().clone()  # ema: unbiased running value
        self.m2 = torch.zeros_like(self.mean)

    def __call__(self, _module: nn.Module, args: tuple[Any, ...]) -> None:
        x = args[0].detach()
        mean_b, var_b = batch_mean_var(x.double())
        m_b = values_per_channel(x)
        self.batches += 1
        if self.estimator == "ema":
            alpha = self.momentum if self.momentum is not None else self.layer.momentum
            alpha = 1.0 / self.batches if alpha is None else alpha
            self.mean.lerp_(mean_b, alpha)
            self.var.lerp_(var_b * (m_b / max(m_b - 1, 1)), alpha)
            return
        if self.count == 0:
            self.mean.copy_(mean_b)
        total = self.count + m_b
        delta = mean_b - self.mean
        self.mean += delta * (m_b / total)
        self.m2 += var_b * m_b + delta.square() * (self.count * m_b / total)
        self.count = total

    def write(self) -> None:
        """Store the estimate in the layer's running buffers."""
        if self.batches == 0:
            return
        var = self.var if self.estimator == "ema" else self.m2 / max(self.count - 1, 1)
        self.layer.running_mean.copy_(self.mean)
        self.layer.running_var.copy_(var)


def _first_tensor(batch: Any) -> torch.Tensor:
    return batch[0] if isinstance(batch, (list, tuple)) else batch


@torch.no_grad()
def recompute_bn_stats(
    model: nn.Module,
    batches: Iterable[Any],
    estimator: str = "population",
    momentum: float | None = None,
    num_batches: int | None = None,
) -> int:
    """Re-estimate the running statistics of every BN layer of ``model`` from ``batches``.

    Args:
        model: any module; its parameters are not changed, its modes are restored.
        batches: tensors or ``(inputs, ...)`` tuples; inputs are moved to the model's device.
        estimator: ``population`` (Precise BN / AdaBN) or ``ema`` (BN's update rule).
        momentum: α for ``ema`` (default: each layer's own momentum).
        num_batches: use at most this many batches.

    Returns:
        The number of batches used.

    Raises:
        ConfigError: unknown estimator.
    """
    if estimator not in ESTIMATORS:
        raise ConfigError(
            f"Unknown BN statistics estimator {estimator!r}; use one of {', '.join(ESTIMATORS)}."
        )
    layers = bn_layers(model)
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    modes = [(m, m.training) for m in model.modules()]
    tracking = [(layer, layer.track_running_stats) for layer in layers]
    accumulators = [_Accumulator(layer, estimator, momentum) for layer in layers]
    hooks = [acc.layer.register_forward_pre_hook(acc) for acc in accumulators]
    used = 0
    try:
        model.eval()
        for layer in layers:
            layer.training, layer.track_running_stats = True, False
        for batch in batches:
            if num_batches is not None and used >= num_batches:
                break
            model(_first_tensor(batch).to(device))
            used += 1
    finally:
        for hook in hooks:
            hook.remove()
        for layer, track in tracking:
            layer.track_running_stats = track
        for module, training in modes:
            module.training = training
    for acc in accumulators:
        acc.write()
    return used


@contextmanager
def use_batch_stats_at_eval(model: nn.Module) -> Iterator[nn.Module]:
    """Inside the context, BN layers normalize with each batch's statistics (prediction-time BN).

    Running buffers are not updated, and on exit every BN layer's mode, ``track_running_stats``
    and buffers are restored exactly.
    """
    layers = bn_layers(model)
    saved = [
        (
            layer,
            layer.training,
            layer.track_running_stats,
            [(b, b.detach().clone()) for b in layer.buffers(recurse=False)],
        )
        for layer in layers
    ]
    try:
        for layer in layers:
            layer.training, layer.track_running_stats = True, False
        yield model
    finally:
        with torch.no_grad():
            for layer, training, track, buffers in saved:
                layer.training, layer.track_running_stats = training, track
                for buf, value in buffers:
                    buf.copy_(value)


class UndefinedStatisticsError(NormbenchError):
    """A layer was asked to normalize with batch statistics of a single value per channel."""


def batch_stats_problem(layer: _BatchNorm, x: torch.Tensor) -> str | None:
    """Why ``layer`` cannot normalize ``x`` by batch statistics, or None when it can.

    The statistics are over groups of the layer's ``group_size`` consecutive samples (ghost BN,
    Batch Renorm's microbatches, mean-only BN) or over the whole batch; a trailing partial group
    has its own statistics. A group holding at most one value per channel has none.
    """
    n = x.shape[0]
    if n == 0:
        return None
    size = min(getattr(layer, "group_size", None) or n, n)
    smallest = n % size or size
    values = smallest * (values_per_channel(x) // n)
    if values > 1:
        return None
    where = f"a group of {smallest} sample(s)" if size < n else f"a batch of {n} sample(s)"
    return (
        f"batch statistics are undefined: {type(layer).__name__} gets {values} value per "
        f"channel from {where} (input shape {tuple(x.shape)})"
    )


def _layer_names(model: nn.Module) -> dict[int, str]:
    return {id(m): name or "model" for name, m in model.named_modules()}


@contextmanager
def require_defined_batch_stats(model: nn.Module) -> Iterator[nn.Module]:
    """Inside the context, a BN layer normalizing with batch statistics (training mode) over a
    group of one value per channel raises :class:`UndefinedStatisticsError` naming it."""
    names = _layer_names(model)

    def check(layer: nn.Module, args: tuple[Any, ...]) -> None:
        problem = batch_stats_problem(layer, args[0]) if layer.training else None
        if problem is not None:
            raise UndefinedStatisticsError(f"{names[id(layer)]}: {problem}")

    hooks = [layer.register_forward_pre_hook(check, prepend=True) for layer in bn_layers(model)]
    try:
        yield model
    finally:
        for hook in hooks:
            hook.remove()


@contextmanager
def use_prior_weighted_stats(model: nn.Module, prior: float) -> Iterator[nn.Module]:
    """Inside the context, every BN layer normalizes each batch with its statistics mixed with
    the running ones under prior strength ``prior`` = N ≥ 0 (Schneider et al. 2020; see the
    module docstring). The layers run their own eval-mode formula on the mixed statistics,
    which are written into their running buffers for the forward; on exit every mode and
    buffer is restored exactly.

    Raises:
        ConfigError: a negative or non-finite prior.
        UndefinedStatisticsError: N = 0 and a batch holds one value per channel.
    """
    if not (prior >= 0 and prior != float("inf")):
        raise ConfigError(f"the prior strength N must be a finite number >= 0, got {prior}.")
    layers = bn_layers(model)
    names = _layer_names(model)
    saved = [
        (layer, layer.training, [(b, b.detach().clone()) for b in layer.buffers(recurse=False)])
        for layer in layers
    ]
    source = {
        id(layer): (layer.running_mean.detach().double(), layer.running_var.detach().double())
        for layer in layers
    }

    @torch.no_grad()
    def mix(layer: nn.Module, args: tuple[Any, ...]) -> None:
        x = args[0].detach()
        if prior == 0:
            problem = batch_stats_problem(layer, x)
            if problem is not None:
                raise UndefinedStatisticsError(f"{names[id(layer)]}: {problem}")
        mean_t, var_t = batch_mean_var(x.double())
        n = x.shape[0]
        w_source, w_target = prior / (prior + n), n / (prior + n)
        mean_s, var_s = source[id(layer)]
        layer.running_mean.copy_(w_source * mean_s + w_target * mean_t)
        layer.running_var.copy_(w_source * var_s + w_target * var_t)

    hooks = [layer.register_forward_pre_hook(mix) for layer in layers]
    try:
        for layer in layers:
            layer.eval()
        yield model
    finally:
        for hook in hooks:
            hook.remove()
        with torch.no_grad():
            for layer, training, buffers in saved:
                layer.train(training)
                for buf, value in buffers:
                    buf.copy_(value)
