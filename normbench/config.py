"""Config schemas, validation with clear messages, the Hydra config location, OmegaConf resolvers.

Hydra already rejects unknown keys and unknown group options (``norm=foo``) with a message
that lists the choices; :func:`validate` adds type and range checks on the common knobs so
that a bad value fails at once, naming the key and the fix, not deep inside torch.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from normbench.errors import ConfigError


def config_dir() -> Path:
    """The directory holding ``train.yaml``: ``configs/`` of the checkout or of the wheel."""
    return Path(str(importlib.resources.files("normbench.configs")))


MAX_RUN_ID = 200  # file names are limited to 255 bytes


def run_id(override_dirname: str) -> str:
    """Directory name of a run from its overrides (``default`` when there are none).

    Names longer than ``MAX_RUN_ID`` keep their start and end with a hash of the whole, so that
    the same overrides always give the same directory and different ones never collide.
    """
    name = re.sub(r"[/\\\s]+", "_", override_dirname).strip("_")
    if len(name) > MAX_RUN_ID:
        digest = hashlib.sha1(name.encode()).hexdigest()[:10]
        name = f"{name[: MAX_RUN_ID - 11]}-{digest}"
    return name or "default"


def step_at(steps: Any, fraction: Any) -> int:
    """``${nb_step_at:${trainer.steps},0.5}``: the step at a fraction of training, rounded up.

    Lets a config place lr drops or a warm-up relative to the run length, so that changing
    ``trainer.steps`` moves them with it.
    """
    try:
        steps, fraction = int(steps), float(fraction)
    except (TypeError, ValueError):
        raise ConfigError(
            f"nb_step_at needs a step count and a fraction, got {steps!r} and {fraction!r}."
        ) from None
    if steps < 0 or not 0.0 <= fraction <= 1.0:
        raise ConfigError(
            f"nb_step_at: steps must be >= 0 and the fraction in [0, 1], got {steps} and {fraction}."
        )
    return math.ceil(round(steps * fraction, 9))


def register_resolvers() -> None:
    """Register normbench's OmegaConf resolvers (idempotent)."""
    if not OmegaConf.has_resolver("nb_run_id"):
        OmegaConf.register_new_resolver("nb_run_id", run_id)
    if not OmegaConf.has_resolver("nb_step_at"):
        OmegaConf.register_new_resolver("nb_step_at", step_at)


@dataclass
class TrainerConfig:
    """``trainer.*``: the training loop."""

    steps: int = 1000
    eval_every: int = 500
    device: str = "auto"
    deterministic: bool = False
    threads: int | None = None
    log_every: int = 100
    ckpt_every: int = 5000
    ckpt_minutes: float = 5.0
    resume: str = "auto"
    eval_batch_size: int = 1000
    stop_after: int | None = None
    amp: Any = False  # false | bf16 (checked against CHOICES)
    channels_last: bool = False
    compile: bool = False


@dataclass
class ProbesConfig:
    """``probes.*``: per-layer activation statistics on a fixed probe batch."""

    every: int = 100
    hist_every: int = 1000
    batch_size: int = 1000
    saturation: float = 4.0
    mode: str = "batch_stats"


@dataclass
class LoggingConfig:
    """``logging.*``: where metrics go besides the CSV files."""

    tensorboard: bool = True


@dataclass
class OptimConfig:
    """``optim.*``: optimizer and learning-rate schedule."""

    name: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.0  # sgd
    nesterov: bool = False  # sgd
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])  # adam
    eps: float = 1e-8  # adam
    weight_decay: float = 0.0
    schedule: str = "constant"
    milestones: list[int] = field(default_factory=list)
    gamma: float = 0.1


SCHEMAS: dict[str, type] = {
    "trainer": TrainerConfig,
    "probes": ProbesConfig,
    "logging": LoggingConfig,
    "optim": OptimConfig,
}

CHOICES: dict[str, tuple[Any, ...]] = {
    "trainer.device": ("auto", "cpu", "cuda"),
    "trainer.amp": (False, "bf16"),
    "trainer.resume": ("auto", "never"),
    "probes.mode": ("batch_stats", "eval"),
    "optim.name": ("sgd", "adam"),
    "optim.schedule": ("constant", "cosine", "step"),
    "dataset.val_split": ("test", "holdout"),
}

POSITIVE = (
    "trainer.steps",
    "trainer.eval_every",
    "trainer.log_every",
    "trainer.ckpt_every",
    "trainer.ckpt_minutes",
    "trainer.eval_batch_size",
    "trainer.threads",
    "trainer.stop_after",
    "probes.batch_size",
    "probes.saturation",
    "optim.lr",
    "dataset.batch_size",
)
NON_NEGATIVE = ("probes.every", "probes.hist_every", "optim.momentum", "optim.weight_decay")


def validate(cfg: DictConfig) -> None:
    """Check types and ranges of the common knobs; raise :class:`ConfigError` naming the fix."""
    for section, schema in SCHEMAS.items():
        try:
            OmegaConf.merge(OmegaConf.structured(schema), cfg[section])
        except OmegaConfBaseException as err:
            key = f"{section}.{err.full_key}" if getattr(err, "full_key", None) else section
            msg = str(err).splitlines()[0]
            raise ConfigError(f"bad value for {key}: {msg}. Fix it with {key}=<value>.") from None
    for key, choices in CHOICES.items():
        value = OmegaConf.select(cfg, key)
        if value is not None and not any(type(value) is type(c) and value == c for c in choices):
            shown = ", ".join(str(c).lower() if isinstance(c, bool) else c for c in choices)
            raise ConfigError(f"{key}={value!r} is not one of {shown}.")
    for key in POSITIVE + NON_NEGATIVE:
        value: Any = OmegaConf.select(cfg, key)
        if value is None:
            continue
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise ConfigError(f"{key} must be a number, got {value!r}.")
        if key in POSITIVE and value <= 0:
            raise ConfigError(f"{key} must be > 0, got {value}.")
        if key in NON_NEGATIVE and value < 0:
            raise ConfigError(f"{key} must be >= 0, got {value}.")
