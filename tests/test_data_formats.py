"""CIFAR-10/100, SVHN and USPS readers on tiny files written here in each real on-disk format."""

from __future__ import annotations

import bz2
import json
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.io
import torch
from omegaconf import OmegaConf

from normbench.data.datasets import DATASETS, find_dataset, load_dataset
from normbench.errors import ConfigError, DataError

CPU = torch.device("cpu")


def _cfg(name: str, root: Path, **kw):
    base = {
        "name": name,
        "root": str(root),
        "batch_size": 8,
        "val_split": "test",
        "holdout_size": 10,
        "standardize": False,
        "download": False,
        "augment": False,
    }
    return OmegaConf.create({**base, **kw})


# --- writers, from each format's definition ------------------------------------------------------
def write_cifar_batch(path: Path, data: np.ndarray, labels: dict[bytes, list[int]]) -> None:
    """A pickled dict with bytes keys, as the original (Python 2) files: b'data' uint8 (N, 3072)."""
    batch = {
        b"batch_label": b"generated",
        b"data": data,
        b"filenames": [f"{i}.png".encode() for i in range(len(data))],
        **labels,
    }
    path.write_bytes(pickle.dumps(batch, protocol=2))


def make_cifar10(root: Path, n_per_batch: int = 6, n_test: int = 7) -> dict:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    out = {"train": [], "test": []}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        n = n_test if name == "test_batch" else n_per_batch
        data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n).tolist()
        write_cifar_batch(folder / name, data, {b"labels": labels})
        out["test" if name == "test_batch" else "train"].append((data, labels))
    (folder / "batches.meta").write_bytes(
        pickle.dumps({b"label_names": [b"c%d" % i for i in range(10)]})
    )
    return {
        k: (np.concatenate([d for d, _ in v]), sum((labels for _, labels in v), []))
        for k, v in out.items()
    }


def make_cifar100(root: Path, n_train: int = 12, n_test: int = 5) -> dict:
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(2)
    out = {}
    for name, n in (("train", n_train), ("test", n_test)):
        data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        fine = rng.integers(0, 100, size=n).tolist()
        coarse = rng.integers(0, 20, size=n).tolist()
        write_cifar_batch(folder / name, data, {b"fine_labels": fine, b"coarse_labels": coarse})
        out[name] = (data, fine, coarse)
    return out


def make_svhn(root: Path, n_train: int = 9, n_test: int = 4, extra: int = 0) -> dict:
    folder = root / "svhn"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(3)
    out = {}
    splits = [("train", n_train), ("test", n_test)] + ([("extra", extra)] if extra else [])
    for split, n in splits:
        x = rng.integers(0, 256, size=(32, 32, 3, n), dtype=np.uint8)
        y = rng.integers(1, 11, size=(n, 1)).astype(np.uint8)
        y[0, 0] = 10  # the digit 0
        scipy.io.savemat(folder / f"{split}_32x32.mat", {"X": x, "y": y})
        out[split] = (x, y)
    return out


def make_usps(root: Path, n_train: int = 8, n_test: int = 3) -> dict:
    folder = root / "usps"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(4)
    out = {}
    for name, n in (("usps.bz2", n_train), ("usps.t.bz2", n_test)):
        values = np.round(rng.uniform(-1, 1, size=(n, 256)), 6)
        labels = rng.integers(1, 11, size=n)
        lines = [
            f"{lab} " + " ".join(f"{j + 1}:{v:.6f}" for j, v in enumerate(row))
            for lab, row in zip(labels, values, strict=True)
        ]
        (folder / name).write_bytes(bz2.compress(("\n".join(lines) + "\n").encode("ascii")))
        out[name] = (values, labels)
    return out


# --- CIFAR ----------------------------------------------------------------------------------------
def test_cifar10_values_and_labels_exactly_recovered(tmp_path):
    files = make_cifar10(tmp_path)
    splits = load_dataset(_cfg("cifar10", tmp_path), CPU)
    data, labels = files["train"]
    assert splits.train_x.shape == (30, 3, 32, 32) and splits.val_x.shape == (7, 3, 32, 32)
    assert splits.num_classes == 10 and splits.in_shape == (3, 32, 32)
    assert splits.train_y.tolist() == labels and splits.val_y.tolist() == files["test"][1]
    # pixel (row r, column k) of channel c is byte c*1024 + 32*r + k of the image's row
    for i, c, r, k in [(0, 0, 0, 0), (3, 1, 5, 31), (29, 2, 31, 7), (17, 2, 16, 16)]:
        assert splits.train_x[i, c, r, k].item() * 255 == pytest.approx(
            data[i, c * 1024 + 32 * r + k]
        )
    planes = np.stack(
        [data[:, c * 1024 : (c + 1) * 1024].reshape(-1, 32, 32) for c in range(3)], axis=1
    )
    assert torch.equal(splits.train_x, torch.from_numpy(planes).float() / 255)
    assert splits.source.endswith("cifar-10-batches-py")


