"""The order training examples are drawn in, one epoch at a time.

- i.i.d. (the default): a uniform shuffle of the whole training set; consecutive slices of it
  are the batches, the last partial batch dropped.
- Non-i.i.d. (``batching.classes=k``): every batch holds exactly ``k`` classes with ``m =
  batch_size / k`` images of each, as Batch Renormalization's paper builds its 32-batches from
  16 labels x 2 images (Ioffe 2017 §4.3). Fashion-MNIST has 10 classes: e.g. 5 x 2 at batch 10,
  or 2 x 16 at batch 32.

A non-i.i.d. epoch covers the data as the i.i.d. one does, once each, except what cannot fill a
batch: each class's last ``n_c mod m`` images, and (for classes of unequal size) the groups of m
that no valid batch can take. On balanced data whose class sizes are multiples of m, every
image is used once per epoch. Which classes meet in a batch is random (weighted by the groups
each class has left), with the one constraint that keeps every later batch possible: a class
with as many groups left as there are batches left is in every one of them.
"""

from __future__ import annotations

import torch

from normbench.errors import ConfigError


def check_classes(labels: torch.Tensor, batch_size: int, classes: int) -> int:
    """The images per class of a batch (``batch_size / classes``).

    Raises:
        ConfigError: ``classes`` does not divide the batch, or the data has fewer classes.
    """
    present = int(torch.unique(labels).numel())
    if classes < 1 or batch_size % classes:
        raise ConfigError(
            f"batching.classes={classes} must divide dataset.batch_size={batch_size} (each "
            "batch holds that many classes, batch_size / classes images of each); choose e.g. "
            f"batching.classes={_divisor_near(batch_size, classes)}."
        )
    if classes > present:
        raise ConfigError(
            f"batching.classes={classes}, but the training data has {present} classes; "
            f"choose batching.classes <= {present}."
        )
    return batch_size // classes


def _divisor_near(n: int, k: int) -> int:
    return min((d for d in range(1, n + 1) if n % d == 0), key=lambda d: (abs(d - k), d))


def _usable_counts(counts: torch.Tensor, classes: int, gen: torch.Generator) -> torch.Tensor:
    """Groups per class that fill whole batches of ``classes`` distinct classes: no class more
    than total / classes, and total a multiple of ``classes`` (surplus dropped at random among
    the largest classes)."""
    counts = counts.clone()
    while True:
        batches = int(counts.sum()) // classes
        over = counts > batches
        if over.any():
            counts[over] = batches
            continue
        extra = int(counts.sum()) - batches * classes
        if extra == 0:
            return counts
        # drop one group from each of the `extra` largest classes (ties broken at random)
        jitter = torch.rand(len(counts), generator=gen)
        order = sorted(range(len(counts)), key=lambda c: (-int(counts[c]), float(jitter[c])))
        counts[order[:extra]] -= 1


def class_batches(
    labels: torch.Tensor, batch_size: int, classes: int, gen: torch.Generator
) -> torch.Tensor:
    """One epoch's order of example indices: consecutive blocks of ``batch_size`` each hold
    ``classes`` classes with ``batch_size / classes`` images of each (in shuffled positions).

    Args:
        labels: (N,) int labels, on any device (the order is drawn on the CPU).
        batch_size: images per batch.
        classes: classes per batch.
        gen: the epoch's CPU generator.
    """
    per_class = check_classes(labels, batch_size, classes)
    labels = labels.cpu()
    groups: list[torch.Tensor] = []  # per class: (groups, per_class) indices, shuffled
    for c in torch.unique(labels):
        idx = torch.nonzero(labels == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=gen)]
        usable = len(idx) // per_class * per_class
        groups.append(idx[:usable].view(-1, per_class))
    counts = _usable_counts(torch.tensor([len(g) for g in groups]), classes, gen)
    taken = [0] * len(groups)
    batches = int(counts.sum()) // classes
    blocks = []
    for b in range(batches):
        left = batches - b
        must = [c for c in range(len(counts)) if counts[c] == left]
        weights = counts.clone().float()
        weights[must] = 0
        free = classes - len(must)
        chosen = must
        if free:
            chosen = must + torch.multinomial(weights, free, generator=gen).tolist()
        block = torch.cat([groups[c][taken[c]] for c in chosen])
        for c in chosen:
            taken[c] += 1
            counts[c] -= 1
        blocks.append(block[torch.randperm(batch_size, generator=gen)])
    return torch.cat(blocks) if blocks else torch.empty(0, dtype=torch.long)
