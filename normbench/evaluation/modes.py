"""The statistics modes of ``normbench eval``: how a trained model's norm layers see test data.

========  ==========================  ================================================================
mode      knobs (default)             what the BN layers normalize with
========  ==========================  ================================================================
running   batch_size (trainer.        their running (EMA) statistics, as trained, in batches of
          eval_batch_size)            ``batch_size`` (in eval mode no sample sees another)
precise   samples (training set)      population statistics of ``samples`` training samples (Precise
                                      BN, Wu & Johnson 2021), each layer grouping as in training
batch     batch_size (training's)     each evaluation batch's own statistics (prediction-time BN)
adapt     samples (evaluation set)    population statistics of ``samples`` unlabeled evaluation
                                      samples (AdaBN, Li et al. 2016), then fixed
partial   prior N (16), batch_size n  the source statistics mixed with each batch's, weights
          (8)                         N/(N+n), n/(N+n) (Schneider et al. 2020)
tent      steps (1), lr (recipe),     each batch's statistics, while the norm layers' affine parameters
          batch_size (recipe)         minimise the prediction entropy online (Wang et al. 2021)
========  ==========================  ================================================================

``precise`` and ``adapt`` estimate from whole batches of the run's training batch size (so
each layer's training-time grouping applies): ``samples`` is rounded down to whole batches, or
taken as one batch when smaller than one. ``batch``, ``partial`` and ``tent`` see the
evaluation split in a fixed random order (seed 0), so that each batch is an i.i.d. draw even
from a class-sorted folder; ``adapt`` draws its subset from the same order. ``partial`` mixes
in the statistics of the whole evaluation batch (n samples), whatever a layer's training-time
grouping; its defaults are our choice for the few-sample regime the paper calls partial
adaptation.

Modes that only change statistics do not apply to a model without batch statistics: they give
the running result, flagged ``applied=False``. A batch statistic of a single value per channel
makes the evaluation ``undefined`` (not an error).
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import IO, Any, TypeVar

import torch
from torch import nn

from normbench.engine.evaluate import Metrics, evaluate
from normbench.engine.fastpath import FastPath
from normbench.errors import ConfigError
from normbench.evaluation.data import EvalData
from normbench.evaluation.tent import (
    norm_affine_parameters,
    recipe_for,
    tent_mode,
    tent_optimizer,
    tent_predictions,
)
from normbench.norms.stats import (
    UndefinedStatisticsError,
    recompute_bn_stats,
    require_defined_batch_stats,
    use_prior_weighted_stats,
)

T = TypeVar("T")
KNOBS = ("samples", "batch_size", "prior", "steps", "lr")
#: mode -> the knobs it takes
MODES: dict[str, tuple[str, ...]] = {
    "running": ("batch_size",),
    "precise": ("samples",),
    "batch": ("batch_size",),
    "adapt": ("samples",),
    "partial": ("prior", "batch_size"),
    "tent": ("steps", "lr", "batch_size"),
}
PARTIAL_PRIOR, PARTIAL_BATCH = 16.0, 8
ORDER_SEED = 0


@dataclass(frozen=True)
class Knobs:
    """A mode's knobs; None where not given (before resolution) or not used."""

    samples: int | None = None
    batch_size: int | None = None
    prior: float | None = None
    steps: int | None = None
    lr: float | None = None


def check_mode(mode: str) -> None:
    """Raises ConfigError naming the valid modes unless ``mode`` is one."""
    if mode not in MODES:
        raise ConfigError(
            f"mode={mode} is not a statistics mode; choose one of {', '.join(MODES)}."
        )


def parse_knob(name: str, text: str) -> int | float:
    """The value of knob ``name`` typed as ``text``, checked against its range.

    Raises:
        ConfigError: not a number, or out of range (the message names the valid values).
    """
    integer = name in ("samples", "batch_size", "steps")
    wanted = {
        "samples": "an integer >= 1 (samples for the statistics)",
        "batch_size": "an integer >= 1 (samples per evaluation batch)",
        "steps": "an integer >= 1 (Tent updates per batch)",
        "prior": "a number >= 0 (the prior strength N, in samples)",
        "lr": "a number > 0 (Tent's learning rate)",
    }[name]
    try:
        value: int | float = int(text) if integer else float(text)
    except ValueError:
        raise ConfigError(f"{name}={text} is not valid: {name} must be {wanted}.") from None
    low_ok = value >= 1 if integer else (value > 0 if name == "lr" else value >= 0)
    if not (low_ok and math.isfinite(value)):
        raise ConfigError(f"{name}={text} is out of range: {name} must be {wanted}.")
    return value


