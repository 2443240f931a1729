"""Online learning: a training batch whose size changes every step (``batching.sizes``).

``batching.sizes=[low, high]``: the batch of step t holds b_t images, drawn uniformly from
low..high by a generator seeded with (seed, t), so a resumed run draws the same sizes (e.g.
[2, 64], or a stream of small batches [2, 8]; [b, b] is a fixed batch of b). The images come
in order from the epoch's shuffle (an epoch ends when the next batch no longer fits).
``batching.lr_scaling`` says what the learning rate does: ``fixed`` (the schedule's rate
whatever the batch), or ``linear`` (the schedule's rate x b_t / dataset.batch_size, the linear
scaling rule); metrics.csv's ``lr`` is the schedule's rate before that factor.

A batch that a layer cannot normalize with batch statistics (one value per channel: a batch of
one image in an MLP, or after global pooling) is skipped: no update, the layers' running
statistics restored, and counted (summary.json's ``batching.skipped_batches``). It never
crashes the run. The step counter and the schedule still advance: the batch arrived.
"""

from __future__ import annotations

from typing import Any

import torch
from omegaconf import DictConfig
from torch import nn

from normbench.data.memory import InMemoryLoader
from normbench.engine.fastpath import FastPath, train_step
from normbench.errors import ConfigError
from normbench.norms.stats import UndefinedStatisticsError, bn_layers, require_defined_batch_stats

LR_SCALING = ("fixed", "linear")


def variable_batches(cfg: DictConfig, world_size: int, loader: Any) -> VariableBatches | None:
    """The run's :class:`VariableBatches`, or None without ``batching.sizes``; one clear error
    where the training data are not held in memory (image folders come in fixed batches)."""
    if cfg.batching.sizes is None:
        return None
    if not isinstance(loader, InMemoryLoader):
        raise ConfigError(
            "batching.sizes (online learning) needs a dataset held in memory; image folders "
            "are drawn in fixed batches: set batching.sizes=null."
        )
    return VariableBatches(cfg, world_size)


class VariableBatches:
    """The batch size of every step, the learning-rate factor, and the skipped batches."""

    def __init__(self, cfg: DictConfig, world_size: int) -> None:
        low, high = (int(v) for v in cfg.batching.sizes)
        if not 1 <= low <= high:
            raise ConfigError(
                f"batching.sizes=[{low}, {high}] must be [low, high] with 1 <= low <= high."
            )
        if cfg.batching.lr_scaling not in LR_SCALING:
            raise ConfigError(
                f"batching.lr_scaling={cfg.batching.lr_scaling} is not one of "
                f"{', '.join(LR_SCALING)}."
            )
        for key, value, why in (
            ("per_device.images", cfg.per_device.images, "groups of a fixed size"),
            ("batching.classes", cfg.batching.classes, "a fixed number of images per class"),
        ):
            if value is not None:
                raise ConfigError(
                    f"batching.sizes and {key}={value} cannot be combined ({key} needs {why}); "
                    f"set {key}=null."
                )
        if world_size > 1:
            raise ConfigError(
                "batching.sizes (a batch size that changes every step) runs in one process; "
                "run it without torchrun."
            )
        self.low, self.high, self.seed = low, high, int(cfg.seed)
        self.scaling, self.reference = cfg.batching.lr_scaling, int(cfg.dataset.batch_size)
        self.images = 0  # images trained on (skipped batches excluded)
        self.skipped = 0

    def size(self, step: int) -> int:
        """The size of the batch of the step after ``step`` steps (a function of seed, step)."""
        gen = torch.Generator().manual_seed((self.seed * 1_000_003 + step) * 2 + 1)
        return int(torch.randint(self.low, self.high + 1, (1,), generator=gen))

    def lr_factor(self, size: int) -> float:
        return size / self.reference if self.scaling == "linear" else 1.0

    def train_step(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        optimizer: torch.optim.Optimizer,
        fast: FastPath,
        rates: list[float],
    ) -> torch.Tensor | None:
        """One step on a batch of ``len(x)`` images at the schedule's ``rates`` (times the
        factor); None when the batch was skipped (its statistics are undefined)."""
        factor = self.lr_factor(len(x))
        for group, rate in zip(optimizer.param_groups, rates, strict=True):
            group["lr"] = rate * factor
        if len(x) > 1:  # two or more values per channel in every layer: always defined
            loss = train_step(model, x, y, optimizer, fast)
            self.images += len(x)
            return loss
        layers = bn_layers(model)
        saved = [[b.detach().clone() for b in layer.buffers(recurse=False)] for layer in layers]
        try:
            with require_defined_batch_stats(model):
                loss = train_step(model, x, y, optimizer, fast)
        except UndefinedStatisticsError:
            optimizer.zero_grad(set_to_none=True)
            for layer, buffers in zip(layers, saved, strict=True):
                for buffer, value in zip(layer.buffers(recurse=False), buffers, strict=True):
                    buffer.copy_(value)
            self.skipped += 1
            return None
        self.images += len(x)
        return loss

    def state_dict(self) -> dict[str, int]:
        return {"images": self.images, "skipped": self.skipped}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.images, self.skipped = int(state["images"]), int(state["skipped"])

    def as_dict(self) -> dict[str, Any]:
        """What summary.json records."""
        return {
            "sizes": [self.low, self.high],
            "lr_scaling": self.scaling,
            "images": self.images,
            "skipped_batches": self.skipped,
        }
