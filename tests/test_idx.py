"""The IDX reader against files written from the format's definition (tests/conftest.py)."""

from __future__ import annotations

import numpy as np
import pytest

from normbench.data.idx import read_idx
from normbench.errors import DataError
from tests.conftest import write_idx


@pytest.mark.parametrize("compress", [True, False], ids=["gz", "raw"])
@pytest.mark.parametrize("dtype", [np.uint8, np.int32, np.float32])
def test_read_idx_round_trip(tmp_path, compress, dtype):
    rng = np.random.default_rng(1)
    array = (rng.standard_normal((5, 7, 3)) * 100).astype(dtype)
    path = write_idx(tmp_path / "x-idx3", array, compress)
    got = read_idx(path)
    assert got.dtype == np.dtype(dtype)
    assert got.shape == (5, 7, 3)
    np.testing.assert_array_equal(got, array)


def test_read_idx_labels_1d(tmp_path):
    labels = np.arange(10, dtype=np.uint8)
    np.testing.assert_array_equal(read_idx(write_idx(tmp_path / "l-idx1", labels, False)), labels)


def test_truncated_file_is_a_clear_error(tmp_path):
    path = write_idx(tmp_path / "x", np.zeros((4, 4), np.uint8), False)
    path.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(DataError, match="truncated"):
        read_idx(path)


def test_not_idx_is_a_clear_error(tmp_path):
    path = tmp_path / "x"
    path.write_bytes(b"PK\x03\x04 not idx")
    with pytest.raises(DataError, match="not an IDX file"):
        read_idx(path)
