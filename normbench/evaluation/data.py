"""Evaluation data of ``normbench eval``: which split, and how its images reach the model.

By default a run is evaluated on its own dataset and validation split, exactly as training
evaluated it. ``data=<dataset config name>`` and ``data.<key>=value`` choose another split or
dataset (``configs/dataset/<name>.yaml``, or the run's own dataset config when the name is the
run's), with the same number of classes. Images of another dataset are loaded raw and pass
through the run's input pipeline::

    adapter (resize to the run's H×W, grey→RGB by repeating / RGB→grey by averaging channels)
      → corruption (``corruption=<name> severity=<1-5>``: normbench.data.corruptions)
      → the run's input standardization (its training split's per-channel mean and std, or
        ImageNet's for image folders), when the run standardized its inputs.

Another dataset is never downloaded unless ``data.download=true`` is given.
``data.root`` and ``data.num_workers`` say where and how to read the files, not which data:
they are left out of the ``data`` label of an evaluation (and also point the run's own
dataset at its files when the name is the run's).
"""

from __future__ import annotations

import difflib
import math
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf, open_dict

from normbench.config import config_dir, unknown_key_message, validate
from normbench.data.corruptions import ALL_CORRUPTIONS, corrupt
from normbench.data.datasets import load_dataset
from normbench.data.folder import IMAGENET_MEAN, IMAGENET_STD, FolderData
from normbench.engine.build import BuiltRun
from normbench.errors import ConfigError

Batch = tuple[torch.Tensor, torch.Tensor]
Transform = Callable[[torch.Tensor], torch.Tensor]

#: ``data.<key>`` options that say where the files are, not which data they hold.
LOCATION_KEYS = ("root", "num_workers")
#: Corruption names available to ``corruption=`` (besides ``none``, the clean data).
CORRUPTIONS = ALL_CORRUPTIONS
#: Base seed of the corruptions' random draws (see :func:`corruption_function`).
CORRUPTION_SEED = 0


@dataclass(frozen=True)
class DataChoice:
    """What ``data=``, ``data.<key>=``, ``corruption=`` and ``severity=`` asked for."""

    name: str | None = None  #: dataset config name; None: the run's own dataset
    overrides: tuple[tuple[str, Any], ...] = field(default=())
    corruption: str = "none"
    severity: int | None = None

    def label(self, run_dataset: str) -> str:
        """The ``data`` column: the dataset name and the overrides that change the data."""
        changes = [(k, v) for k, v in self.overrides if k not in LOCATION_KEYS]
        name = self.name or run_dataset
        if not changes:
            return name
        shown = ",".join(f"{k}={shown_value(v)}" for k, v in changes)
        return f"{name}[{shown}]"

    def location(self) -> dict[str, Any]:
        """The ``data.root`` / ``data.num_workers`` overrides."""
        return {k: v for k, v in self.overrides if k in LOCATION_KEYS}


def shown_value(value: Any) -> str:
    """``value`` as typed in an override: ``[3,32,32]``, ``true``, ``null``, ``holdout``."""
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(shown_value(v) for v in value) + "]"
    if isinstance(value, bool) or value is None:
        return "null" if value is None else str(value).lower()
    return str(value)


class EvalData(Protocol):
    """What the evaluation modes ask of evaluation data."""

    label: str
    num_samples: int

    def batches(self, batch_size: int, order: torch.Tensor | None = None) -> Iterator[Batch]:
        """``(x, y)`` batches of at most ``batch_size`` on the run's device, in split order or
        in ``order`` (indices into the split: a permutation or a subset)."""
        ...


