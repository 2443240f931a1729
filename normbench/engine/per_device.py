"""Images per device: simulate the GroupNorm paper's per-GPU batch on one device.

The GN paper (Wu & He 2018) computes BN statistics per GPU, so "batch size" there means images
per GPU. ``per_device.images=N`` reproduces that on one device in one of two ways:

- ``per_device.mode=ghost`` (default): the optimizer batch stays ``dataset.batch_size``; every
  variant that normalizes with batch statistics computes them over consecutive groups of N
  samples (ghost batches), exactly as N images on each of ``batch_size / N`` devices would.
- ``per_device.mode=real``: the batch itself becomes D·N for ``per_device.devices=D`` (default
  1: one device holding N images), statistics over groups of N, with the linear learning-rate
  scaling rule ``lr = optim.lr · D·N / dataset.batch_size`` and every step count —
  ``trainer.steps``, ``trainer.eval_every``, ``optim.milestones`` and the norm's ``*_steps`` knobs (Batch Renorm's r/d
  schedule) — scaled by ``dataset.batch_size / (D·N)``, so that every setting sees the same
  number of epochs. ``devices=8`` with ``dataset.batch_size=256`` is the GN paper's own setting:
  8 GPUs × N images, lr 0.1·N/32.
- ``per_device.mode=ddp``: real devices. Under ``torchrun --nproc_per_node=D`` each of the D
  processes holds N images (its own batch statistics: nothing is grouped), the global batch is
  D·N, with the learning rate and step counts of ``real`` mode for ``devices=D``. Compared with
  ghost mode on the same settings, it differs only in floating-point order and in the running
  statistics (DDP keeps rank 0's; ghost BN averages the groups').

Any run under torchrun (whatever the mode) splits each global batch of ``dataset.batch_size``
over the processes, so ``norm=batch`` has per-process statistics of batch / D samples.

Variants whose statistics do not involve other samples (GN, LN, IN, …) are unaffected by the
ghost mode: their result is independent of N by construction. ``sync_batch`` is unchanged too:
synchronized BN shares its statistics across devices, simulated ones included.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Any

from omegaconf import DictConfig, open_dict

from normbench.errors import ConfigError

log = logging.getLogger("normbench")

MODES = ("ghost", "real", "ddp")


@dataclass(frozen=True)
class PerDevice:
    """What ``per_device.*`` resolved to for one run."""

    images: int | None  # samples per normalization group (None: the whole batch)
    mode: str
    batch_size: int  # samples per optimizer step
    devices: int  # simulated devices (real mode; ghost mode: batch_size / images)
    lr: float
    steps: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def resolve_per_device(cfg: DictConfig, world_size: int | None = None) -> PerDevice:
    """Work out batch size, learning rate, steps and group size from ``per_device.*``.

    ``world_size``: the processes of the run (default: torchrun's WORLD_SIZE, else 1).

    Raises:
        ConfigError: an unknown mode, or N that is not a positive divisor of the batch.
    """
    from normbench.engine.distributed import launched_world_size

    world = launched_world_size() if world_size is None else world_size
    node = cfg.get("per_device") or {}
    images, mode, devices = node.get("images"), node.get("mode", "ghost"), node.get("devices", 1)
    batch, lr, steps = int(cfg.dataset.batch_size), float(cfg.optim.lr), int(cfg.trainer.steps)
    if mode not in MODES:
        raise ConfigError(f"per_device.mode={mode!r} is not one of {', '.join(MODES)}.")
    if mode == "ddp":
        return _resolve_ddp(images, devices, world, batch, lr, steps)
    if world > 1 and images is not None and (batch % world or (batch // world) % images):
        raise ConfigError(
            f"per_device.images={images} must divide each process's share of the batch "
            f"(dataset.batch_size={batch} over {world} processes); or use per_device.mode=ddp, "
            "where each process holds per_device.images images."
        )
    if isinstance(devices, bool) or not isinstance(devices, int) or devices < 1:
        raise ConfigError(f"per_device.devices must be a positive integer, got {devices!r}.")
    if images is None:
        return PerDevice(None, mode, batch, 1, lr, steps)
    if isinstance(images, bool) or not isinstance(images, int) or images < 1:
        raise ConfigError(f"per_device.images must be a positive integer or null, got {images!r}.")
    if batch % images:
        raise ConfigError(
            f"per_device.images={images} does not divide dataset.batch_size={batch}: every "
            "simulated device needs the same number of images. Pick a divisor of the batch."
        )
    if mode == "ghost":
        if devices not in (1, batch // images):
            raise ConfigError(
                f"per_device.devices={devices} applies to per_device.mode=real; in ghost mode the "
                f"batch sets it (dataset.batch_size / per_device.images = {batch // images})."
            )
        return PerDevice(images, mode, batch, batch // images, lr, steps)
    real_batch = devices * images
    if batch % real_batch:
        raise ConfigError(
            f"per_device.devices={devices} x per_device.images={images} = {real_batch} does not "
            f"divide dataset.batch_size={batch}, so the epochs cannot be kept equal. Pick devices "
            "and images whose product divides the batch."
        )
    return PerDevice(
        images, mode, real_batch, devices, lr * real_batch / batch, steps * (batch // real_batch)
    )


def _resolve_ddp(
    images: Any, devices: Any, world: int, batch: int, lr: float, steps: int
) -> PerDevice:
    """``per_device.mode=ddp``: ``world`` processes of N images each (real mode's scaling)."""
    if world < 2:
        raise ConfigError(
            "per_device.mode=ddp needs one process per device: start the run with torchrun "
            "--nproc_per_node=D -m normbench train ... (on one process use per_device.mode=real)."
        )
    if isinstance(images, bool) or not isinstance(images, int) or images < 1:
        raise ConfigError(
            f"per_device.mode=ddp needs per_device.images=N (images per process), got {images!r}."
        )
    if devices not in (1, world):
        raise ConfigError(
            f"per_device.devices={devices}: in ddp mode the devices are the {world} processes "
            "torchrun started; leave per_device.devices unset."
        )
    real_batch = world * images
    if batch % real_batch:
        raise ConfigError(
            f"{world} processes x per_device.images={images} = {real_batch} does not divide "
            f"dataset.batch_size={batch}, so the epochs cannot be kept equal."
        )
    return PerDevice(
        images, "ddp", real_batch, world, lr * real_batch / batch, steps * (batch // real_batch)
    )


def apply_per_device(cfg: DictConfig, world_size: int | None = None) -> PerDevice:
    """Resolve ``per_device.*`` and write the effective batch, lr and steps back into ``cfg``."""
    resolved = resolve_per_device(cfg, world_size)
    if resolved.mode in ("real", "ddp") and resolved.images is not None:
        factor = resolved.steps // int(cfg.trainer.steps)
        # Read every step count before writing any: a count given relative to the run length
        # (${nb_step_at:${trainer.steps},0.5}) must resolve against the old length, once.
        eval_every = int(cfg.trainer.eval_every) * factor
        milestones = [int(m) * factor for m in cfg.optim.get("milestones") or []]
        norm_steps = {
            key: cfg.norm[key] * factor
            for key in cfg.norm
            if str(key).endswith("_steps")
            and isinstance(cfg.norm[key], int)
            and not isinstance(cfg.norm[key], bool)
        }
        with open_dict(cfg):
            cfg.dataset.batch_size = resolved.batch_size
            cfg.optim.lr = resolved.lr
            cfg.trainer.steps = resolved.steps
            cfg.trainer.eval_every = eval_every
            if milestones:
                cfg.optim.milestones = milestones
            for key, value in norm_steps.items():
                cfg.norm[key] = value
        log.info(
            "per_device.mode=%s: %d device(s) x %d images = batch %d, lr %.4g, %d steps "
            "(linear scaling rule, same epochs)",
            resolved.mode,
            resolved.devices,
            resolved.images,
            resolved.batch_size,
            resolved.lr,
            resolved.steps,
        )
    return resolved
