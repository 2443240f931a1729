"""Image-folder datasets (ImageNet, Imagenette, Office-31): decoded from files by DataLoader workers.

Two layouts under ``<root>/<path>`` (``dataset.path``; absolute paths are taken as they are):

- splits (ImageNet, Imagenette): ``<train_dir>/<class>/*.jpg`` and ``<val_dir>/<class>/*.jpg``;
- domains (Office-31): ``<domain>/images/<class>/*.jpg`` (or ``<domain>/<class>/*.jpg``), with
  ``dataset.domain`` to train on and ``dataset.val_domain`` to evaluate on.

Standard transforms: training RandomResizedCrop(size) + horizontal flip; evaluation
Resize(size * 256 / 224) + CenterCrop(size); then ImageNet mean/std normalization.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import torch
from omegaconf import DictConfig
from torch.utils.data import DataLoader, Dataset, Subset
from torchvision import transforms as T
from torchvision.datasets import ImageFolder

from normbench.data.folder_loader import FolderLoader, SeededTransform, read_image
from normbench.errors import ConfigError, DataError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def train_transform(size: int, normalize: bool) -> T.Compose:
    """RandomResizedCrop(size) (scale 0.08..1, aspect 3/4..4/3), random flip, to tensor, normalize."""
    steps = [T.RandomResizedCrop(size), T.RandomHorizontalFlip(), T.ToTensor()]
    return T.Compose(steps + ([T.Normalize(IMAGENET_MEAN, IMAGENET_STD)] if normalize else []))


def eval_transform(size: int, normalize: bool) -> T.Compose:
    """Resize the short side to size * 256 / 224, center crop size x size, to tensor, normalize."""
    steps = [T.Resize(round(size * 256 / 224)), T.CenterCrop(size), T.ToTensor()]
    return T.Compose(steps + ([T.Normalize(IMAGENET_MEAN, IMAGENET_STD)] if normalize else []))


def has_folder_files(folder: Path) -> bool:
    """Whether ``folder`` looks like an image-folder dataset: a ``train/`` folder, or domains
    with an ``images/`` folder each."""
    if (folder / "train").is_dir():
        return True
    return any((d / "images").is_dir() for d in folder.iterdir() if d.is_dir())


def domain_folder(base: Path, domain: str) -> Path:
    """``<base>/<domain>/images`` when it exists (Office-31), else ``<base>/<domain>``."""
    images = base / domain / "images"
    return images if images.is_dir() else base / domain


def split_folders(base: Path, cfg: DictConfig) -> tuple[Path, Path]:
    """The training and validation class folders under ``base`` that a config points to."""
    domain = cfg.get("domain")
    if domain:
        return domain_folder(base, domain), domain_folder(base, cfg.get("val_domain") or domain)
    return base / cfg.get("train_dir", "train"), base / cfg.get("val_dir", "val")


def _image_folder(folder: Path, transform: T.Compose | None, how_to_get: str) -> ImageFolder:
    if not folder.is_dir():
        raise DataError(
            f"{folder} not found: an image-folder split is a folder of class folders, "
            f"{folder}/<class>/*.jpg. {how_to_get}"
        )
    try:
        return ImageFolder(str(folder), transform=transform, loader=read_image)
    except (FileNotFoundError, OSError) as err:
        raise DataError(
            f"{folder} holds no images in class folders ({err}). {how_to_get}"
        ) from None


def _num_workers(cfg: DictConfig) -> int:
    value = cfg.get("num_workers")
    if value is None:
        return min(8, os.cpu_count() or 1)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ConfigError(
            f"dataset.num_workers must be an integer >= 0 (or null: min(8, CPUs)), got {value!r}."
        )
    return value


class FolderData:
    """An image-folder dataset: what the engine asks of any dataset (see ``Splits``), with
    images decoded and transformed by DataLoader workers and batches moved to ``device``.

    Args:
        train_dir: training class folders.
        val_dir: validation class folders (the same class names).
        size: side of the square crops.
        normalize: ImageNet mean/std normalization (else values stay in [0, 1]).
        device: the training device.
        num_workers: DataLoader worker processes.
        how_to_get: appended to error messages.
    """

    def __init__(
        self,
        train_dir: Path,
        val_dir: Path,
        size: int,
        normalize: bool,
        device: torch.device,
        num_workers: int,
        how_to_get: str = "",
    ) -> None:
        train = _image_folder(train_dir, None, how_to_get)
        val = _image_folder(val_dir, eval_transform(size, normalize), how_to_get)
        if val.class_to_idx != train.class_to_idx:
            only_train = sorted(set(train.classes) - set(val.classes))
            only_val = sorted(set(val.classes) - set(train.classes))
            raise DataError(
                f"{train_dir} and {val_dir} must hold the same class folders (only in train: "
                f"{only_train[:5]}, only in val: {only_val[:5]})"
            )
        self.classes = train.classes
        self.train_set = SeededTransform(
            train.samples, train.loader, train_transform(size, normalize)
        )
        self.val_set = val
        self.num_classes = len(train.classes)
        self.in_shape = (3, size, size)
        self.source = f"{train_dir} (train), {val_dir} (val)"
        self.device = device
        self.num_workers = num_workers
        self._val_loaders: dict[int, DataLoader] = {}
        self._probe: torch.Tensor | None = None

    def train_loader(
        self,
        batch_size: int,
        seed: int,
        shard: tuple[int, int] = (0, 1),
        classes: int | None = None,
    ) -> FolderLoader:
        """Endless shuffled, augmented training batches, resumable (see :class:`FolderLoader`);
        ``shard=(rank, world_size)``: this process's slice of each global batch.

        Raises:
            ConfigError: ``classes`` given (non-i.i.d. batches need an in-memory dataset).
        """
        if classes is not None:
            raise ConfigError(
                f"batching.classes={classes} (non-i.i.d. batches) needs a dataset held in "
                "memory; image folders are drawn i.i.d.: set batching.classes=null."
            )
        return FolderLoader(self.train_set, batch_size, seed, self.device, self.num_workers, shard)

    def _loader(self, dataset: Dataset, batch_size: int, persistent: bool) -> DataLoader:
        """In-order batches; a private generator keeps the global RNG untouched by ``iter``."""
        workers = self.num_workers
        return DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=False,
            num_workers=workers,
            pin_memory=self.device.type == "cuda",
            persistent_workers=persistent and workers > 0,
            generator=torch.Generator(),
        )

    def val_batches(self, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The validation split in order, in batches of at most ``batch_size``, on the device."""
        if batch_size not in self._val_loaders:
            self._val_loaders[batch_size] = self._loader(self.val_set, batch_size, persistent=True)
        for x, y in self._val_loaders[batch_size]:
            yield x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)

    def probe_inputs(self, n: int) -> torch.Tensor:
        """The first ``n`` validation inputs (evaluation transform), on the device."""
        if self._probe is None or len(self._probe) < min(n, len(self.val_set)):
            subset = Subset(self.val_set, range(min(n, len(self.val_set))))
            loader = self._loader(subset, max(1, min(n, 256)), persistent=False)
            self._probe = torch.cat([x for x, _ in loader]).to(self.device)
        return self._probe[:n]


def load_folder(
    base: Path, cfg: DictConfig, device: torch.device, normalize: bool, how_to_get: str
) -> FolderData:
    """The image-folder dataset under ``base`` that ``cfg`` points to.

    Raises:
        ConfigError: ``val_split=holdout`` (folders come with their validation split), a bad size
            or worker count.
        DataError: a split folder is missing, empty, or the splits' classes differ.
    """
    if cfg.get("val_split", "test") != "test":
        raise ConfigError(
            f"dataset.val_split={cfg.val_split} is not supported for image folders: the validation "
            "images come from dataset.val_dir (or dataset.val_domain). Use dataset.val_split=test."
        )
    size = cfg.get("size", 224)
    if not isinstance(size, int) or isinstance(size, bool) or size < 8:
        raise ConfigError(f"dataset.size must be an integer >= 8 (the crop side), got {size!r}.")
    train_dir, val_dir = split_folders(base, cfg)
    return FolderData(train_dir, val_dir, size, normalize, device, _num_workers(cfg), how_to_get)
