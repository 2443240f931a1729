"""Dataset registry: name -> where to find it, how to load it, how to get it.

Every dataset here is small enough to live in memory as tensors on the training device.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig

from normbench.data.idx import read_idx
from normbench.data.memory import InMemoryLoader
from normbench.errors import ConfigError, DataError

IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "val_images": "t10k-images-idx3-ubyte",
    "val_labels": "t10k-labels-idx1-ubyte",
}


@dataclass
class Splits:
    """A dataset in memory: images (N, C, H, W) float32 in [0, 1] (or standardized), int64 labels.

    What the engine asks of any dataset: ``num_classes``, ``in_shape``, ``source``,
    :meth:`train_loader`, :meth:`val_batches` and :meth:`probe_inputs`.
    """

    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    num_classes: int
    source: str

    @property
    def in_shape(self) -> tuple[int, ...]:
        return tuple(self.train_x.shape[1:])

    def train_loader(self, batch_size: int, seed: int) -> InMemoryLoader:
        """Endless shuffled training batches, resumable (see :class:`InMemoryLoader`)."""
        return InMemoryLoader(self.train_x, self.train_y, batch_size, seed)

    def val_batches(self, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The validation split in order, in batches of at most ``batch_size``."""
        return zip(self.val_x.split(batch_size), self.val_y.split(batch_size), strict=True)

    def probe_inputs(self, n: int) -> torch.Tensor:
        """The first ``n`` validation inputs: the fixed batch the activation probes run on."""
        return self.val_x[:n]


@dataclass(frozen=True)
class DatasetInfo:
    """How normbench finds, loads and gets one dataset."""

    name: str
    description: str
    folders: tuple[str, ...]          # looked up under the data root, in order
    system_dirs: tuple[str, ...]      # then these absolute folders (distribution packages)
    how_to_get: str
    torchvision_class: str | None     # torchvision.datasets class used to download
    loader: Callable[[Path], tuple[np.ndarray, ...]] | None


def _load_idx_folder(folder: Path) -> tuple[np.ndarray, ...]:
    return tuple(read_idx(_idx_path(folder, stem)) for stem in IDX_FILES.values())


def _idx_path(folder: Path, stem: str) -> Path:
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    raise DataError(f"{folder} has no {stem}(.gz)")


def _has_idx_files(folder: Path) -> bool:
    return all(
        (folder / stem).is_file() or (folder / (stem + ".gz")).is_file() for stem in IDX_FILES.values()
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
    ),
    "synthetic": DatasetInfo(
        name="synthetic",
        description="random images labelled by a fixed random linear teacher (no files)",
        folders=(),
        system_dirs=(),
        how_to_get="nothing to get: generated in memory",
        torchvision_class=None,
        loader=None,
    ),
}


def default_root() -> Path:
    """``$NORMBENCH_DATA`` or ``./data``."""
    return Path(os.environ.get("NORMBENCH_DATA", "data"))


def find_dataset(name: str, root: str | Path) -> Path | None:
    """The folder holding dataset ``name``'s files, or None."""
    info = _info(name)
    root = Path(root)
    candidates = [root / f for f in info.folders] + [Path(d) for d in info.system_dirs]
    return next((c for c in candidates if c.is_dir() and _has_idx_files(c)), None)


def _info(name: str) -> DatasetInfo:
    if name not in DATASETS:
        raise ConfigError(
            f"Unknown dataset {name!r}. Known datasets: {', '.join(sorted(DATASETS))}. "
            "Choose one with dataset=<name>."
        )
    return DATASETS[name]


