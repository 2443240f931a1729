"""A dataset held in memory as tensors: both splits, and what the engine asks of a dataset."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from normbench.data.augment import RandomCropFlip
from normbench.data.memory import InMemoryLoader
from normbench.errors import ConfigError


@dataclass
class Splits:
    """A dataset in memory: images (N, C, H, W) float32 in [0, 1] (or standardized), int64 labels.

    What the engine asks of any dataset: ``num_classes``, ``in_shape``, ``source``,
    :meth:`train_loader`, :meth:`val_batches` and :meth:`probe_inputs`.
    """

    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    num_classes: int
    source: str
    augment: RandomCropFlip | None = None  # on-device augmentation of training batches

    @property
    def in_shape(self) -> tuple[int, ...]:
        return tuple(self.train_x.shape[1:])

    def train_loader(
        self,
        batch_size: int,
        seed: int,
        shard: tuple[int, int] = (0, 1),
        classes: int | None = None,
    ) -> InMemoryLoader:
        """Endless shuffled (and augmented) training batches, resumable (see :class:`InMemoryLoader`);
        ``shard=(rank, world_size)``: this process's slice of each global batch; ``classes``: k
        classes per batch (non-i.i.d.) or None (i.i.d.)."""
        return InMemoryLoader(
            self.train_x, self.train_y, batch_size, seed, self.augment, shard, classes
        )

    def val_batches(self, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The validation split in order, in batches of at most ``batch_size``."""
        return zip(self.val_x.split(batch_size), self.val_y.split(batch_size), strict=True)

    def probe_inputs(self, n: int) -> torch.Tensor:
        """The first ``n`` validation inputs: the fixed batch the activation probes run on."""
        return self.val_x[:n]


def images_to_tensor(array: np.ndarray) -> torch.Tensor:
    """uint8 in 0..255 or float in [0, 1], (N, H, W) or (N, H, W, C) -> float32 (N, C, H, W) in [0, 1]."""
    x = torch.from_numpy(np.ascontiguousarray(array))
    x = x.unsqueeze(1) if x.ndim == 3 else x.permute(0, 3, 1, 2)
    return (x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()).contiguous()


def holdout(splits: Splits, size: int) -> Splits:
    """Replace the validation split by the last ``size`` examples of a fixed shuffle of train."""
    n = len(splits.train_x)
    if not 0 < size < n:
        raise ConfigError(f"dataset.holdout_size must be in 1..{n - 1}, got {size}.")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(0))
    keep, held = perm[: n - size], perm[n - size :]
    return Splits(
        splits.train_x[keep],
        splits.train_y[keep],
        splits.train_x[held],
        splits.train_y[held],
        splits.num_classes,
        splits.source + f" (holdout {size} of train)",
    )


def standardize_splits(splits: Splits) -> None:
    """Standardize both splits per channel with the training split's mean and std."""
    dims = [0, 2, 3]
    mean = splits.train_x.mean(dim=dims, keepdim=True)
    std = splits.train_x.std(dim=dims, keepdim=True).clamp_min(1e-8)
    splits.train_x = (splits.train_x - mean) / std
    splits.val_x = (splits.val_x - mean) / std
