"""Config schemas, validation with clear messages, the Hydra config location, OmegaConf resolvers.

Hydra already rejects unknown keys and unknown group options (``norm=foo``) with a message
that lists the choices; :func:`validate` adds type and range checks on the common knobs so
that a bad value fails at once, naming the key and the fix, not deep inside torch.
:func:`check_run_name` keeps ``name`` a plain directory under ``runs/``; Hydra calls it
through the ``nb_run_name`` resolver of ``hydra.run.dir`` before it creates the directory.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import importlib.resources
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import MISSING, DictConfig, OmegaConf
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


SEED_MAX = 2**32 - 1  # numpy's seeding takes 0..2**32-1
NAME_CHARS = "_-.+=,"  # besides letters and digits


def shown(value: Any) -> str:
    """``value`` as a user types it in an override: ``true``, ``null``, ``'text'``, ``1.5``."""
    if isinstance(value, bool):
        return str(value).lower()
    if value is None:
        return "null"
    return repr(value) if isinstance(value, str) else str(value)


def check_run_name(name: object) -> str:
    """``name`` as a directory name: one plain path component, so runs stay under ``runs/``.

    Also the ``nb_run_name`` resolver of ``hydra.run.dir`` and ``hydra.sweep.dir``, so that a bad
    name fails before Hydra creates any directory.

    Raises:
        ConfigError: empty, ``.``/``..`` or a leading dot, a path separator, or another
            character than letters, digits and ``_ - . + = ,``.
    """
    text = str(name) if isinstance(name, int) and not isinstance(name, bool) else name
    if (
        not isinstance(text, str)
        or not text
        or text.startswith(".")
        or not all(ch.isalnum() or ch in NAME_CHARS for ch in text)
    ):
        raise ConfigError(
            f"name={shown(name)} must be a plain directory name under runs/ (letters, digits, "
            f"{' '.join(NAME_CHARS)}); choose e.g. name=my_study"
        )
    return text


def unknown_key_message(section: str, key: str, known: list[str], owner: str | None = None) -> str:
    """One line for an unknown ``section.key``: the close match, or else the section's options.

    Args:
        section: the dotted prefix as the user types it (``trainer``, ``norm``).
        key: the unknown key under it.
        known: the section's option names.
        owner: how to name the section, when not ``section`` itself (``norm=group``).
    """
    close = difflib.get_close_matches(key, known, n=1)
    if close:
        hint = f"did you mean {section}.{close[0]}?"
    elif known:
        hint = f"its options are: {', '.join(known)}"
    else:
        hint = "it takes no options"
    return (
        f"{section}.{key} is not an option of {owner or section} ({hint}); "
        "`normbench train --cfg job` lists every option."
    )


def register_resolvers() -> None:
    """Register normbench's OmegaConf resolvers (idempotent)."""
    if not OmegaConf.has_resolver("nb_run_name"):
        OmegaConf.register_new_resolver("nb_run_name", check_run_name)
    if not OmegaConf.has_resolver("nb_run_id"):
        OmegaConf.register_new_resolver("nb_run_id", run_id)
    if not OmegaConf.has_resolver("nb_step_at"):
        OmegaConf.register_new_resolver("nb_step_at", step_at)


@dataclass
class TrainerConfig:
    """``trainer.*``: the training loop (types only: defaults and comments live in
    configs/train.yaml, the one place they are written)."""

    steps: int = MISSING
    eval_every: int = MISSING
    device: str = MISSING
    deterministic: bool = MISSING
    threads: int | None = MISSING
    log_every: int = MISSING
    ckpt_every: int = MISSING
    keep_every: int | None = MISSING
    ckpt_minutes: float = MISSING
    resume: str = MISSING
    eval_batch_size: int = MISSING
    freeze_norm_stats_at: int | None = MISSING
    stop_after: int | None = MISSING
    amp: Any = MISSING  # false | bf16 (checked against CHOICES)
    channels_last: bool = MISSING
    compile: bool = MISSING


@dataclass
class ProbesConfig:
    """``probes.*``: per-layer activation statistics on a fixed probe batch."""

    every: int = MISSING
    hist_every: int = MISSING
    batch_size: int = MISSING
    saturation: float = MISSING
    mode: str = MISSING
    params: bool = MISSING
    jacobian: int = MISSING
    jacobian_examples: int = MISSING
    smoothness: int = MISSING
    smoothness_steps: list[float] = MISSING
    hidden_grads: int = MISSING


@dataclass
class BatchingConfig:
    """``batching.*``: how training batches are drawn (normbench/data/samplers.py)."""

    classes: int | None = MISSING
    sizes: list[int] | None = MISSING
    lr_scaling: str = MISSING


@dataclass
class LoggingConfig:
    """``logging.*``: where metrics go besides the CSV files."""

    tensorboard: bool = MISSING


