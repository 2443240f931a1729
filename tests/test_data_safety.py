"""Dataset files from elsewhere are data, never code: a crafted CIFAR pickle is refused before it
runs anything, and corrupt compressed files (IDX .gz, USPS .bz2, SVHN .mat) give one error line."""

from __future__ import annotations

import bz2
import gzip
import io
import os
import pickle
import pickletools
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch

from normbench.data.cifar import read_batch
from normbench.data.idx import read_idx
from normbench.data.svhn import read_mat
from normbench.data.usps import read_libsvm_bz2
from normbench.errors import DataError
from tests.conftest import make_idx_dataset, write_idx
from tests.test_data_formats import _cfg, make_cifar10, make_svhn, make_usps, write_cifar_batch

CPU = torch.device("cpu")
TINY_TRAIN = [
    "dataset.batch_size=8",
    "model=mlp_sigmoid",
    "model.hidden=[8]",
    "trainer.steps=2",
    "trainer.eval_every=2",
    "trainer.log_every=2",
    "probes.every=2",
    "probes.batch_size=8",
    "logging.tensorboard=false",
    "hydra.run.dir=run",
]


class _MakesDirectory:
    """Unpickling this runs ``os.mkdir(path)``: a harmless, observable stand-in for any code."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (os.mkdir, (self.path,))


def _write_crafted_batch(path: Path, marker: Path) -> None:
    """A batch that looks right (valid b'data' and b'labels') but runs code on a plain load."""
    batch = {
        b"batch_label": _MakesDirectory(marker),
        b"data": np.zeros((2, 3072), np.uint8),
        b"labels": [0, 1],
        b"filenames": [b"0.png", b"1.png"],
    }
    path.write_bytes(pickle.dumps(batch, protocol=2))


def _assert_one_error_line(code: int, out: str, err: str, *needles: str) -> str:
    assert code == 2, out + err
    assert "Traceback" not in out + err
    lines = [line for line in (out + err).splitlines() if "error" in line.lower()]
    assert len(lines) == 1, out + err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


# --- CIFAR: restricted unpickling -----------------------------------------------------------------
def test_crafted_cifar_batch_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "marker"
    path = tmp_path / "data_batch_1"
    _write_crafted_batch(path, marker)
    with pytest.raises(DataError) as err:
        read_batch(path, b"labels")
    msg = str(err.value)
    assert "\n" not in msg and str(path) in msg
    assert (
        f"holds a Python object other than the CIFAR format allows ({os.mkdir.__module__}.mkdir)"
        in msg
    )
    assert "not loaded" in msg and "fetch the dataset again from the official source" in msg
    assert not marker.exists()
    # the file is live: a plain pickle.load would have run the call
    with open(path, "rb") as f:
        pickle.load(f, encoding="bytes")
    assert marker.is_dir()


@pytest.mark.parametrize(
    ("module", "name"), [("posix", "system"), ("builtins", "eval"), ("numpy", "load")]
)
def test_any_other_global_is_named_in_the_refusal(tmp_path, module, name):
    path = tmp_path / "test_batch"
    # protocol 2 by hand: GLOBAL 'module name', an argument, REDUCE, STOP
    path.write_bytes(b"\x80\x02c" + f"{module}\n{name}\n".encode() + b"U\x04trueq\x00\x85R.")
    with pytest.raises(DataError, match=rf"allows \({module}\.{name}\), so it was not loaded"):
        read_batch(path, b"labels")


def test_numpy_object_array_is_refused(tmp_path):
    path = tmp_path / "data_batch_1"
    data = np.empty((1, 3072), dtype=object)
    data[:] = 0
    path.write_bytes(pickle.dumps({b"data": data, b"labels": [0]}, protocol=2))
    with pytest.raises(DataError, match=r"allows \(a numpy array of dtype object\)"):
        read_batch(path, b"labels")


def test_codecs_encode_only_as_latin1(tmp_path):
    path = tmp_path / "data_batch_1"
    path.write_bytes(b"\x80\x02c_codecs\nencode\nX\x01\x00\x00\x00aX\x05\x00\x00\x00rot13\x86R.")
    with pytest.raises(DataError, match=r"allows \(_codecs.encode of str as 'rot13'"):
        read_batch(path, b"labels")


class _Python2Pickler(pickle._Pickler):
    """Protocol 2 as Python 2's cPickle wrote the CIFAR files: every str (Python 2 ``str``) as
    BINSTRING, no ``_codecs``, and numpy 1's ``numpy.core.multiarray`` module name."""

    dispatch = dict(pickle._Pickler.dispatch)

    def save_py2_str(self, obj: str | bytes) -> None:
        data = obj if isinstance(obj, bytes) else obj.encode("latin-1")
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    dispatch[bytes] = save_py2_str
    dispatch[str] = save_py2_str

    def save_global(self, obj, name=None) -> None:
        module = obj.__module__.replace("numpy._core.", "numpy.core.")
        self.write(pickle.GLOBAL + f"{module}\n{name or obj.__qualname__}\n".encode())
        self.memoize(obj)


def _python2_pickle(obj) -> bytes:
    buffer = io.BytesIO()
    _Python2Pickler(buffer, protocol=2).dump(obj)
    return buffer.getvalue()


