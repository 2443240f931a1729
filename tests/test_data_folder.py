"""Image folders (ImageNet/Imagenette splits, Office-31 domains) on generated PNGs: classes,
transforms, DataLoader workers, exact resume, clear errors, and a training run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

from normbench.data.datasets import find_all, load_dataset
from normbench.data.folder import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    FolderData,
    eval_transform,
    train_transform,
)
from normbench.errors import ConfigError, DataError

CPU = torch.device("cpu")
CLASSES = ("cat", "dog", "fish")


def make_folder(
    folder: Path, per_class: int, classes: tuple[str, ...] = CLASSES, ext: str = "png"
) -> None:
    """``folder/<class>/<i>.<ext>``: images of varying size, each a random pattern."""
    rng = np.random.default_rng(len(str(folder)))
    for c in classes:
        (folder / c).mkdir(parents=True)
        for i in range(per_class):
            h, w = int(rng.integers(20, 40)), int(rng.integers(20, 40))
            pixels = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / c / f"{i}.{ext}")


@pytest.fixture(scope="module")
def imagenette(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    make_folder(root / "imagenette2-160" / "train", per_class=6)
    make_folder(root / "imagenette2-160" / "val", per_class=2)
    return root


def _cfg(root: Path, **kw):
    base = {
        "name": "imagefolder",
        "root": str(root),
        "path": "imagenette2-160",
        "train_dir": "train",
        "val_dir": "val",
        "domain": None,
        "val_domain": None,
        "size": 16,
        "batch_size": 4,
        "num_workers": 0,
        "val_split": "test",
        "holdout_size": 10,
        "standardize": True,
        "download": False,
    }
    return OmegaConf.create({**base, **kw})


def test_classes_shapes_and_validation_batches(imagenette):
    data = load_dataset(_cfg(imagenette), CPU)
    assert isinstance(data, FolderData)
    assert data.classes == list(CLASSES) and data.num_classes == 3 and data.in_shape == (3, 16, 16)
    batches = list(data.val_batches(4))
    assert [len(y) for _, y in batches] == [4, 2]
    assert torch.cat([y for _, y in batches]).tolist() == [0, 0, 1, 1, 2, 2]
    assert all(x.shape[1:] == (3, 16, 16) and x.dtype == torch.float32 for x, _ in batches)
    probe = data.probe_inputs(5)
    assert torch.equal(probe, torch.cat([x for x, _ in batches])[:5])
    assert len(data.probe_inputs(100)) == 6


def test_eval_transform_is_resize_center_crop_normalize():
    image = Image.new("RGB", (50, 30), (200, 100, 30))
    out = eval_transform(16, normalize=True)(image)
    assert out.shape == (3, 16, 16)
    expected = (
        torch.tensor([200, 100, 30], dtype=torch.float64) / 255
        - torch.tensor(IMAGENET_MEAN, dtype=torch.float64)
    ) / torch.tensor(IMAGENET_STD, dtype=torch.float64)
    torch.testing.assert_close(
        out.double(), expected[:, None, None].expand(3, 16, 16), atol=1e-5, rtol=0
    )
    # the short side is resized to size * 256 / 224, then the centre size x size is kept
    ramp = Image.fromarray(
        np.tile(np.arange(64, dtype=np.uint8) * 4, (32, 1))[..., None].repeat(3, -1)
    )
    plain = eval_transform(28, normalize=False)(ramp)[
        0
    ]  # resize 32 -> 32 (28*256/224), crop 28 of 64
    assert torch.allclose(plain[0], torch.arange(18, 46, dtype=torch.float32) * 4 / 255)


def test_train_transform_output_and_randomness():
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 30, 3), dtype=np.uint8))
    transform = train_transform(16, normalize=False)
    torch.manual_seed(0)
    a = transform(image)
    torch.manual_seed(0)
    assert torch.equal(a, transform(image))
    assert a.shape == (3, 16, 16) and 0 <= a.min() and a.max() <= 1
    assert not torch.equal(a, transform(image))


def _batches(loader, n):
    return [loader.next() for _ in range(n)]


def test_zero_and_two_workers_give_the_same_batches(imagenette):
    data0 = load_dataset(_cfg(imagenette, num_workers=0), CPU)
    data2 = load_dataset(_cfg(imagenette, num_workers=2), CPU)
    a, b = data0.train_loader(4, seed=1), data2.train_loader(4, seed=1)
    assert a.steps_per_epoch == 4  # 18 images, full batches only
    for (xa, ya), (xb, yb) in zip(_batches(a, 6), _batches(b, 6), strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert (a.epoch, a.position) == (1, 2)


def test_an_epoch_sees_each_image_at_most_once_and_is_reshuffled(imagenette):
    data = load_dataset(_cfg(imagenette), CPU)
    loader = data.train_loader(4, seed=0)
    x = torch.cat([loader.next()[0] for _ in range(4)])
    assert x.shape == (16, 3, 16, 16)
    order0 = loader.batches.epoch, [list(b) for b in loader.batches]
    loader.next()
    order1 = loader.batches.epoch, [list(b) for b in loader.batches]
    assert order0[0] == 0 and order1[0] == 1 and order0[1] != order1[1]
    indices = [i for batch in order0[1] for i, _ in batch]
    assert len(set(indices)) == 16 and set(indices) <= set(range(18))


@pytest.mark.parametrize("workers", [0, 2])
def test_resumed_loader_reproduces_the_batches(imagenette, workers):
    data = load_dataset(_cfg(imagenette, num_workers=workers), CPU)
    loader = data.train_loader(4, seed=3)
    _batches(loader, 3)
    state = loader.state_dict()
    expected = _batches(loader, 4)  # across the epoch boundary
    resumed = data.train_loader(4, seed=3)
    resumed.load_state_dict(state)
    for (xe, ye), (xr, yr) in zip(expected, _batches(resumed, 4), strict=True):
        assert torch.equal(xe, xr) and torch.equal(ye, yr)


def test_loader_leaves_the_global_rng_alone(imagenette):
    loader = load_dataset(_cfg(imagenette), CPU).train_loader(4, seed=0)
    data = load_dataset(_cfg(imagenette), CPU)
    before = torch.get_rng_state()
    _batches(loader, 5)
    list(data.val_batches(4))
    data.probe_inputs(3)
    assert torch.equal(before, torch.get_rng_state())


def test_office31_domains(tmp_path):
    for domain in ("amazon", "webcam"):
        make_folder(tmp_path / "office31" / domain / "images", per_class=3, ext="jpg")
    make_folder(tmp_path / "office31" / "dslr", per_class=2, ext="jpg")  # no images/ level
    assert find_all("imagefolder", tmp_path) == [tmp_path / "office31"]
    cfg = _cfg(tmp_path, path="office31", domain="amazon", val_domain="webcam")
    data = load_dataset(cfg, CPU)
    assert (
        data.num_classes == 3
        and "amazon/images (train)" in data.source
        and "webcam/images (val)" in data.source
    )
    assert sum(len(y) for _, y in data.val_batches(100)) == 9
    data = load_dataset(_cfg(tmp_path, path="office31", domain="webcam", val_domain="dslr"), CPU)
    assert sum(len(y) for _, y in data.val_batches(100)) == 6
    same = load_dataset(_cfg(tmp_path, path="office31", domain="amazon"), CPU)
    assert same.source.count("amazon") == 2


def test_folder_errors_name_the_fix(tmp_path, imagenette):
    with pytest.raises(ConfigError, match="val_split=holdout is not supported for image folders"):
        load_dataset(_cfg(imagenette, val_split="holdout"), CPU)
    with pytest.raises(DataError, match=r"nowhere/train not found.*<class>/\*.jpg.*To get it"):
        load_dataset(_cfg(tmp_path, path="nowhere"), CPU)
    make_folder(tmp_path / "other" / "train", per_class=2)
    make_folder(tmp_path / "other" / "val", per_class=1, classes=("cat", "dog", "horse"))
    with pytest.raises(
        DataError, match=r"same class folders.*only in train: \['fish'\].*only in val: \['horse'\]"
    ):
        load_dataset(_cfg(tmp_path, path="other"), CPU)
    (tmp_path / "empty" / "train" / "cat").mkdir(parents=True)
    (tmp_path / "empty" / "val").mkdir(parents=True)
    with pytest.raises(DataError, match="empty/train holds no images"):
        load_dataset(_cfg(tmp_path, path="empty"), CPU)
    with pytest.raises(ConfigError, match="larger than the training set"):
        load_dataset(_cfg(imagenette), CPU).train_loader(19, seed=0)
    with pytest.raises(ConfigError, match="dataset.num_workers must be an integer >= 0"):
        load_dataset(_cfg(imagenette, num_workers=-1), CPU)
    bad = tmp_path / "broken"
    make_folder(bad / "train", per_class=2)
    make_folder(bad / "val", per_class=1)
    (bad / "val" / "cat" / "0.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"0.png cannot be read as an image"):
        list(load_dataset(_cfg(tmp_path, path="broken"), CPU).val_batches(4))


def test_path_null_finds_the_first_image_folder(imagenette):
    data = load_dataset(_cfg(imagenette, path=None), CPU)
    assert str(imagenette / "imagenette2-160" / "train") in data.source


def test_train_end_to_end_on_generated_image_folder_resumes_exactly(run_cli, tmp_path, imagenette):
    """The engine trains on an image folder with 2 workers; stopping after 2 of 5 steps (3 per
    epoch) and resuming gives the same metrics as one uninterrupted run."""
    args = [
        "train",
        "dataset=imagefolder",
        f"dataset.root={imagenette}",
        "dataset.path=imagenette2-160",
        "dataset.size=16",
        "dataset.num_workers=2",
        "dataset.batch_size=6",
        "model=mlp_sigmoid",
        "model.hidden=[8]",
        "trainer.steps=5",
        "trainer.eval_every=5",
        "trainer.log_every=5",
        "probes.every=5",
        "probes.batch_size=4",
        "logging.tensorboard=false",
    ]
    code, out, err = run_cli(*args, "hydra.run.dir=whole")
    assert code == 0, out + err
    summary = json.loads((tmp_path / "whole" / "summary.json").read_text())
    assert (
        summary["status"] == "complete"
        and summary["num_params"] == 3 * 16 * 16 * 8 + 2 * 8 + 8 * 3 + 3
    )
    assert run_cli(*args, "hydra.run.dir=parts", "trainer.stop_after=2")[0] == 0
    code, out, err = run_cli(*args, "hydra.run.dir=parts")
    assert code == 0 and "resuming" in out + err
    whole, parts = (
        pd.read_csv(tmp_path / d / "metrics.csv").drop(columns=["time"]) for d in ("whole", "parts")
    )
    pd.testing.assert_frame_equal(whole, parts)
