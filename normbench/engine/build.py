"""The one way in: config -> effective config, norm spec, data, model, optimizer.

Every command that needs a model from a config (``normbench train``, ``normbench eval``, the
benches, the scripts) calls :func:`build_run`, or for a model without data (the benches)
:func:`build_norm` and :func:`build_network`. Nothing else calls ``build_model`` or
``build_norm_spec``.

``per_device`` is resolved here, once, into an *effective* config (the batch, learning rate and
step counts a run really uses); the caller's config is never modified, so building twice from the
same config gives the same run.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch
from omegaconf import DictConfig
from torch import nn

from normbench.config import validate
from normbench.data.datasets import load_dataset
from normbench.engine.distributed import launched_world_size
from normbench.engine.environment import seed_everything, select_device
from normbench.engine.fastpath import FastPath
from normbench.engine.optim import build_optimizer, build_scheduler
from normbench.engine.per_device import PerDevice, apply_per_device
from normbench.errors import ConfigError
from normbench.models import build_model
from normbench.norms import NormSpec, build_norm_spec


@dataclass
class BuiltRun:
    """Everything a run needs, built from one config."""

    cfg: DictConfig  #: the effective config (per_device resolved); a copy of the caller's
    per_device: PerDevice
    device: torch.device
    fast: FastPath
    spec: NormSpec
    data: Any  #: a normbench.data dataset (train loader, validation batches, probe inputs)
    model: nn.Module
    optimizer: torch.optim.Optimizer | None = None
    scheduler: Any = None


def effective_config(
    cfg: DictConfig, world_size: int | None = None
) -> tuple[DictConfig, PerDevice]:
    """A copy of ``cfg`` with ``per_device`` resolved into batch, lr and step counts
    (``world_size``: the run's processes; default torchrun's, else 1)."""
    effective = copy.deepcopy(cfg)
    return effective, apply_per_device(effective, world_size)


def group_size(per_device: PerDevice) -> int | None:
    """Samples per normalization group in one process: per_device.images, except in ddp mode
    (each process's whole batch is one device's)."""
    return None if per_device.mode == "ddp" else per_device.images


def build_norm(norm_cfg: Any, images_per_device: int | None = None) -> NormSpec:
    """The normalization spec of a ``norm`` config (statistics over groups of
    ``images_per_device`` samples when set)."""
    return build_norm_spec(norm_cfg, images_per_device=images_per_device)


def build_network(
    model_cfg: DictConfig, spec: NormSpec, num_classes: int, in_shape: tuple[int, ...]
) -> nn.Module:
    """The model of a ``model`` config, with ``spec`` in every norm slot (on the CPU)."""
    return build_model(model_cfg, spec, num_classes, in_shape)


def build_run(
    cfg: DictConfig,
    *,
    optimizer: bool = True,
    device: torch.device | str | None = None,
    world_size: int | None = None,
) -> BuiltRun:
    """Validate ``cfg`` and build the run it describes (seeded, so the same config gives the
    same initial weights).

    Args:
        cfg: a composed ``train`` config (Hydra's, or a run's saved ``.hydra/config.yaml``).
        optimizer: also build the optimizer and learning-rate schedule (training only).
        device: where to build; default ``trainer.device``.
        world_size: processes of a distributed run (default: torchrun's WORLD_SIZE, else 1).

    Raises:
        ConfigError, DataError: a bad value or missing data (one message naming the fix).
    """
    validate(cfg)
    effective, per_device = effective_config(cfg, world_size)
    world = launched_world_size() if world_size is None else world_size
    if effective.probes.get("smoothness") and world > 1:
        raise ConfigError(
            f"probes.smoothness runs on one process, this run has {world}: set probes.smoothness=0 (or per_device.mode=real to "
            "simulate the devices on one process)."
        )
    tcfg = effective.trainer
    device = torch.device(device) if device is not None else select_device(tcfg.device)
    fast = FastPath.from_config(tcfg, device)
    seed_everything(effective.seed, tcfg.deterministic, tcfg.threads)
    spec = build_norm(effective.norm, group_size(per_device))
    data = load_dataset(
        effective.dataset,
        device,
        standardize=effective.dataset.standardize or spec.standardize_input,
    )
    model = build_network(effective.model, spec, data.num_classes, data.in_shape).to(device)
    built = BuiltRun(effective, per_device, device, fast, spec, data, model)
    if optimizer:
        built.optimizer = build_optimizer(effective.optim, model)
        built.scheduler = build_scheduler(effective.optim, built.optimizer, tcfg.steps)
    return built