def test_well_formed_batches_still_load(tmp_path):
    rng = np.random.default_rng(7)
    data = rng.integers(0, 256, size=(5, 3072), dtype=np.uint8)
    labels = [3, 1, 4, 1, 5]
    planes = data.reshape(5, 3, 32, 32).transpose(0, 2, 3, 1)

    generated = tmp_path / "generated"
    write_cifar_batch(generated, data, {b"labels": labels})  # Python 3, protocol 2
    python2 = tmp_path / "python2"
    python2.write_bytes(
        _python2_pickle(
            {
                b"batch_label": b"training batch 1 of 5",
                b"labels": labels,
                b"data": data,
                b"filenames": [b"a.png"] * 5,
            }
        )
    )
    ops = {(op.name, arg) for op, arg, _ in pickletools.genops(python2.read_bytes())}
    assert ("GLOBAL", "numpy.core.multiarray _reconstruct") in ops
    assert not any(arg and "_codecs" in str(arg) for _, arg in ops)
    default = tmp_path / "default"  # the default protocol of this Python
    default.write_bytes(pickle.dumps({b"data": data, b"labels": labels}))
    for path in (generated, python2, default):
        images, got = read_batch(path, b"labels")
        assert images.dtype == np.uint8 and images.shape == (5, 32, 32, 3), path
        np.testing.assert_array_equal(images, planes)
        assert got.dtype == np.int64 and got.tolist() == labels


def test_generated_cifar10_loads_through_the_registry(tmp_path):
    from normbench.data.datasets import load_dataset

    files = make_cifar10(tmp_path, n_per_batch=2, n_test=3)
    splits = load_dataset(_cfg("cifar10", tmp_path), CPU)
    assert splits.train_y.tolist() == files["train"][1]
    assert splits.val_x.shape == (3, 3, 32, 32)


def test_train_on_crafted_cifar_exits_2_with_one_line(run_cli, tmp_path):
    root = tmp_path / "data"
    make_cifar10(root, n_per_batch=8, n_test=8)
    marker = tmp_path / "marker"
    _write_crafted_batch(root / "cifar-10-batches-py" / "data_batch_2", marker)
    code, out, err = run_cli("train", "dataset=cifar10", f"dataset.root={root}", *TINY_TRAIN)
    _assert_one_error_line(
        code, out, err, "data_batch_2 holds a Python object", "mkdir", "not loaded"
    )
    assert not marker.exists()


# --- corrupt compressed files ---------------------------------------------------------------------
def _flip_middle(path: Path, count: int = 16) -> None:
    raw = bytearray(path.read_bytes())
    middle = len(raw) // 2
    raw[middle : middle + count] = bytes(b ^ 0xFF for b in raw[middle : middle + count])
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize("raised", [zlib.error, gzip.BadGzipFile], ids=["deflate", "crc"])
def test_corrupt_gzip_idx_is_one_line(tmp_path, raised):
    pixels = np.random.default_rng(0).integers(0, 256, (50, 28, 28), np.uint8)
    path = write_idx(tmp_path / "x-idx3", pixels, True)
    valid = path.read_bytes()
    if raised is zlib.error:  # first deflate byte after the 10-byte header: reserved block type
        raw = bytearray(path.read_bytes())
        raw[10] = 0xFF
        path.write_bytes(bytes(raw))
    else:  # random pixels are stored as they are: flipped ones show only in the CRC
        _flip_middle(path)
    with pytest.raises(raised):  # sanity: gzip itself fails on it, as expected
        with gzip.open(path, "rb") as f:
            f.read()
    with pytest.raises(DataError) as err:
        read_idx(path)
    msg = str(err.value)
    assert msg.startswith(f"{path} is corrupt (gzip: ") and "\n" not in msg
    assert "fetch it again" in msg and "`normbench data`" in msg
    path.write_bytes(valid[:4000])  # truncated
    with pytest.raises(DataError, match=r"is corrupt \(gzip: Compressed file ended"):
        read_idx(path)


def test_train_on_corrupt_gzip_idx_exits_2_with_one_line(run_cli, tmp_path):
    root = tmp_path / "data"
    make_idx_dataset(root / "fashion_mnist", n_train=32, n_val=16)
    path = root / "fashion_mnist" / "train-images-idx3-ubyte.gz"
    _flip_middle(path)
    code, out, err = run_cli("train", "dataset=fashion_mnist", f"dataset.root={root}", *TINY_TRAIN)
    _assert_one_error_line(code, out, err, str(path), "is corrupt (gzip: ")


def test_corrupt_usps_bz2_is_one_line(tmp_path, run_cli):
    make_usps(tmp_path / "data", n_train=40, n_test=8)
    path = tmp_path / "data" / "usps" / "usps.bz2"
    _flip_middle(path)
    with pytest.raises(OSError):  # sanity: bz2 itself fails on it
        bz2.decompress(path.read_bytes())
    with pytest.raises(DataError, match="usps.bz2 is not a readable bz2 text file") as err:
        read_libsvm_bz2(path)
    assert "\n" not in str(err.value)
    code, out, err_ = run_cli(
        "train", "dataset=usps", f"dataset.root={tmp_path / 'data'}", *TINY_TRAIN
    )
    _assert_one_error_line(code, out, err_, "usps.bz2 is not a readable bz2 text file")


@pytest.mark.parametrize("damage", ["flipped", "garbage", "empty"])
def test_corrupt_svhn_mat_is_a_data_error(tmp_path, damage):
    files = make_svhn(tmp_path, n_train=4, n_test=2)
    path = tmp_path / "svhn" / "train_32x32.mat"
    if damage == "flipped":  # compressed, so that the damage cannot go unnoticed
        x, y = files["train"]
        scipy.io.savemat(path, {"X": x, "y": y}, do_compression=True)
        _flip_middle(path)
    else:
        path.write_bytes(np.random.default_rng(5).bytes(3000) if damage == "garbage" else b"")
    with pytest.raises(DataError, match="train_32x32.mat is not a readable .mat file") as err:
        read_mat(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)
