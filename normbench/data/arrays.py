"""The form in which a file reader hands a whole dataset to the registry."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class Arrays(NamedTuple):
    """Both splits of an in-memory dataset as numpy arrays.

    Images are uint8 (N, H, W) or (N, H, W, C) in 0..255, or floating point in [0, 1];
    labels are integers in ``0..num_classes - 1``.
    """

    train_x: np.ndarray
    train_y: np.ndarray
    val_x: np.ndarray
    val_y: np.ndarray
    num_classes: int