class TensorEvalData:
    """An evaluation split held as tensors on the device (inputs already model-ready)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, label: str) -> None:
        self.x, self.y, self.label = x, y, label
        self.num_samples = len(x)

    def batches(self, batch_size: int, order: torch.Tensor | None = None) -> Iterator[Batch]:
        if order is None:
            yield from zip(self.x.split(batch_size), self.y.split(batch_size), strict=True)
            return
        for idx in order.to(self.x.device).split(batch_size):
            yield self.x.index_select(0, idx), self.y.index_select(0, idx)


class FolderEvalData:
    """An image-folder evaluation split, decoded by DataLoader workers, then ``transform``."""

    def __init__(self, data: FolderData, transform: Transform | None, label: str) -> None:
        self.data, self.transform, self.label = data, transform, label
        self.num_samples = len(data.val_set)

    def batches(self, batch_size: int, order: torch.Tensor | None = None) -> Iterator[Batch]:
        from torch.utils.data import DataLoader, Subset

        dataset = self.data.val_set if order is None else Subset(self.data.val_set, order.tolist())
        loader = DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=False,
            num_workers=self.data.num_workers,
            pin_memory=self.data.device.type == "cuda",
        )
        for x, y in loader:
            x = x.to(self.data.device, non_blocking=True)
            yield (x if self.transform is None else self.transform(x)), y.to(x.device)


def dataset_config(built: BuiltRun, choice: DataChoice) -> DictConfig:
    """The dataset config to evaluate on: the run's own or ``configs/dataset/<name>.yaml``,
    with the ``data.<key>`` overrides applied and checked like a training config.

    Raises:
        ConfigError: an unknown dataset name, an unknown key or a bad value.
    """
    run_ds = built.cfg.dataset
    name = choice.name or run_ds.name
    if name == run_ds.name:
        cfg = OmegaConf.create(OmegaConf.to_container(run_ds))
    else:
        path = config_dir() / "dataset" / f"{name}.yaml"
        if not path.is_file():
            known = sorted(p.stem for p in (config_dir() / "dataset").glob("*.yaml"))
            raise ConfigError(
                f"data={name} is not a dataset config; choose one of {', '.join(known)}."
            )
        cfg = OmegaConf.load(path)
        cfg.download = False  # evaluation never downloads unless data.download=true is given
    for key, value in choice.overrides:
        if key not in cfg:
            raise ConfigError(
                unknown_key_message("data", key, [str(k) for k in cfg], f"data={name}")
            )
        cfg[key] = list(value) if isinstance(value, tuple) else value
    whole = OmegaConf.create(OmegaConf.to_container(built.cfg))
    with open_dict(whole):
        whole.dataset = cfg
    try:
        validate(whole)
    except ConfigError as err:
        raise ConfigError(str(err).replace("dataset.", "data.")) from None
    return cfg


def check_corruption(name: str, severity: int | None) -> None:
    """Reject an unknown corruption, a corruption without a severity in 1..5, or a severity
    without a corruption.

    Raises:
        ConfigError: naming the available values.
    """
    if name != "none" and name not in CORRUPTIONS:
        close = difflib.get_close_matches(name, CORRUPTIONS, n=1)
        hint = f"did you mean corruption={close[0]}? " if close else ""
        raise ConfigError(
            f"corruption={name} is not a corruption; {hint}choose none or one of "
            f"{', '.join(CORRUPTIONS)} (docs/corruptions.md)."
        )
    if name == "none" and severity is not None:
        raise ConfigError(f"severity={severity} needs a corruption (corruption=<name>).")
    if name != "none" and severity not in range(1, 6):
        raise ConfigError(f"corruption={name} needs severity=1..5, got {severity}.")


def corruption_function(name: str, severity: int | None) -> Transform | None:
    """The function that corrupts a batch of [0, 1] images, or None for ``none``.

    It is applied to the evaluation images at the run's input size, before standardization.
    Each batch's random draws are seeded by :data:`CORRUPTION_SEED` and a checksum of the
    batch's pixels, so the same data are always corrupted the same way and different chunks of
    a split get different noise.
    """
    check_corruption(name, severity)
    if name == "none":
        return None

    def apply(x: torch.Tensor) -> torch.Tensor:
        sample = x[..., ::7, ::7].detach().float().cpu().contiguous().numpy().tobytes()
        return corrupt(x, name, int(severity), seed=CORRUPTION_SEED + zlib.crc32(sample))

    return apply


def input_adapter(source: tuple[int, ...], target: tuple[int, ...]) -> Transform | None:
    """A function mapping (N, *source) images to (N, *target), or None when they agree.

    Raises:
        ConfigError: shapes that are not (C, H, W), or channel counts other than 1 ↔ 3.
    """
    source, target = tuple(source), tuple(target)
    if source == target:
        return None
    if len(source) != 3 or len(target) != 3:
        raise ConfigError(f"cannot adapt inputs of shape {source} to the run's {target}.")
    (c_in, *size_in), (c_out, *size_out) = source, target
    if c_in != c_out and {c_in, c_out} != {1, 3}:
        raise ConfigError(
            f"cannot adapt {c_in}-channel images to the run's {c_out} channels (only grey ↔ RGB)."
        )

    def adapt(x: torch.Tensor) -> torch.Tensor:
        if size_in != size_out:
            shrink = size_out[0] < size_in[0] or size_out[1] < size_in[1]
            x = F.interpolate(
                x, size=tuple(size_out), mode="bilinear", align_corners=False, antialias=shrink
            )
        if c_in == 1 and c_out == 3:
            x = x.expand(-1, 3, -1, -1)
        elif c_in == 3 and c_out == 1:
            x = x.mean(1, keepdim=True)
        return x.contiguous()

    return adapt


def source_standardizer(built: BuiltRun) -> Transform | None:
    """The run's input standardization as a function of raw [0, 1] images, or None."""
    if not (built.cfg.dataset.standardize or built.spec.standardize_input):
        return None
    if isinstance(built.data, FolderData):
        mean, std = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
    else:  # normbench.data.splits.standardize_splits, over the run's raw training split
        raw = load_dataset(built.cfg.dataset, built.device, standardize=False)
        dims = [0, 2, 3]
        mean = raw.train_x.mean(dim=dims).cpu()
        std = raw.train_x.std(dim=dims).clamp_min(1e-8).cpu()
    mean, std = (t.view(1, -1, 1, 1).to(built.device) for t in (mean, std))
    return lambda x: (x - mean) / std


