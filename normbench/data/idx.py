"""Reader for the IDX format of MNIST and Fashion-MNIST (LeCun et al.), gzipped or raw.

Layout: two zero bytes, one type byte, one byte giving the number of dimensions n, n
big-endian uint32 sizes, then the values in big-endian C order.
"""

from __future__ import annotations

import gzip
import math
import zlib
from pathlib import Path

import numpy as np

from normbench.errors import DataError

# IDX type byte -> big-endian numpy dtype.
IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (``.gz`` or raw) into a native-endian numpy array.

    Raises:
        DataError: the file is missing, corrupt (bad gzip data), truncated, or not IDX.
    """
    path = Path(path)
    gzipped = path.suffix == ".gz"
    try:
        with (gzip.open if gzipped else open)(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise DataError(f"{path} is missing") from None
    except (gzip.BadGzipFile, zlib.error, EOFError) as err:
        raise DataError(
            f"{path} is corrupt (gzip: {err}); delete it and fetch it again "
            "(`normbench data` says how to get each dataset)"
        ) from None
    except OSError as err:
        raise DataError(f"cannot read IDX file {path}: {err}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in IDX_DTYPES:
        raise DataError(f"{path} is not an IDX file (bad magic number {raw[:4].hex()})")
    dtype, ndim = IDX_DTYPES[raw[2]], raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(
            f"{path}: IDX header says {ndim} dimensions but the file has only {len(raw)} bytes; "
            "the file is truncated or corrupt, fetch it again"
        )
    shape = tuple(int(s) for s in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = header + math.prod(shape) * dtype.itemsize
    if len(raw) != expected:
        raise DataError(
            f"{path}: IDX header says shape {shape} ({expected} bytes) but the file has "
            f"{len(raw)} bytes; the file is truncated or corrupt, fetch it again"
        )
    data = np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)
    return data.astype(dtype.newbyteorder("="))