class Progress:
    """A line every ``every_s`` seconds while batches go by:
    ``eval <run> mode=precise: statistics 30/100 batches``."""

    def __init__(
        self,
        label: str,
        every_s: float = 10.0,
        stream: IO[str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.label, self.every_s, self.stream, self.clock = label, every_s, stream, clock
        self.last = clock()

    def track(self, items: Iterable[T], phase: str, total: int) -> Iterator[T]:
        """Yield ``items``, printing a progress line when one is due."""
        for done, item in enumerate(items, 1):
            yield item
            now = self.clock()
            if now - self.last >= self.every_s:
                stream = self.stream or sys.stderr
                print(f"{self.label}: {phase} {done}/{total} batches", file=stream, flush=True)
                self.last = now


@dataclass
class EvalSetup:
    """A loaded run, ready to be evaluated (its model holds the checkpoint's state)."""

    model: nn.Module
    fast: FastPath
    data: EvalData  #: the evaluation split
    train_data: Any  #: the run's dataset (``train_loader``), for ``precise``
    train_size: int  #: samples in the run's training split
    train_batch_size: int  #: the run's (effective) training batch size
    eval_batch_size: int  #: trainer.eval_batch_size
    seed: int  #: the run's seed
    no_batch_stats: str  #: why the modes of statistics do not apply ('' when they do)
    large_scale: bool  #: ImageNet-scale data (Tent's SGD recipe)
    progress: Progress


@dataclass
class Outcome:
    """One evaluation's result: resolved knobs, metrics (None when undefined), and flags."""

    knobs: Knobs
    metrics: dict[str, float] | None
    applied: bool = True
    status: str = "ok"
    note: str = ""


def _batches(n: int, size: int) -> int:
    return max(1, math.ceil(n / size))


def whole_batches(samples: int, batch_size: int) -> int:
    """Samples used for ``samples`` asked: whole batches of ``batch_size`` (one smaller batch
    when fewer than one batch is asked)."""
    return samples if samples < batch_size else samples // batch_size * batch_size


def random_order(n: int) -> torch.Tensor:
    """The fixed random order of an evaluation split of ``n`` samples."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(ORDER_SEED))


def training_batches(
    train_data: Any, batch_size: int, samples: int, seed: int
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The first ``samples`` (a multiple of ``batch_size``, or fewer than one batch) of the
    run's shuffled (and augmented) training stream for ``seed``, in batches."""
    size = min(batch_size, samples)
    loader = train_data.train_loader(size, seed)
    for _ in range(samples // size):
        yield loader.next()


def _sample_count(asked: int | None, available: int, where: str) -> int:
    if asked is None:
        return available
    if asked > available:
        raise ConfigError(
            f"samples={asked} is out of range: {where} has {available} samples; choose "
            f"samples in 1..{available}."
        )
    return asked


def resolve(mode: str, knobs: Knobs, setup: EvalSetup) -> tuple[Knobs, str]:
    """The knobs ``mode`` will use (defaults filled in, samples rounded) and a note when the
    rounding changed what was asked.

    Raises:
        ConfigError: more samples than the split holds.
    """
    if mode in ("precise", "adapt"):
        where = "the training split" if mode == "precise" else f"data {setup.data.label}"
        total = setup.train_size if mode == "precise" else setup.data.num_samples
        asked = _sample_count(knobs.samples, total, where)
        used = whole_batches(asked, setup.train_batch_size)
        note = "" if used == asked else f"{asked} samples asked, {used} used (whole batches)"
        return Knobs(samples=used), note
    if mode == "batch":
        return Knobs(batch_size=knobs.batch_size or setup.train_batch_size), ""
    if mode == "partial":
        prior = PARTIAL_PRIOR if knobs.prior is None else knobs.prior
        return Knobs(prior=prior, batch_size=knobs.batch_size or PARTIAL_BATCH), ""
    if mode == "tent":
        recipe = recipe_for(setup.large_scale)
        size = knobs.batch_size or recipe.batch_size
        lr = knobs.lr if knobs.lr is not None else recipe.scaled_lr(size)
        return Knobs(batch_size=size, steps=knobs.steps or 1, lr=lr), ""
    if mode == "running":
        return Knobs(batch_size=knobs.batch_size), ""  # None: trainer.eval_batch_size
    return Knobs(), ""


def _running(setup: EvalSetup, batch_size: int | None = None) -> dict[str, float]:
    data, size = setup.data, batch_size or setup.eval_batch_size
    batches = setup.progress.track(
        data.batches(size), "evaluation", _batches(data.num_samples, size)
    )
    return evaluate(setup.model, batches, setup.fast, calibration=True)


def _in_random_order(setup: EvalSetup, size: int, phase: str = "evaluation") -> Iterator[Any]:
    n = setup.data.num_samples
    return setup.progress.track(setup.data.batches(size, random_order(n)), phase, _batches(n, size))


def _population(setup: EvalSetup, batches: Iterable[Any], total: int) -> dict[str, float]:
    with require_defined_batch_stats(setup.model):
        recompute_bn_stats(
            setup.model, setup.progress.track(batches, "statistics", total), "population"
        )
    return _running(setup)


def _precise(setup: EvalSetup, knobs: Knobs) -> dict[str, float]:
    size = min(setup.train_batch_size, knobs.samples)
    batches = training_batches(setup.train_data, size, knobs.samples, setup.seed)
    return _population(setup, batches, knobs.samples // size)


def _adapt(setup: EvalSetup, knobs: Knobs) -> dict[str, float]:
    size = min(setup.train_batch_size, knobs.samples)
    subset = random_order(setup.data.num_samples)[: knobs.samples]
    return _population(setup, setup.data.batches(size, subset), knobs.samples // size)


def _batch(setup: EvalSetup, knobs: Knobs) -> dict[str, float]:
    with require_defined_batch_stats(setup.model):
        batches = _in_random_order(setup, knobs.batch_size)
        return evaluate(setup.model, batches, setup.fast, batch_stats=True, calibration=True)


def _partial(setup: EvalSetup, knobs: Knobs) -> dict[str, float]:
    with use_prior_weighted_stats(setup.model, knobs.prior):
        batches = _in_random_order(setup, knobs.batch_size)
        return evaluate(setup.model, batches, setup.fast, calibration=True)


def _tent(setup: EvalSetup, knobs: Knobs) -> dict[str, float]:
    recipe = recipe_for(setup.large_scale)
    metrics = Metrics(next(setup.model.parameters()).device)
    with tent_mode(setup.model) as params:
        optimizer = tent_optimizer(params, recipe, knobs.lr)
        batches = _in_random_order(setup, knobs.batch_size, "adaptation")
        for logits, y in tent_predictions(setup.model, batches, optimizer, knobs.steps, setup.fast):
            metrics.add(logits, y)
    return metrics.result()


RUNNERS: dict[str, Callable[[EvalSetup, Knobs], dict[str, float]]] = {
    "running": lambda setup, knobs: _running(setup, knobs.batch_size),
    "precise": _precise,
    "batch": _batch,
    "adapt": _adapt,
    "partial": _partial,
    "tent": _tent,
}


def run_mode(mode: str, knobs: Knobs, setup: EvalSetup) -> Outcome:
    """Evaluate ``setup`` under ``mode`` (its model is changed: reload it before another).

    Raises:
        ConfigError: an unknown mode or a knob out of range for this run.
    """
    check_mode(mode)
    resolved, note = resolve(mode, knobs, setup)
    if mode == "tent":
        if not norm_affine_parameters(setup.model):
            why = "not applied: the model has no normalization layer with affine parameters"
            return Outcome(resolved, _running(setup), False, "ok", why)
        only_affine = "affine parameters only (no batch statistics)" if setup.no_batch_stats else ""
        recipe = recipe_for(setup.large_scale).describe(resolved.lr)
        note = "; ".join(filter(None, [note, recipe, only_affine]))
    elif mode != "running" and setup.no_batch_stats:
        return Outcome(
            resolved, _running(setup), False, "ok", f"not applied: {setup.no_batch_stats}"
        )
    try:
        metrics = RUNNERS[mode](setup, resolved)
    except UndefinedStatisticsError as err:
        return Outcome(resolved, None, True, "undefined", str(err))
    return Outcome(resolved, metrics, True, "ok", note)