def download(name: str, root: str | Path) -> Path:
    """Download dataset ``name`` into ``root`` with torchvision (needs network)."""
    info = _info(name)
    if info.torchvision_class is None:
        raise DataError(f"dataset {name!r} cannot be downloaded: {info.how_to_get}")
    import torchvision.datasets as tvd

    cls = getattr(tvd, info.torchvision_class)
    try:
        for train in (True, False):
            cls(root=str(root), train=train, download=True)
    except Exception as err:  # noqa: BLE001 - any network/IO failure means the same to the user
        raise DataError(
            f"could not download {name} into {root} ({type(err).__name__}: {err}). "
            f"To get it: {info.how_to_get}"
        ) from None
    found = find_dataset(name, root)
    if found is None:
        raise DataError(f"downloaded {name} but found no IDX files under {root}")
    return found


def load_dataset(cfg: DictConfig, device: torch.device, standardize: bool = False) -> Splits:
    """Load ``cfg.name`` into memory on ``device``.

    Raises:
        DataError: the files are missing and cannot be downloaded; the message says how to get them.
    """
    info = _info(cfg.name)
    if info.loader is None:
        splits = _synthetic(cfg)
    else:
        folder = find_dataset(cfg.name, cfg.root)
        if folder is None:
            if not cfg.get("download", False):
                raise DataError(
                    f"{cfg.name} not found under {Path(cfg.root).resolve()} "
                    f"(looked in {', '.join(info.folders)}"
                    f"{', ' + ', '.join(info.system_dirs) if info.system_dirs else ''}). "
                    f"To get it: {info.how_to_get}. Or point dataset.root at the folder."
                )
            folder = download(cfg.name, cfg.root)
        train_x, train_y, val_x, val_y = info.loader(folder)
        splits = Splits(
            _images(train_x), torch.from_numpy(train_y.astype(np.int64)),
            _images(val_x), torch.from_numpy(val_y.astype(np.int64)),
            num_classes=int(train_y.max()) + 1, source=str(folder),
        )
    if cfg.val_split == "holdout":
        splits = _holdout(splits, int(cfg.get("holdout_size", 10000)))
    if standardize:
        _standardize(splits)
    for key in ("train_x", "train_y", "val_x", "val_y"):
        setattr(splits, key, getattr(splits, key).to(device))
    return splits


def _images(array: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W) or (N, H, W, C) -> float32 (N, C, H, W) in [0, 1]."""
    x = torch.from_numpy(np.ascontiguousarray(array))
    x = x.unsqueeze(1) if x.ndim == 3 else x.permute(0, 3, 1, 2)
    return x.float().div_(255.0).contiguous()


def _holdout(splits: Splits, size: int) -> Splits:
    """Replace the validation split by the last ``size`` examples of a fixed shuffle of train."""
    n = len(splits.train_x)
    if not 0 < size < n:
        raise ConfigError(f"dataset.holdout_size must be in 1..{n - 1}, got {size}.")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(0))
    keep, held = perm[: n - size], perm[n - size :]
    return Splits(
        splits.train_x[keep], splits.train_y[keep], splits.train_x[held], splits.train_y[held],
        splits.num_classes, splits.source + f" (holdout {size} of train)",
    )


def _standardize(splits: Splits) -> None:
    """Standardize both splits per channel with the training split's mean and std."""
    dims = [0, 2, 3]
    mean = splits.train_x.mean(dim=dims, keepdim=True)
    std = splits.train_x.std(dim=dims, keepdim=True).clamp_min(1e-8)
    splits.train_x = (splits.train_x - mean) / std
    splits.val_x = (splits.val_x - mean) / std


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
        found = _info(check).loader is None or find_dataset(check, root_path) is not None
        print(f"{check}: {'found' if found else 'missing'}")
        return 0 if found else 1
    print(f"data root: {root_path.resolve()}  (set with --root or $NORMBENCH_DATA)\n")
    for name, info in DATASETS.items():
        if info.loader is None:
            status, where = "built in", "-"
        else:
            folder = find_dataset(name, root_path)
            status, where = ("found", str(folder)) if folder else ("missing", "-")
        print(f"{name:15s} {status:9s} {where}")
        print(f"{'':15s} {info.description}")
        print(f"{'':15s} get it: {info.how_to_get}\n")
    return 0
