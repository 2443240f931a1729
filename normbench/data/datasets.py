"""Dataset registry: name -> where to find it, how to load it, how to get it.

Datasets that fit in memory (IDX, CIFAR, SVHN, USPS, generated) are loaded as tensors on the
training device and batched there (:class:`Splits`); image folders (ImageNet, Imagenette,
Office-31) are decoded by DataLoader workers (:class:`~normbench.data.folder.FolderData`).
Both offer the engine the same interface.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig

from normbench.data.arrays import Arrays
from normbench.data.augment import augmentation_from_config
from normbench.data.cifar import has_cifar10_files, has_cifar100_files, load_cifar10, load_cifar100
from normbench.data.folder import FolderData, has_folder_files, load_folder
from normbench.data.idx import read_idx
from normbench.data.splits import Splits, holdout, images_to_tensor, standardize_splits
from normbench.data.svhn import has_svhn_files, load_svhn
from normbench.data.usps import has_usps_files, load_usps
from normbench.errors import ConfigError, DataError

IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "val_images": "t10k-images-idx3-ubyte",
    "val_labels": "t10k-labels-idx1-ubyte",
}


@dataclass(frozen=True)
class DatasetInfo:
    """How normbench finds, loads and gets one dataset.

    ``kind`` is ``files`` (read into memory by ``loader``), ``folder`` (an image folder, decoded
    by DataLoader workers) or ``generated`` (no files).
    """

    name: str
    description: str
    folders: tuple[str, ...]  # looked up under the data root, in order
    system_dirs: tuple[str, ...]  # then these absolute folders (distribution packages)
    how_to_get: str
    torchvision_class: str | None  # torchvision.datasets class used to download
    loader: Callable[[Path, DictConfig], Arrays] | None
    has_files: Callable[[Path], bool] | None = None  # whether a folder holds the dataset
    kind: str = "files"
    download_dir: str = ""  # sub-folder of the root torchvision downloads into
    download_splits: tuple[dict[str, Any], ...] = field(
        default=({"train": True}, {"train": False})
    )  # torchvision arguments, one call each


def _load_idx_folder(folder: Path, cfg: DictConfig) -> Arrays:
    train_x, train_y, val_x, val_y = (
        read_idx(_idx_path(folder, stem)) for stem in IDX_FILES.values()
    )
    return Arrays(train_x, train_y, val_x, val_y, num_classes=int(train_y.max()) + 1)


def _idx_path(folder: Path, stem: str) -> Path:
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    raise DataError(f"{folder} has no {stem}(.gz)")


def _has_idx_files(folder: Path) -> bool:
    return all(
        (folder / stem).is_file() or (folder / (stem + ".gz")).is_file()
        for stem in IDX_FILES.values()
    )


DATASETS: dict[str, DatasetInfo] = {
    "fashion_mnist": DatasetInfo(
        name="fashion_mnist",
        description="Fashion-MNIST, 60k/10k 28x28 grey, 10 classes (IDX)",
        folders=("fashion_mnist", "fashion-mnist", "FashionMNIST/raw", "FashionMNIST", "."),
        system_dirs=("/usr/share/datasets/fashion-mnist",),
        how_to_get=(
            "`make data` (Debian/Ubuntu: apt-get install dataset-fashion-mnist; elsewhere it "
            "downloads), or put the four IDX files (train-images-idx3-ubyte.gz, ...) in "
            "<root>/fashion_mnist/"
        ),
        torchvision_class="FashionMNIST",
        loader=_load_idx_folder,
        has_files=_has_idx_files,
    ),
    "mnist": DatasetInfo(
        name="mnist",
        description="MNIST, 60k/10k 28x28 grey, 10 classes (IDX)",
        folders=("mnist", "MNIST/raw", "MNIST", "."),
        system_dirs=(),
        how_to_get=(
            "`normbench data --download mnist` when online, or put the four IDX files "
            "(train-images-idx3-ubyte.gz, ...) in <root>/mnist/"
        ),
        torchvision_class="MNIST",
        loader=_load_idx_folder,
        has_files=_has_idx_files,
    ),
    "synthetic": DatasetInfo(
        name="synthetic",
        description="random images labelled by a fixed random linear teacher (no files)",
        folders=(),
        system_dirs=(),
        how_to_get="nothing to get: generated in memory",
        torchvision_class=None,
        loader=None,
        kind="generated",
    ),
    "cifar10": DatasetInfo(
        name="cifar10",
        description="CIFAR-10, 50k/10k 32x32 RGB, 10 classes (python pickle batches)",
        folders=("cifar-10-batches-py", "cifar10/cifar-10-batches-py", "cifar10"),
        system_dirs=(),
        how_to_get=(
            "`normbench data --download cifar10` when online, or extract cifar-10-python.tar.gz "
            "(https://www.cs.toronto.edu/~kriz/cifar.html) into <root>/ so that "
            "<root>/cifar-10-batches-py/data_batch_1 exists"
        ),
        torchvision_class="CIFAR10",
        loader=load_cifar10,
        has_files=has_cifar10_files,
    ),
    "cifar100": DatasetInfo(
        name="cifar100",
        description="CIFAR-100, 50k/10k 32x32 RGB, 100 fine / 20 coarse classes (python pickle)",
        folders=("cifar-100-python", "cifar100/cifar-100-python", "cifar100"),
        system_dirs=(),
        how_to_get=(
            "`normbench data --download cifar100` when online, or extract cifar-100-python.tar.gz "
            "(https://www.cs.toronto.edu/~kriz/cifar.html) into <root>/ so that "
            "<root>/cifar-100-python/train exists"
        ),
        torchvision_class="CIFAR100",
        loader=load_cifar100,
        has_files=has_cifar100_files,
    ),
    "svhn": DatasetInfo(
        name="svhn",
        description="SVHN cropped digits, 73k/26k (+531k extra) 32x32 RGB, 10 classes (.mat)",
        folders=("svhn", "SVHN", "."),
        system_dirs=(),
        how_to_get=(
            "`normbench data --download svhn` when online, or put train_32x32.mat and "
            "test_32x32.mat (http://ufldl.stanford.edu/housenumbers/) in <root>/svhn/"
        ),
        torchvision_class="SVHN",
        loader=load_svhn,
        has_files=has_svhn_files,
        download_dir="svhn",
        download_splits=({"split": "train"}, {"split": "test"}),
    ),
    "usps": DatasetInfo(
        name="usps",
        description="USPS digits, 7,291/2,007 16x16 grey, 10 classes (bz2 LIBSVM text)",
        folders=("usps", "USPS", "."),
        system_dirs=(),
        how_to_get=(
            "`normbench data --download usps` when online, or put usps.bz2 and usps.t.bz2 "
            "(https://www.csie.ntu.edu.tw/~cjlin/libsvmtools/datasets/multiclass.html#usps) in <root>/usps/"
        ),
        torchvision_class="USPS",
        loader=load_usps,
        has_files=has_usps_files,
        download_dir="usps",
    ),
    "imagefolder": DatasetInfo(
        name="imagefolder",
        description=(
            "images in class folders, decoded by DataLoader workers: ImageNet / Imagenette "
            "(<path>/train|val/<class>/*.jpg), Office-31 (<path>/<domain>/images/<class>/*.jpg)"
        ),
        folders=(
            "imagenet",
            "imagenette2-320",
            "imagenette2-160",
            "imagenette2",
            "office31",
            "Office31",
        ),
        system_dirs=(),
        how_to_get=(
            "put the images under <root>/<dataset.path>: ImageNet as imagenet/train/<wnid>/*.JPEG "
            "and imagenet/val/<wnid>/*.JPEG (val sorted into class folders); Imagenette by "
            "extracting imagenette2-160.tgz (https://github.com/fastai/imagenette) into <root>/; "
            "Office-31 by extracting it into <root>/office31/ (amazon/images/<class>/*.jpg, dslr/..., "
            "webcam/...) and choosing dataset.domain / dataset.val_domain"
        ),
        torchvision_class=None,
        loader=None,
        has_files=has_folder_files,
        kind="folder",
    ),
}


def default_root() -> Path:
    """``$NORMBENCH_DATA`` or ``./data``."""
    return Path(os.environ.get("NORMBENCH_DATA", "data"))


def find_all(name: str, root: str | Path) -> list[Path]:
    """Every candidate folder holding dataset ``name``'s files, in lookup order."""
    info = _info(name)
    if info.has_files is None:
        return []
    root = Path(root)
    candidates = [root / f for f in info.folders] + [Path(d) for d in info.system_dirs]
    return [c for c in candidates if c.is_dir() and info.has_files(c)]


