"""Device-resident batching for datasets that fit in memory.

The whole split lives as tensors on the training device; a batch is an index slice of a
per-epoch random permutation. No per-sample Python work, no DataLoader workers. Each epoch's
permutation, and the augmentation parameters of each of its example slots, are drawn from one
generator seeded by (seed, epoch), so the loader's whole state is two integers and a resumed
run sees exactly the (augmented) batches it would have seen.

Distributed runs (torchrun): every rank draws the same permutation and takes its own slice of
each global batch (``shard=(rank, world_size)``), so the global batch and the epoch order are
those of the single-process run.
"""

from __future__ import annotations

import torch

from normbench.data.augment import CropFlipParams, RandomCropFlip
from normbench.data.samplers import class_batches
from normbench.errors import ConfigError


class InMemoryLoader:
    """Endless iterator of shuffled ``(x, y)`` batches; the last partial batch of an epoch is dropped.

    Args:
        x: inputs (N, ...), on the training device.
        y: labels (N,), on the same device.
        batch_size: examples per batch.
        seed: the run's seed; epoch ``e`` is shuffled (and augmented) by a function of (seed, e).
        augment: on-device augmentation of training batches, or None.
        shard: ``(rank, world_size)``: this process's slice of every global batch of
            ``batch_size`` examples (``batch_size / world_size`` each).
        classes: None: i.i.d. batches (a shuffle of the whole set); k: each batch holds k
            classes, ``batch_size / k`` images of each (:func:`normbench.data.samplers.class_batches`).
    """

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        batch_size: int,
        seed: int,
        augment: RandomCropFlip | None = None,
        shard: tuple[int, int] = (0, 1),
        classes: int | None = None,
    ) -> None:
        self.shard_lo, self.shard_hi = shard_bounds(batch_size, shard)
        if batch_size > len(x):
            raise ConfigError(
                f"dataset.batch_size={batch_size} is larger than the training set ({len(x)} "
                "examples); lower dataset.batch_size."
            )
        self.x, self.y = x, y
        self.batch_size = batch_size
        self.seed = seed
        self.augment = augment
        self.classes = classes
        self.epoch = 0
        self.position = 0  # batches of batch_size drawn in this epoch
        self.offset = 0  # examples drawn in this epoch by next(size) (online learning)
        self._start_epoch(self.epoch)
        self.steps_per_epoch = len(self._perm) // batch_size
        if self.steps_per_epoch == 0:
            raise ConfigError(
                f"batching.classes={classes} leaves no whole batch of {batch_size} in the "
                "training set; lower dataset.batch_size."
            )

    def _start_epoch(self, epoch: int) -> None:
        """Draw epoch ``epoch``'s permutation, then its augmentation parameters, on the CPU."""
        gen = torch.Generator(device="cpu").manual_seed(self.seed * 1_000_003 + epoch)
        n, device = len(self.x), self.x.device
        if self.classes is None:
            perm = torch.randperm(n, generator=gen)
        else:
            perm = class_batches(self.y, self.batch_size, self.classes, gen)
        self._perm = perm.to(device, non_blocking=True)
        self._params: CropFlipParams | None = (
            self.augment.draw(n, gen, device) if self.augment is not None else None
        )

    def next(self, size: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The next batch (advances the epoch when the current one is used up). ``size``: a
        batch of that many examples instead (online learning: the next ``size`` of the epoch's
        order, from a new epoch when they no longer fit; one process only)."""
        if size is not None:
            return self._next_of(size)
        if self.position == self.steps_per_epoch:
            self.epoch += 1
            self.position = 0
            self._start_epoch(self.epoch)
        start = self.position * self.batch_size + self.shard_lo
        stop = self.position * self.batch_size + self.shard_hi
        idx = self._perm[start:stop]
        self.position += 1
        return self._batch(idx, start, stop)

    def _next_of(self, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not 0 < size <= len(self._perm):
            raise ConfigError(
                f"a batch of {size} examples does not fit the training set ({len(self._perm)})."
            )
        if self.offset + size > len(self._perm):
            self.epoch += 1
            self.offset = 0
            self._start_epoch(self.epoch)
        start, stop = self.offset, self.offset + size
        self.offset = stop
        return self._batch(self._perm[start:stop], start, stop)

    @property
    def epochs(self) -> float:
        """Epochs of data drawn so far (online learning: whole epochs and the current offset)."""
        return self.epoch + self.offset / len(self._perm)

    def _batch(self, idx: torch.Tensor, start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.x.index_select(0, idx)
        if self._params is not None:
            x = self.augment.apply(x, self._params.slice(start, stop))
        return x, self.y.index_select(0, idx)

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position, "offset": self.offset}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
        self.offset = int(state.get("offset", 0))  # checkpoints before online learning: 0
        self._start_epoch(self.epoch)


def shard_bounds(batch_size: int, shard: tuple[int, int]) -> tuple[int, int]:
    """``[lo, hi)``: rank ``shard[0]``'s slice of a global batch of ``batch_size`` examples."""
    rank, world = shard
    if batch_size % world:
        raise ConfigError(
            f"dataset.batch_size={batch_size} (the global batch) is not divisible by the "
            f"{world} processes of this run; choose a batch that is a multiple of "
            "--nproc_per_node."
        )
    size = batch_size // world
    return rank * size, (rank + 1) * size
