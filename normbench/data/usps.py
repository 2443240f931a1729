"""Reader for USPS handwritten digits (Hull 1994) in LIBSVM's bz2-compressed text format.

``usps.bz2`` (7,291 train) and ``usps.t.bz2`` (2,007 test): one example per line,
``label index:value ...`` with labels 1..10 for the digits 0..9 and 256 pixel values in
[-1, 1] (indices 1..256, row-major 16x16). An index left out has the value 0, as in LIBSVM.
Images are returned as float32 (v + 1) / 2 in [0, 1].
"""

from __future__ import annotations

import bz2
from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from normbench.data.arrays import Arrays
from normbench.errors import DataError

USPS_FILES = {"train": "usps.bz2", "test": "usps.t.bz2"}
SIDE = 16


def has_usps_files(folder: Path) -> bool:
    """Whether ``folder`` holds USPS's train and test files."""
    return all((folder / name).is_file() for name in USPS_FILES.values())


def read_libsvm_bz2(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One USPS file -> images float32 (N, 16, 16) in [0, 1] and labels int64 (N,) in 0..9.

    Raises:
        DataError: the file is missing, not bz2, or a line is not ``label index:value ...``.
    """
    if not path.is_file():
        raise DataError(f"{path} is missing")
    try:
        with bz2.open(path, "rt", encoding="ascii") as f:
            lines = f.read().splitlines()
    except (OSError, EOFError, UnicodeDecodeError) as err:
        raise DataError(
            f"{path} is not a readable bz2 text file ({type(err).__name__}: {err}); "
            "it is corrupt or truncated, fetch it again"
        ) from None
    lines = [line for line in lines if line.strip()]
    pixels = np.zeros((len(lines), SIDE * SIDE), dtype=np.float64)
    labels = np.empty(len(lines), dtype=np.int64)
    for row, line in enumerate(lines):
        try:
            label, _, rest = line.strip().partition(" ")
            labels[row] = int(float(label))
            tokens = rest.replace(":", " ").split()
            if tokens:
                if rest.count(":") * 2 != len(tokens):
                    raise ValueError("every pixel must be written index:value")
                table = np.array(tokens, dtype=np.float64).reshape(-1, 2)
                index = table[:, 0].astype(np.int64)
                if index.min() < 1 or index.max() > SIDE * SIDE:
                    raise ValueError(f"index outside 1..{SIDE * SIDE}")
                pixels[row, index - 1] = table[:, 1]
        except (ValueError, OverflowError) as err:
            raise DataError(
                f"{path}, line {row + 1}: not 'label index:value ...' ({err})"
            ) from None
    if labels.size and (labels.min() < 1 or labels.max() > 10):
        raise DataError(f"{path}: labels should be 1..10, found {labels.min()}..{labels.max()}")
    images = ((pixels + 1.0) / 2.0).astype(np.float32).reshape(-1, SIDE, SIDE)
    return images, labels - 1


def load_usps(folder: Path, cfg: DictConfig) -> Arrays:
    """USPS: 7,291 train / 2,007 test, 16x16 grey, 10 classes."""
    return Arrays(
        *read_libsvm_bz2(folder / USPS_FILES["train"]),
        *read_libsvm_bz2(folder / USPS_FILES["test"]),
        num_classes=10,
    )