def find_dataset(name: str, root: str | Path) -> Path | None:
    """The folder holding dataset ``name``'s files, or None."""
    return next(iter(find_all(name, root)), None)


def _info(name: str) -> DatasetInfo:
    if name not in DATASETS:
        raise ConfigError(
            f"Unknown dataset {name!r}. Known datasets: {', '.join(DATASETS)}. "
            "Choose one with dataset=<name>."
        )
    return DATASETS[name]


#: How deep below the data root a failed download's leftovers are looked for.
_LEFTOVER_DEPTH = 4


def _paths(root: Path, depth: int = _LEFTOVER_DEPTH) -> set[Path]:
    """``root`` and what lies below it, ``depth`` levels down (not the files of a large tree)."""
    found = {root} if root.exists() else set()
    level = [root] if root.is_dir() else []
    for _ in range(depth):
        level = [c for d in level if d.is_dir() and not d.is_symlink() for c in d.iterdir()]
        found.update(level)
    return found


def _remove_new(root: Path, before: set[Path]) -> None:
    """Remove what appeared under ``root`` since ``before`` (a failed download's folders, such as
    an empty ``MNIST/raw/``, and partial files), ``root`` itself if it is new and left empty."""
    for path in sorted(_paths(root) - before, key=lambda p: len(p.parts)):
        if path == root or not path.exists() and not path.is_symlink():
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    if root not in before and root.is_dir() and not any(root.iterdir()):
        root.rmdir()


