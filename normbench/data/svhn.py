"""Reader for SVHN's cropped-digits format (Netzer et al. 2011): MATLAB ``.mat`` files.

``train_32x32.mat`` (73,257), ``test_32x32.mat`` (26,032) and optionally ``extra_32x32.mat``
(531,131), each holding ``X``, uint8 (32, 32, 3, N), and ``y``, (N, 1) with labels 1..10 where
10 stands for the digit 0.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from normbench.data.arrays import Arrays
from normbench.errors import DataError

SVHN_FILES = {"train": "train_32x32.mat", "test": "test_32x32.mat", "extra": "extra_32x32.mat"}


def has_svhn_files(folder: Path) -> bool:
    """Whether ``folder`` holds SVHN's train and test files."""
    return all((folder / SVHN_FILES[s]).is_file() for s in ("train", "test"))


def read_mat(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One SVHN file -> images uint8 (N, 32, 32, 3) and labels int64 (N,) in 0..9.

    Raises:
        DataError: the file is missing, not a MATLAB file, or not in SVHN's layout.
    """
    import scipy.io

    if not path.is_file():
        raise DataError(f"{path} is missing")
    try:
        mat = scipy.io.loadmat(str(path), variable_names=("X", "y"))
    except Exception as err:  # noqa: BLE001 - scipy raises many types for a bad file
        raise DataError(
            f"{path} is not a readable .mat file ({type(err).__name__}: {err}); "
            "it is corrupt or truncated, fetch it again"
        ) from None
    if "X" not in mat or "y" not in mat:
        raise DataError(
            f"{path} is not an SVHN file: expected variables X and y, found {sorted(k for k in mat if not k.startswith('__'))}"
        )
    x, y = np.asarray(mat["X"]), np.asarray(mat["y"]).reshape(-1)
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[2] != 3:
        raise DataError(f"{path}: X should be uint8 (H, W, 3, N), got {x.dtype} {x.shape}")
    if len(y) != x.shape[3]:
        raise DataError(f"{path}: {x.shape[3]} images but {len(y)} labels")
    labels = y.astype(np.int64)
    if labels.size and (labels.min() < 1 or labels.max() > 10):
        raise DataError(
            f"{path}: labels should be 1..10 (10 is the digit 0), found {labels.min()}..{labels.max()}"
        )
    return np.ascontiguousarray(x.transpose(3, 0, 1, 2)), labels % 10


def load_svhn(folder: Path, cfg: DictConfig) -> Arrays:
    """SVHN: train (plus ``extra`` when ``cfg.use_extra``) and test, 32x32 RGB, 10 classes."""
    train_x, train_y = read_mat(folder / SVHN_FILES["train"])
    if cfg.get("use_extra", False):
        extra_x, extra_y = read_mat(folder / SVHN_FILES["extra"])
        train_x, train_y = np.concatenate([train_x, extra_x]), np.concatenate([train_y, extra_y])
    val_x, val_y = read_mat(folder / SVHN_FILES["test"])
    return Arrays(train_x, train_y, val_x, val_y, num_classes=10)
