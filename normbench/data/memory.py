"""Device-resident batching for datasets that fit in memory.

The whole split lives as tensors on the training device; a batch is an index slice of a
per-epoch random permutation. No per-sample Python work, no DataLoader workers. Each epoch's
permutation is a function of (seed, epoch), so the loader's whole state is two integers and
a resumed run sees exactly the batches it would have seen.
"""

from __future__ import annotations

import torch

from normbench.errors import ConfigError


class InMemoryLoader:
    """Endless iterator of shuffled ``(x, y)`` batches; the last partial batch of an epoch is dropped."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, seed: int) -> None:
        if batch_size > len(x):
            raise ConfigError(
                f"dataset.batch_size={batch_size} is larger than the training set ({len(x)} "
                "examples); lower dataset.batch_size."
            )
        self.x, self.y = x, y
        self.batch_size = batch_size
        self.seed = seed
        self.steps_per_epoch = len(x) // batch_size
        self.epoch = 0
        self.position = 0
        self._perm = self._permutation(self.epoch)

    def _permutation(self, epoch: int) -> torch.Tensor:
        gen = torch.Generator(device="cpu").manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(len(self.x), generator=gen).to(self.x.device, non_blocking=True)

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The next batch (advances the epoch when the current one is used up)."""
        if self.position == self.steps_per_epoch:
            self.epoch += 1
            self.position = 0
            self._perm = self._permutation(self.epoch)
        start = self.position * self.batch_size
        idx = self._perm[start : start + self.batch_size]
        self.position += 1
        return self.x.index_select(0, idx), self.y.index_select(0, idx)

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
        self._perm = self._permutation(self.epoch)