def download(name: str, root: str | Path) -> Path:
    """Download dataset ``name`` into ``root`` with torchvision (needs network)."""
    info = _info(name)
    if info.torchvision_class is None:
        raise DataError(f"dataset {name!r} cannot be downloaded: {info.how_to_get}")
    import torchvision.datasets as tvd

    cls = getattr(tvd, info.torchvision_class)
    target = Path(root) / info.download_dir
    before = _paths(Path(root))
    try:
        for kwargs in info.download_splits:
            cls(root=str(target), download=True, **kwargs)
    except Exception as err:  # noqa: BLE001 - any network/IO failure means the same to the user
        _remove_new(Path(root), before)
        raise DataError(
            f"could not download {name} into {target} ({type(err).__name__}: {err}). "
            f"To get it: {info.how_to_get}"
        ) from None
    found = find_dataset(name, root)
    if found is None:
        raise DataError(f"downloaded {name} but found none of its files under {root}")
    return found


def _locate(cfg: DictConfig, info: DatasetInfo) -> Path:
    """The folder holding ``cfg.name``'s files (downloading them when allowed).

    Raises:
        DataError: the files are missing and cannot be downloaded; the message says how to get them.
    """
    if info.kind == "folder" and cfg.get("path"):
        path = Path(cfg.path)
        return path if path.is_absolute() else Path(cfg.root) / path
    folder = find_dataset(cfg.name, cfg.root)
    if folder is not None:
        return folder
    if not cfg.get("download", False) or info.torchvision_class is None:
        raise DataError(
            f"{cfg.name} not found under {Path(cfg.root).resolve()} "
            f"(looked in {', '.join(info.folders)}"
            f"{', ' + ', '.join(info.system_dirs) if info.system_dirs else ''}). "
            f"To get it: {info.how_to_get}. Or point dataset.root at the folder."
        )
    return download(cfg.name, cfg.root)


