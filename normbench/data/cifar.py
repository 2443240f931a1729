"""Reader for CIFAR-10 and CIFAR-100 in their "python version" layout (Krizhevsky 2009).

Each batch file is a pickled dict with bytes keys: ``b"data"``, uint8 (N, 3072), one image per
row as three 32x32 planes (red, green, blue), each row-major; and the labels: ``b"labels"``
(CIFAR-10) or ``b"fine_labels"`` / ``b"coarse_labels"`` (CIFAR-100).

- ``cifar-10-batches-py/``: ``data_batch_1`` .. ``data_batch_5`` (train), ``test_batch``.
- ``cifar-100-python/``: ``train``, ``test``.

The files are pickles, and a plain ``pickle.load`` runs whatever code a crafted file names, so
they are read by :class:`CifarUnpickler`, which builds nothing but what the format holds.
"""

from __future__ import annotations

import importlib
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from omegaconf import DictConfig

from normbench.data.arrays import Arrays
from normbench.errors import ConfigError, DataError

CIFAR10_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_TEST = ("test_batch",)
CIFAR100_TRAIN = ("train",)
CIFAR100_TEST = ("test",)
CIFAR100_LABELS = {"fine": (b"fine_labels", 100), "coarse": (b"coarse_labels", 20)}
OFFICIAL_SOURCE = (
    "https://www.cs.toronto.edu/~kriz/cifar.html, or `normbench data --download cifar10` / "
    "`cifar100` when online"
)


def _numpy_function(name: str, *modules: str) -> Callable[..., Any] | None:
    """``name`` from the first of ``modules`` that has it (numpy 2 moved ``numpy.core`` to
    ``numpy._core``), or None."""
    for module in modules:
        try:
            return getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError):
            continue
    return None


def _latin1_encode(text: Any, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    """``_codecs.encode`` as Python 3 protocol-2 pickles use it for bytes: str -> latin-1 only."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1") or errors != "strict":
        raise RefusedObjectError(
            _shown(f"_codecs.encode of {type(text).__name__} as {encoding!r}, {errors!r}")
        )
    return text.encode("latin-1")


def _allowed_globals() -> dict[tuple[str, str], Any]:
    """The globals a CIFAR batch needs: numpy's array and dtype reconstruction (under numpy 1
    and numpy 2 module names; ``_frombuffer`` is what protocol 5 writes) and bytes for Python 3
    protocol-2 pickles. Nothing that can run code."""
    reconstruct = _numpy_function("_reconstruct", "numpy._core.multiarray", "numpy.core.multiarray")
    frombuffer = _numpy_function("_frombuffer", "numpy._core.numeric", "numpy.core.numeric")
    allowed: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _latin1_encode,
    }
    for old, new, function in (
        ("numpy.core.multiarray", "numpy._core.multiarray", reconstruct),
        ("numpy.core.numeric", "numpy._core.numeric", frombuffer),
    ):
        if function is not None:
            name = function.__name__
            allowed[(old, name)] = allowed[(new, name)] = function
    return allowed


ALLOWED_GLOBALS = _allowed_globals()


class RefusedObjectError(pickle.UnpicklingError):
    """A CIFAR file names a Python object the format does not hold; ``what`` says which."""

    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what


class CifarUnpickler(pickle.Unpickler):
    """Unpickler that resolves only :data:`ALLOWED_GLOBALS` (bytes semantics for Python 2 str).

    Raises:
        RefusedObjectError: the pickle names any other global.
    """

    def __init__(self, file: BinaryIO) -> None:
        super().__init__(file, encoding="bytes")

    def find_class(self, module: str, name: str) -> Any:
        """The allowed object for ``module.name``; anything else is refused."""
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except (KeyError, TypeError):
            raise RefusedObjectError(_shown(f"{module}.{name}")) from None


def _shown(text: str) -> str:
    """``text`` safe to put on one line of an error message."""
    return text if text.isprintable() and len(text) <= 100 else ascii(text[:100])


def _holds_object_array(value: Any) -> bool:
    """Whether ``value`` is or holds (in dicts, lists, tuples) a numpy array of Python objects."""
    stack, seen = [value], set()
    while stack:
        item = stack.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, np.ndarray) and item.dtype.hasobject:
            return True
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
    return False


def has_cifar10_files(folder: Path) -> bool:
    """Whether ``folder`` holds every CIFAR-10 batch file."""
    return all((folder / name).is_file() for name in CIFAR10_TRAIN + CIFAR10_TEST)


def has_cifar100_files(folder: Path) -> bool:
    """Whether ``folder`` holds CIFAR-100's train and test files."""
    return all((folder / name).is_file() for name in CIFAR100_TRAIN + CIFAR100_TEST)


def _refused(path: Path, what: str) -> DataError:
    return DataError(
        f"{path} holds a Python object other than the CIFAR format allows ({what}), so it was "
        f"not loaded; fetch the dataset again from the official source ({OFFICIAL_SOURCE})"
    )


def load_pickle(path: Path) -> Any:
    """Unpickle CIFAR file ``path`` with :class:`CifarUnpickler`.

    Raises:
        DataError: the file is missing, unreadable, or holds an object the format does not.
    """
    try:
        with open(path, "rb") as f:
            batch = CifarUnpickler(f).load()
    except FileNotFoundError:
        raise DataError(f"{path} is missing") from None
    except RefusedObjectError as err:
        raise _refused(path, err.what) from None
    except (
        OSError,
        EOFError,
        pickle.UnpicklingError,
        ValueError,
        TypeError,
        AttributeError,
        LookupError,
        MemoryError,
        OverflowError,
        RecursionError,
    ) as err:
        raise DataError(
            f"{path} is not a readable CIFAR batch ({type(err).__name__}: {_shown(str(err))}); "
            "it is corrupt or truncated, fetch it again"
        ) from None
    if _holds_object_array(batch):
        raise _refused(path, "a numpy array of dtype object")
    return batch


def read_batch(path: Path, label_key: bytes) -> tuple[np.ndarray, np.ndarray]:
    """One batch file -> images uint8 (N, 32, 32, 3) and labels int64 (N,).

    Raises:
        DataError: the file is missing, not a CIFAR batch, inconsistent, or holds a Python
            object other than the format allows (it is then not loaded).
    """
    batch = load_pickle(path)
    if not isinstance(batch, dict) or b"data" not in batch or label_key not in batch:
        keys = sorted(batch, key=repr) if isinstance(batch, dict) else type(batch).__name__
        raise DataError(
            f"{path} is not a CIFAR batch: expected keys b'data' and {label_key!r}, "
            f"found {_shown(str(keys))}"
        )
    try:
        data = np.asarray(batch[b"data"])
        labels = np.asarray(batch[label_key], dtype=np.int64)
    except (TypeError, ValueError, OverflowError) as err:
        raise DataError(
            f"{path}: b'data' should be uint8 (N, 3072) and {label_key!r} a list of integers "
            f"({type(err).__name__}: {_shown(str(err))})"
        ) from None
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
