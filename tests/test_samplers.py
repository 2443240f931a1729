"""Non-i.i.d. batches (``batching.classes=k``): every batch holds exactly k classes with
batch_size / k images of each, an epoch uses every image at most once (every one, on balanced
data), the order is a function of (seed, epoch), and a resumed loader continues exactly."""

from __future__ import annotations

from collections import Counter

import pytest
import torch

from normbench.data.memory import InMemoryLoader
from normbench.data.samplers import class_batches
from normbench.errors import ConfigError


def balanced(classes: int = 10, per_class: int = 40) -> torch.Tensor:
    labels = torch.arange(classes).repeat_interleave(per_class)
    return labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(1))]


def blocks(order: torch.Tensor, batch_size: int) -> list[list[int]]:
    return [order[i : i + batch_size].tolist() for i in range(0, len(order), batch_size)]


@pytest.mark.parametrize("batch_size,k", [(10, 5), (32, 2), (20, 10), (8, 1)])
def test_every_batch_holds_k_classes_and_the_epoch_every_image_once(batch_size, k):
    labels = balanced(10, 80)
    order = class_batches(labels, batch_size, k, torch.Generator().manual_seed(0))
    assert sorted(order.tolist()) == list(range(len(labels)))  # each image once: all of them
    for batch in blocks(order, batch_size):
        per_class = Counter(labels[batch].tolist())
        assert len(per_class) == k
        assert set(per_class.values()) == {batch_size // k}


def test_unequal_classes_use_each_image_at_most_once_and_drop_only_what_fits_no_batch():
    sizes = [3, 50, 41, 40, 17, 9, 30, 30, 30, 62]
    labels = torch.cat([torch.full((n,), c) for c, n in enumerate(sizes)])
    batch_size, k = 10, 5
    order = class_batches(labels, batch_size, k, torch.Generator().manual_seed(3))
    used = order.tolist()
    assert len(used) == len(set(used)) and len(used) % batch_size == 0
    for batch in blocks(order, batch_size):
        assert sorted(Counter(labels[batch].tolist()).values()) == [2] * k
    # groups of 2 images per class; a batch takes at most one group of a class, so B batches
    # need sum(min(groups_c, B)) >= k B: the most batches possible is the largest such B (30)
    groups = [n // 2 for n in sizes]
    most = max(b for b in range(200) if sum(min(g, b) for g in groups) >= k * b)
    assert most == 30 and len(used) // batch_size == most


def test_the_order_is_a_function_of_the_generator_and_batches_mix_classes():
    labels = balanced(10, 40)
    a = class_batches(labels, 10, 5, torch.Generator().manual_seed(7))
    b = class_batches(labels, 10, 5, torch.Generator().manual_seed(7))
    c = class_batches(labels, 10, 5, torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)
    sets = {frozenset(labels[batch].tolist()) for batch in blocks(a, 10)}
    assert len(sets) > 10  # not a fixed pairing of class sets


@pytest.mark.parametrize(
    "batch_size,k,message",
    [(10, 3, "must divide dataset.batch_size=10"), (24, 12, "the training data has 10 classes")],
)
def test_bad_settings_are_one_clear_error(batch_size, k, message):
    with pytest.raises(ConfigError, match=message):
        class_batches(balanced(), batch_size, k, torch.Generator().manual_seed(0))


def test_the_loader_resumes_mid_epoch_exactly():
    labels = balanced(10, 12)
    x = torch.arange(len(labels), dtype=torch.float32).view(-1, 1)
    full = InMemoryLoader(x, labels, 10, seed=5, classes=5)
    assert full.steps_per_epoch == 12
    seen = [full.next()[0].flatten().tolist() for _ in range(30)]  # 2.5 epochs
    first = InMemoryLoader(x, labels, 10, seed=5, classes=5)
    for _ in range(17):
        first.next()
    resumed = InMemoryLoader(x, labels, 10, seed=5, classes=5)
    resumed.load_state_dict(first.state_dict())
    assert [resumed.next()[0].flatten().tolist() for _ in range(13)] == seen[17:]
    for epoch in range(2):
        images = [i for batch in seen[12 * epoch : 12 * (epoch + 1)] for i in batch]
        assert sorted(images) == [float(i) for i in range(len(labels))]
        for batch in seen[12 * epoch : 12 * (epoch + 1)]:
            got = Counter(labels[[int(i) for i in batch]].tolist())
            assert len(got) == 5 and set(got.values()) == {2}
    assert seen[:12] != seen[12:24]  # a new order each epoch
