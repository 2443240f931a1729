"""Dataset lookup, loading, clear errors, and the device-resident loader."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from normbench.data.datasets import find_dataset, load_dataset
from normbench.data.memory import InMemoryLoader
from normbench.errors import ConfigError, DataError
from tests.conftest import make_idx_dataset


def _cfg(name: str, root, **kw):
    base = {
        "name": name,
        "root": str(root),
        "batch_size": 8,
        "val_split": "test",
        "holdout_size": 50,
        "standardize": False,
        "download": False,
    }
    return OmegaConf.create({**base, **kw})


@pytest.mark.parametrize("compress", [True, False], ids=["gz", "raw"])
def test_loads_generated_idx_files(tmp_path, compress):
    files = make_idx_dataset(tmp_path / "mnist", n_train=40, n_val=20, compress=compress)
    splits = load_dataset(_cfg("mnist", tmp_path), torch.device("cpu"))
    assert splits.train_x.shape == (40, 1, 28, 28) and splits.val_x.shape == (20, 1, 28, 28)
    assert splits.train_x.dtype == torch.float32
    expected = torch.from_numpy(files["train"][0]).float() / 255.0
    torch.testing.assert_close(splits.train_x[:, 0], expected)
    assert splits.train_y.tolist() == files["train"][1].tolist()
    assert splits.num_classes == int(files["train"][1].max()) + 1


def test_torchvision_layout_is_found(tmp_path):
    make_idx_dataset(tmp_path / "FashionMNIST" / "raw", n_train=10, n_val=10)
    assert find_dataset("fashion_mnist", tmp_path) == tmp_path / "FashionMNIST" / "raw"


def test_missing_dataset_says_how_to_get_it(tmp_path):
    with pytest.raises(DataError) as err:
        load_dataset(_cfg("mnist", tmp_path / "nowhere"), torch.device("cpu"))
    msg = str(err.value)
    assert (
        "mnist not found" in msg
        and "normbench data --download mnist" in msg
        and "dataset.root" in msg
    )


def test_unknown_dataset_lists_known_ones(tmp_path):
    with pytest.raises(ConfigError, match="Known datasets: ") as err:
        load_dataset(_cfg("imagenet22k", tmp_path), torch.device("cpu"))
    for name in ("fashion_mnist", "mnist", "synthetic", "cifar10", "imagefolder"):
        assert name in str(err.value)


def test_holdout_and_standardize(tmp_path):
    make_idx_dataset(tmp_path / "mnist", n_train=200, n_val=20)
    splits = load_dataset(
        _cfg("mnist", tmp_path, val_split="holdout", holdout_size=50),
        torch.device("cpu"),
        standardize=True,
    )
    assert len(splits.train_x) == 150 and len(splits.val_x) == 50
    x = splits.train_x.double()
    assert abs(x.mean().item()) < 1e-5 and abs(x.std().item() - 1) < 1e-4


def test_loader_covers_each_epoch_once_and_resumes_exactly():
    x = torch.arange(20.0).reshape(20, 1)
    y = torch.arange(20)
    loader = InMemoryLoader(x, y, batch_size=6, seed=3)  # 3 batches per epoch, 2 examples dropped
    epoch0 = torch.cat([loader.next()[1] for _ in range(3)])
    assert len(set(epoch0.tolist())) == 18
    xb, yb = loader.next()
    assert loader.epoch == 1 and torch.equal(xb[:, 0].long(), yb)
    state = loader.state_dict()
    expected = [loader.next()[1] for _ in range(5)]
    resumed = InMemoryLoader(x, y, batch_size=6, seed=3)
    resumed.load_state_dict(state)
    assert all(torch.equal(a, resumed.next()[1]) for a in expected)


def test_batch_larger_than_dataset_is_a_clear_error():
    with pytest.raises(ConfigError, match="lower dataset.batch_size"):
        InMemoryLoader(torch.zeros(4, 1), torch.zeros(4), batch_size=5, seed=0)


@pytest.mark.parametrize("root_exists", [True, False])
def test_a_failed_download_leaves_nothing_behind(tmp_path, monkeypatch, root_exists):
    """Offline (the downloader raises, as without network), `normbench data --download mnist`
    fails with the way to get the files, and removes the MNIST/raw/ folders it made; what was
    in the data root before stays."""
    import urllib.error

    import torchvision.datasets.mnist as tv_mnist

    from normbench.data.datasets import download

    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(tv_mnist, "download_and_extract_archive", offline)
    root = tmp_path / "data"
    if root_exists:
        make_idx_dataset(root / "fashion_mnist", n_train=10, n_val=10)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    with pytest.raises(DataError, match="could not download mnist (?s:.*)name resolution") as err:
        download("mnist", root)
    assert "To get it:" in str(err.value)
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
    assert root.exists() == root_exists