@pytest.mark.parametrize(("labels", "classes"), [("fine", 100), ("coarse", 20)])
def test_cifar100_fine_and_coarse_labels(tmp_path, labels, classes):
    files = make_cifar100(tmp_path)
    splits = load_dataset(_cfg("cifar100", tmp_path, labels=labels), CPU)
    column = 1 if labels == "fine" else 2
    assert splits.num_classes == classes
    assert (
        splits.train_y.tolist() == files["train"][column]
        and splits.val_y.tolist() == files["test"][column]
    )
    assert splits.val_x.shape == (5, 3, 32, 32)
    assert splits.val_x[4, 2, 31, 31].item() * 255 == pytest.approx(files["test"][0][4, 3071])


def test_cifar100_bad_label_choice(tmp_path):
    make_cifar100(tmp_path)
    with pytest.raises(ConfigError, match="dataset.labels='medium' is not one of fine, coarse"):
        load_dataset(_cfg("cifar100", tmp_path, labels="medium"), CPU)


def test_cifar_standardized_per_channel(tmp_path):
    make_cifar10(tmp_path, n_per_batch=40)
    splits = load_dataset(_cfg("cifar10", tmp_path), CPU, standardize=True)
    x = splits.train_x.double()
    torch.testing.assert_close(
        x.mean(dim=(0, 2, 3)), torch.zeros(3, dtype=torch.float64), atol=1e-5, rtol=0
    )
    torch.testing.assert_close(
        x.std(dim=(0, 2, 3)), torch.ones(3, dtype=torch.float64), atol=1e-4, rtol=0
    )


def test_cifar_missing_and_corrupt_files(tmp_path):
    with pytest.raises(DataError) as err:
        load_dataset(_cfg("cifar10", tmp_path), CPU)
    msg = str(err.value)
    assert (
        "cifar10 not found" in msg and "cifar-10-batches-py" in msg and "--download cifar10" in msg
    )
    make_cifar10(tmp_path)
    bad = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    bad.write_bytes(b"\x80\x02garbage")
    with pytest.raises(
        DataError, match="data_batch_3 is not a readable CIFAR batch.*fetch it again"
    ):
        load_dataset(_cfg("cifar10", tmp_path), CPU)
    bad.write_bytes(pickle.dumps({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}))
    with pytest.raises(DataError, match=r"data_batch_3: b'data' should be uint8 \(N, 3072\)"):
        load_dataset(_cfg("cifar10", tmp_path), CPU)


# --- SVHN -----------------------------------------------------------------------------------------
def test_svhn_values_and_labels_exactly_recovered(tmp_path):
    files = make_svhn(tmp_path)
    splits = load_dataset(_cfg("svhn", tmp_path), CPU)
    x, y = files["train"]
    assert splits.train_x.shape == (9, 3, 32, 32) and splits.val_x.shape == (4, 3, 32, 32)
    assert splits.num_classes == 10
    assert splits.train_y.tolist() == [int(v) % 10 for v in y[:, 0]] and splits.train_y[0] == 0
    expected = torch.from_numpy(x).permute(3, 2, 0, 1).float() / 255  # X[row, col, channel, i]
    assert torch.equal(splits.train_x, expected)
    assert splits.train_x[5, 1, 2, 30].item() * 255 == pytest.approx(x[2, 30, 1, 5])


def test_svhn_extra_split_joins_train(tmp_path):
    files = make_svhn(tmp_path, extra=5)
    splits = load_dataset(_cfg("svhn", tmp_path, use_extra=True), CPU)
    assert len(splits.train_x) == 14
    assert splits.train_y[9:].tolist() == [int(v) % 10 for v in files["extra"][1][:, 0]]


def test_svhn_missing_and_corrupt_files(tmp_path):
    with pytest.raises(DataError, match=r"svhn not found.*train_32x32.mat.*<root>/svhn/"):
        load_dataset(_cfg("svhn", tmp_path), CPU)
    make_svhn(tmp_path)
    (tmp_path / "svhn" / "test_32x32.mat").write_bytes(b"MATLAB 5.0 truncated")
    with pytest.raises(DataError, match="test_32x32.mat is not a readable .mat file"):
        load_dataset(_cfg("svhn", tmp_path), CPU)
    scipy.io.savemat(tmp_path / "svhn" / "test_32x32.mat", {"images": np.zeros((2, 2))})
    with pytest.raises(DataError, match="expected variables X and y"):
        load_dataset(_cfg("svhn", tmp_path), CPU)