@dataclass
class OptimConfig:
    """``optim.*``: optimizer and learning-rate schedule."""

    name: str = MISSING
    lr: float = MISSING
    momentum: float = MISSING  # sgd
    nesterov: bool = MISSING  # sgd
    betas: list[float] = MISSING  # adam
    eps: float = MISSING  # adam
    weight_decay: float = MISSING
    schedule: str = MISSING
    milestones: list[int] = MISSING
    gamma: float = MISSING
    warmup_steps: int = 0


SCHEMAS: dict[str, type] = {
    "trainer": TrainerConfig,
    "probes": ProbesConfig,
    "batching": BatchingConfig,
    "logging": LoggingConfig,
    "optim": OptimConfig,
}

CHOICES: dict[str, tuple[Any, ...]] = {
    "trainer.device": ("auto", "cpu", "cuda"),
    "trainer.amp": (False, "bf16"),
    "trainer.resume": ("auto", "never"),
    "batching.lr_scaling": ("fixed", "linear"),
    "probes.mode": ("batch_stats", "eval"),
    "optim.name": ("sgd", "adam"),
    "optim.schedule": ("constant", "cosine", "step", "linear"),
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
    "trainer.keep_every",
    "probes.batch_size",
    "probes.jacobian_examples",
    "probes.saturation",
    "optim.lr",
    "dataset.batch_size",
    "batching.classes",
)
NON_NEGATIVE = (
    "trainer.freeze_norm_stats_at",
    "probes.every",
    "probes.hist_every",
    "probes.jacobian",
    "probes.smoothness",
    "probes.hidden_grads",
    "optim.momentum",
    "optim.weight_decay",
    "optim.warmup_steps",
)


def check_seed(seed: object) -> int:
    """``seed`` if it is an integer numpy can seed with (0..2**32-1).

    Raises:
        ConfigError: anything else (negative, too large, a float, a bool, a string).
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= SEED_MAX:
        raise ConfigError(f"seed must be an integer in 0..{SEED_MAX}, got {shown(seed)}.")
    return seed


def validate(cfg: DictConfig) -> None:
    """Check types and ranges of the common knobs; raise :class:`ConfigError` naming the fix."""
    check_run_name(cfg.get("name"))
    check_seed(cfg.get("seed"))
    for section, schema in SCHEMAS.items():
        known = [f.name for f in dataclasses.fields(schema)]
        node = cfg.get(section)
        unknown = [k for k in node if k not in known] if isinstance(node, DictConfig) else []
        if unknown:
            raise ConfigError(unknown_key_message(section, str(unknown[0]), known))
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
    check_jacobian_probe(cfg)
    check_smoothness_probe(cfg)
    check_hidden_grads_probe(cfg)


def check_smoothness_probe(cfg: DictConfig) -> None:
    """``probes.smoothness`` runs at probe steps, at positive step sizes (one process: see
    :func:`~normbench.engine.build.build_run`)."""
    every, smooth = (
        OmegaConf.select(cfg, "probes.every"),
        OmegaConf.select(cfg, "probes.smoothness"),
    )
    if not smooth:
        return
    if not every or smooth % every:
        raise ConfigError(
            f"probes.smoothness={smooth} must be a multiple of probes.every={every} (it runs at "
            "probe steps); set probes.smoothness to a multiple of it, or 0."
        )
    steps = OmegaConf.select(cfg, "probes.smoothness_steps")
    if not steps or any(k <= 0 for k in steps):
        raise ConfigError(
            f"probes.smoothness_steps={list(steps or [])} must be one or more positive multiples "
            "of the learning rate, e.g. probes.smoothness_steps=[0.5,1,2,4]."
        )


def check_model_probe(cfg: DictConfig, key: str, model: str, shown: str, on: str) -> None:
    """``probes.<key>`` runs at probe steps (a multiple of ``probes.every``) and only on
    ``model.name == model`` (``shown``: the config to choose; ``on``: what it reads there)."""
    every, value = OmegaConf.select(cfg, "probes.every"), OmegaConf.select(cfg, f"probes.{key}")
    if not value:
        return
    if OmegaConf.select(cfg, "model.name") != model:
        raise ConfigError(
            f"probes.{key}={value} works on model={shown} ({on}), not "
            f"model={OmegaConf.select(cfg, 'model.name')}; set probes.{key}=0."
        )
    if not every or value % every:
        raise ConfigError(
            f"probes.{key}={value} must be a multiple of probes.every={every} (it runs at probe "
            f"steps); set probes.{key} to a multiple of it, or 0."
        )


def check_jacobian_probe(cfg: DictConfig) -> None:
    """``probes.jacobian`` runs at probe steps, on the MLP's hidden layers."""
    check_model_probe(cfg, "jacobian", "mlp", "mlp_sigmoid", "its hidden layers")


def check_hidden_grads_probe(cfg: DictConfig) -> None:
    """``probes.hidden_grads`` runs at probe steps, on a recurrent model's hidden states."""
    check_model_probe(cfg, "hidden_grads", "lstm", "lstm", "its hidden states")
