"""Resumable, exactly replayable training batches from an image folder, decoded by DataLoader workers.

Epoch ``e`` visits the examples in a permutation drawn from (seed, e), and gives each example
slot of the epoch its own augmentation seed drawn from the same generator. A worker seeds
torch's RNG with that seed (inside ``fork_rng``, so the caller's RNG is untouched) right before
it applies the random transforms of that one example. So a batch is a function of
(seed, epoch, position) alone: the same with 0 or 8 workers, and the same after a resume,
which needs nothing but (epoch, position). Only full batches are made (``drop_last``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from normbench.data.memory import shard_bounds
from normbench.errors import ConfigError, DataError


def epoch_order(n: int, seed: int, epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Epoch ``epoch``'s permutation of ``range(n)`` and one augmentation seed per slot."""
    gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    perm = torch.randperm(n, generator=gen)
    seeds = torch.randint(2**62, (n,), generator=gen)
    return perm, seeds


class SeededTransform(Dataset):
    """Item ``(index, seed)`` of ``samples``: the image at ``index``, loaded and transformed with
    torch's RNG seeded by ``seed``, and its label.

    Args:
        samples: (path, label) pairs, as ``ImageFolder.samples``.
        loader: path -> image (PIL).
        transform: image -> tensor; may draw from torch's global RNG.
    """

    def __init__(
        self,
        samples: list[tuple[str, int]],
        loader: Callable[[str], Any],
        transform: Callable[[Any], torch.Tensor],
    ) -> None:
        self.samples, self.loader, self.transform = samples, loader, transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, item: tuple[int, int]) -> tuple[torch.Tensor, int]:
        index, seed = item
        path, label = self.samples[index]
        image = self.loader(path)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return self.transform(image), label


def read_image(path: str) -> Any:
    """The RGB image at ``path`` (PIL), with a clear error when it cannot be decoded."""
    from torchvision.datasets.folder import default_loader

    try:
        return default_loader(path)
    except OSError as err:
        raise DataError(
            f"{path} cannot be read as an image ({type(err).__name__}: {err}); remove or replace it"
        ) from None


class EpochBatches:
    """Batch sampler: the full batches of epoch ``epoch`` from batch ``start`` on, as lists of
    ``(index, seed)``. The loader sets ``epoch`` and ``start`` before each ``iter``."""

    def __init__(self, n: int, batch_size: int, seed: int, shard: tuple[int, int] = (0, 1)) -> None:
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.lo, self.hi = shard_bounds(batch_size, shard)  # this rank's slice of a batch
        self.steps_per_epoch = n // batch_size
        self.epoch = 0
        self.start = 0

    def __len__(self) -> int:
        return self.steps_per_epoch - self.start

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        perm, seeds = epoch_order(self.n, self.seed, self.epoch)
        for position in range(self.start, self.steps_per_epoch):
            lo, hi = position * self.batch_size + self.lo, position * self.batch_size + self.hi
            yield list(zip(perm[lo:hi].tolist(), seeds[lo:hi].tolist(), strict=True))


class FolderLoader:
    """Endless training batches from ``dataset`` (items ``(index, seed)``), on ``device``.

    Same interface as :class:`~normbench.data.memory.InMemoryLoader`: :meth:`next`,
    ``steps_per_epoch``, :meth:`state_dict` / :meth:`load_state_dict` (epoch and position).

    Args:
        dataset: a :class:`SeededTransform` (or any dataset taking ``(index, seed)`` items).
        batch_size: examples per batch.
        seed: the run's seed.
        device: where batches go (copied ``non_blocking`` from pinned memory on CUDA).
        num_workers: DataLoader worker processes (0: decode in this process).
        shard: ``(rank, world_size)``: this process's slice of every global batch.
    """

    def __init__(
        self,
        dataset: Dataset,
        batch_size: int,
        seed: int,
        device: torch.device,
        num_workers: int,
        shard: tuple[int, int] = (0, 1),
    ) -> None:
        n = len(dataset)
        if batch_size > n:
            raise ConfigError(
                f"dataset.batch_size={batch_size} is larger than the training set ({n} "
                "images); lower dataset.batch_size."
            )
        self.device = device
        self.batches = EpochBatches(n, batch_size, seed, shard)
        self.steps_per_epoch = self.batches.steps_per_epoch
        self.epoch = 0
        self.position = 0
        # A private generator: DataLoader draws its workers' base seed from it, not from the
        # global RNG, so creating an iterator (at start, per epoch, on resume) leaves training
        # randomness (dropout ...) untouched.
        self.loader = DataLoader(
            dataset,
            batch_sampler=self.batches,
            num_workers=num_workers,
            pin_memory=device.type == "cuda",
            persistent_workers=num_workers > 0,
            generator=torch.Generator().manual_seed(seed),
        )
        self._it: Iterator[tuple[torch.Tensor, torch.Tensor]] | None = None

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The next batch (advances the epoch when the current one is used up)."""
        if self.position == self.steps_per_epoch:
            self.epoch += 1
            self.position = 0
            self._it = None
        if self._it is None:
            self.batches.epoch, self.batches.start = self.epoch, self.position
            self._it = iter(self.loader)
        x, y = next(self._it)
        self.position += 1
        return x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
        self._it = None
