"""Reader for CIFAR-10 and CIFAR-100 in their "python version" layout (Krizhevsky 2009).

Each batch file is a pickled dict with bytes keys: ``b"data"``, uint8 (N, 3072), one image per
row as three 32x32 planes (red, green, blue), each row-major; and the labels: ``b"labels"``
(CIFAR-10) or ``b"fine_labels"`` / ``b"coarse_labels"`` (CIFAR-100).

- ``cifar-10-batches-py/``: ``data_batch_1`` .. ``data_batch_5`` (train), ``test_batch``.
- ``cifar-100-python/``: ``train``, ``test``.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig

from normbench.data.arrays import Arrays
from normbench.errors import ConfigError, DataError

CIFAR10_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_TEST = ("test_batch",)
CIFAR100_TRAIN = ("train",)
CIFAR100_TEST = ("test",)
CIFAR100_LABELS = {"fine": (b"fine_labels", 100), "coarse": (b"coarse_labels", 20)}


def has_cifar10_files(folder: Path) -> bool:
    """Whether ``folder`` holds every CIFAR-10 batch file."""
    return all((folder / name).is_file() for name in CIFAR10_TRAIN + CIFAR10_TEST)


def has_cifar100_files(folder: Path) -> bool:
    """Whether ``folder`` holds CIFAR-100's train and test files."""
    return all((folder / name).is_file() for name in CIFAR100_TRAIN + CIFAR100_TEST)


def read_batch(path: Path, label_key: bytes) -> tuple[np.ndarray, np.ndarray]:
    """One batch file -> images uint8 (N, 32, 32, 3) and labels int64 (N,).

    Raises:
        DataError: the file is missing, not a CIFAR batch, or inconsistent.
    """
    try:
        with open(path, "rb") as f:
            batch: Any = pickle.load(f, encoding="bytes")
    except FileNotFoundError:
        raise DataError(f"{path} is missing") from None
    except (
        OSError,
        EOFError,
        pickle.UnpicklingError,
        ValueError,
        TypeError,
        AttributeError,
    ) as err:
        raise DataError(
            f"{path} is not a readable CIFAR batch ({type(err).__name__}: {err}); "
            "it is corrupt or truncated, fetch it again"
        ) from None
    if not isinstance(batch, dict) or b"data" not in batch or label_key not in batch:
        keys = sorted(batch) if isinstance(batch, dict) else type(batch).__name__
        raise DataError(
            f"{path} is not a CIFAR batch: expected keys b'data' and {label_key!r}, found {keys}"
        )
    data = np.asarray(batch[b"data"])
    labels = np.asarray(batch[label_key], dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise DataError(f"{path}: b'data' should be uint8 (N, 3072), got {data.dtype} {data.shape}")
    if labels.shape != (len(data),):
        raise DataError(f"{path}: {len(data)} images but {labels.size} labels")
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return images, labels


def _read_split(
    folder: Path, names: tuple[str, ...], label_key: bytes, num_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    parts = [read_batch(folder / name, label_key) for name in names]
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise DataError(
            f"{folder}: labels outside 0..{num_classes - 1} (found {labels.min()}..{labels.max()})"
        )
    return images, labels


def load_cifar10(folder: Path, cfg: DictConfig) -> Arrays:
    """CIFAR-10: 50k train / 10k test, 32x32 RGB, 10 classes."""
    train = _read_split(folder, CIFAR10_TRAIN, b"labels", 10)
    test = _read_split(folder, CIFAR10_TEST, b"labels", 10)
    return Arrays(*train, *test, num_classes=10)


def load_cifar100(folder: Path, cfg: DictConfig) -> Arrays:
    """CIFAR-100: 50k train / 10k test, 32x32 RGB; ``cfg.labels`` picks the 100 fine classes
    or the 20 coarse superclasses.

    Raises:
        ConfigError: ``cfg.labels`` is neither ``fine`` nor ``coarse``.
    """
    which = cfg.get("labels", "fine")
    if which not in CIFAR100_LABELS:
        raise ConfigError(f"dataset.labels={which!r} is not one of {', '.join(CIFAR100_LABELS)}.")
    key, num_classes = CIFAR100_LABELS[which]
    train = _read_split(folder, CIFAR100_TRAIN, key, num_classes)
    test = _read_split(folder, CIFAR100_TEST, key, num_classes)
    return Arrays(*train, *test, num_classes=num_classes)