def load_dataset(
    cfg: DictConfig, device: torch.device, standardize: bool = False
) -> Splits | FolderData:
    """Load ``cfg.name``: into memory on ``device`` (:class:`Splits`), or as an image folder
    read by DataLoader workers (:class:`FolderData`, where ``standardize`` means ImageNet's
    mean/std normalization).

    Raises:
        DataError: the files are missing and cannot be downloaded; the message says how to get them.
        ConfigError: an option the dataset does not support.
    """
    info = _info(cfg.name)
    if info.kind == "folder":
        return load_folder(
            _locate(cfg, info), cfg, device, standardize, f"To get it: {info.how_to_get}."
        )
    if info.kind == "generated":
        splits = _synthetic(cfg)
    else:
        folder = _locate(cfg, info)
        arrays = info.loader(folder, cfg)
        splits = Splits(
            images_to_tensor(arrays.train_x),
            torch.from_numpy(arrays.train_y.astype(np.int64)),
            images_to_tensor(arrays.val_x),
            torch.from_numpy(arrays.val_y.astype(np.int64)),
            num_classes=arrays.num_classes,
            source=str(folder),
        )
    if cfg.val_split == "holdout":
        splits = holdout(splits, int(cfg.get("holdout_size", 10000)))
    if standardize:
        standardize_splits(splits)
    for key in ("train_x", "train_y", "val_x", "val_y"):
        setattr(splits, key, getattr(splits, key).to(device))
    splits.augment = augmentation_from_config(cfg, splits.in_shape)
    return splits


def _synthetic(cfg: DictConfig) -> Splits:
    """Uniform random images labelled by argmax of a fixed random linear map (fixed seed)."""
    gen = torch.Generator().manual_seed(1234)
    shape = tuple(cfg.image_shape)
    dim = int(np.prod(shape))
    n_train, n_val, classes = int(cfg.num_train), int(cfg.num_val), int(cfg.num_classes)
    x = torch.rand(n_train + n_val, *shape, generator=gen)
    teacher = torch.randn(dim, classes, generator=gen)
    flat = x.reshape(len(x), dim)
    y = ((flat - flat.mean(0)) @ teacher).argmax(1)
    return Splits(x[:n_train], y[:n_train], x[n_train:], y[n_train:], classes, "generated")


def data_command(root: str | None, check: str | None, download_name: str | None) -> int:
    """``normbench data``: list datasets, check one (exit 1 if missing), or download one."""
    root_path = Path(root) if root else default_root()
    if download_name:
        folder = download(download_name, root_path)
        print(f"{download_name}: downloaded to {folder}")
        return 0
    if check:
        found = _info(check).kind == "generated" or find_dataset(check, root_path) is not None
        print(f"{check}: {'found' if found else 'missing'}")
        return 0 if found else 1
    print(f"data root: {root_path.resolve()}  (set with --root or $NORMBENCH_DATA)\n")
    for name, info in DATASETS.items():
        if info.kind == "generated":
            status, where = "built in", "-"
        else:
            # An image folder may be found in several places (ImageNet, Imagenette, Office-31 ...).
            folders = find_all(name, root_path)
            status, where = ("found", ", ".join(map(str, folders))) if folders else ("missing", "-")
        print(f"{name:15s} {status:9s} {where}")
        print(f"{'':15s} {info.description}")
        print(f"{'':15s} get it: {info.how_to_get}\n")
    return 0