def compose(*steps: Transform | None) -> Transform | None:
    """The steps applied left to right (None steps skipped); None if there are none."""
    todo = [s for s in steps if s is not None]
    if not todo:
        return None

    def run(x: torch.Tensor) -> torch.Tensor:
        for step in todo:
            x = step(x)
        return x

    return run


def load_eval_data(built: BuiltRun, choice: DataChoice) -> EvalData:
    """The evaluation split ``choice`` names, ready for the run's model.

    Raises:
        ConfigError: a bad data option, a different number of classes, shapes that cannot be
            adapted, or an unavailable corruption.
        DataError: the dataset's files are missing.
    """
    run_ds = built.cfg.dataset
    label = choice.label(run_ds.name)
    corrupt = corruption_function(choice.corruption, choice.severity)
    if label == run_ds.name and corrupt is None:  # the run's own validation split
        if isinstance(built.data, FolderData):
            return FolderEvalData(built.data, None, label)
        return TensorEvalData(built.data.val_x, built.data.val_y, label)
    cfg = dataset_config(built, choice)
    data = load_dataset(cfg, built.device, standardize=False)
    if data.num_classes != built.data.num_classes:
        raise ConfigError(
            f"data={cfg.name} has {data.num_classes} classes but the run was trained on "
            f"{run_ds.name} with {built.data.num_classes} classes; evaluate on data with "
            f"{built.data.num_classes} classes."
        )
    pipeline = compose(
        input_adapter(data.in_shape, built.data.in_shape), corrupt, source_standardizer(built)
    )
    if isinstance(data, FolderData):
        return FolderEvalData(data, pipeline, label)
    x = data.val_x
    if pipeline is not None:  # in chunks: a resize of the whole split at once may not fit
        chunk = max(1, (1 << 24) // max(1, math.prod(built.data.in_shape)))
        x = torch.cat([pipeline(part) for part in data.val_x.split(chunk)])
    return TensorEvalData(x, data.val_y, label)