# --- USPS -----------------------------------------------------------------------------------------
def test_usps_values_and_labels_exactly_recovered(tmp_path):
    files = make_usps(tmp_path)
    splits = load_dataset(_cfg("usps", tmp_path), CPU)
    values, labels = files["usps.bz2"]
    assert splits.train_x.shape == (8, 1, 16, 16) and splits.val_x.shape == (3, 1, 16, 16)
    assert splits.num_classes == 10
    assert splits.train_y.tolist() == (labels - 1).tolist()
    expected = torch.from_numpy(((values + 1) / 2).astype(np.float32)).reshape(8, 1, 16, 16)
    assert torch.equal(splits.train_x, expected)
    assert 0 <= splits.train_x.min() and splits.train_x.max() <= 1


def test_usps_sparse_line_and_errors(tmp_path):
    make_usps(tmp_path)
    path = tmp_path / "usps" / "usps.t.bz2"
    path.write_bytes(bz2.compress(b"3 1:1 256:-1\n10 17:0.5\n"))
    splits = load_dataset(_cfg("usps", tmp_path), CPU)
    assert splits.val_y.tolist() == [2, 9]
    first = splits.val_x[0, 0].flatten()
    assert first[0] == 1.0 and first[255] == 0.0 and (first[1:255] == 0.5).all()  # absent: value 0
    assert splits.val_x[1, 0, 1, 0] == 0.75
    path.write_bytes(bz2.compress(b"3 1:1 300:0.5\n"))
    with pytest.raises(DataError, match=r"usps.t.bz2, line 1: not 'label index:value"):
        load_dataset(_cfg("usps", tmp_path), CPU)
    path.write_bytes(b"not bz2 at all")
    with pytest.raises(DataError, match="usps.t.bz2 is not a readable bz2 text file"):
        load_dataset(_cfg("usps", tmp_path), CPU)
    path.unlink()
    with pytest.raises(DataError, match=r"usps not found.*usps.t.bz2.*<root>/usps/"):
        load_dataset(_cfg("usps", tmp_path), CPU)


# --- registry, `normbench data`, end to end -------------------------------------------------------
def test_torchvision_layouts_are_found(tmp_path):
    make_cifar10(tmp_path, n_per_batch=1, n_test=1)
    make_cifar100(tmp_path, n_train=1, n_test=1)
    assert find_dataset("cifar10", tmp_path) == tmp_path / "cifar-10-batches-py"
    assert find_dataset("cifar100", tmp_path) == tmp_path / "cifar-100-python"
    assert find_dataset("svhn", tmp_path) is None


def test_data_command_lists_every_dataset(run_cli, tmp_path):
    make_cifar10(tmp_path / "d", n_per_batch=1, n_test=1)
    make_usps(tmp_path / "d", n_train=1, n_test=1)
    code, out, _ = run_cli("data", "--root", str(tmp_path / "d"))
    assert code == 0
    rows = {
        line.split()[0]: line.split()[1]
        for line in out.splitlines()
        if line and not line[0].isspace() and line.split()[0] in DATASETS
    }
    assert set(rows) == set(DATASETS)
    assert rows["cifar10"] == "found" and rows["usps"] == "found" and rows["svhn"] == "missing"
    assert rows["imagefolder"] == "missing" and "get it: put the images under" in out
    assert run_cli("data", "--root", str(tmp_path / "d"), "--check", "cifar10")[0] == 0
    assert run_cli("data", "--root", str(tmp_path / "d"), "--check", "svhn")[0] == 1


def test_train_end_to_end_on_generated_cifar10_resumes_exactly(run_cli, tmp_path):
    """The engine trains on CIFAR files with on-device augmentation; stopping after 4 of 8 steps
    (5 steps per epoch) and resuming gives the same metrics as one uninterrupted run."""
    make_cifar10(tmp_path / "data", n_per_batch=16, n_test=20)
    args = [
        "train",
        "dataset=cifar10",
        f"dataset.root={tmp_path / 'data'}",
        "dataset.batch_size=16",
        "model=mlp_sigmoid",
        "model.hidden=[16]",
        "trainer.steps=8",
        "trainer.eval_every=4",
        "trainer.log_every=4",
        "probes.every=4",
        "probes.batch_size=8",
        "logging.tensorboard=false",
    ]
    code, out, err = run_cli(*args, "hydra.run.dir=whole")
    assert code == 0, out + err
    summary = json.loads((tmp_path / "whole" / "summary.json").read_text())
    assert summary["status"] == "complete" and summary["step"] == 8
    assert summary["num_params"] == 3 * 32 * 32 * 16 + 2 * 16 + 16 * 10 + 10  # BN: no linear bias
    assert run_cli(*args, "hydra.run.dir=parts", "trainer.stop_after=4")[0] == 0
    code, out, err = run_cli(*args, "hydra.run.dir=parts")
    assert code == 0 and "resuming" in out + err
    whole, parts = (
        pd.read_csv(tmp_path / d / "metrics.csv").drop(columns=["time"]) for d in ("whole", "parts")
    )
    pd.testing.assert_frame_equal(whole, parts)
