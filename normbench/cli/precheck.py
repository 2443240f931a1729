"""Check ``normbench train``'s overrides before Hydra creates a run directory.

Hydra reports a bad override (an unknown key, an unknown group option) in several lines, with a
hint to append the key with ``+`` that only leads to our own "unknown option" message, and it
creates the run directory before normbench sees the config. :func:`precheck` composes the
config once with Hydra's compose API, turns any error into one line naming the fix, and runs
:func:`normbench.config.validate` on it; a sweep is checked with the first value of each swept
key (each job validates its own values again). It also checks that the run directory can be
written and is not held by another process.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from normbench.config import (
    check_run_name,
    config_dir,
    register_resolvers,
    unknown_key_message,
    validate,
)
from normbench.engine.build import build_norm
from normbench.engine.lock import RunLock
from normbench.errors import ConfigError, NormbenchError

#: Flags after which Hydra prints something instead of running: leave those to Hydra.
INFO_FLAGS = {"--help", "-h", "--hydra-help", "--info", "-i", "--cfg", "-c", "--resolve"}
INFO_FLAGS |= {"--shell-completion", "-sc", "--version", "--config-path", "-cp"}
INFO_FLAGS |= {"--config-name", "-cn", "--config-dir", "-cd", "--experimental-rerun"}
VALUE_FLAGS = {"--package", "-p"}


def command_overrides(argv: list[str]) -> list[str] | None:
    """The overrides of a ``normbench train`` command line, or None when it only asks Hydra
    for information (``--cfg``, ``--help`` …) or points at another config."""
    overrides, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg in INFO_FLAGS or arg.split("=")[0] in INFO_FLAGS:
            return None
        elif arg in VALUE_FLAGS:
            skip = True
        elif not arg.startswith("-"):
            overrides.append(arg)
    return overrides


def is_multirun(argv: list[str]) -> bool:
    """Whether ``normbench train``'s command line asks for a multirun."""
    return any(a in ("-m", "--multirun") for a in argv) or "hydra.mode=MULTIRUN" in argv


def first_of_each_sweep(overrides: list[str]) -> list[str]:
    """The overrides with every swept key (``a=1,2``, ``range(…)``) set to its first value."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    out = []
    for override in OverridesParser.create().parse_overrides(overrides):
        if override.is_sweep_override():
            try:
                first = next(iter(override.sweep_string_iterator()), None)
            except Exception:  # glob(...) needs Hydra's config loader: each job checks it
                first = None
            if first is None:
                continue
            out.append(f"{override.get_key_element()}={first}")
        else:
            out.append(override.input_line)
    return out


def compose_train_config(overrides: list[str], hydra: bool = False) -> DictConfig:
    """The config ``normbench train`` would run with these overrides (no run directory made);
    with ``hydra``, Hydra's own node too, set as the current Hydra config so that its run and
    sweep directories resolve."""
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig

    register_resolvers()
    with initialize_config_dir(str(config_dir()), version_base="1.3", job_name="train"):
        cfg = compose(config_name="train", overrides=overrides, return_hydra_config=hydra)
    if hydra:
        HydraConfig.instance().set_config(cfg)
    return cfg


def precheck(argv: list[str]) -> None:
    """Raise :class:`ConfigError` (one line, naming the fix) if ``argv``'s overrides are bad."""
    from hydra.errors import HydraException

    overrides = command_overrides(argv)
    if overrides is None:
        return
    try:
        plain = first_of_each_sweep(overrides)
        cfg = compose_train_config(plain, hydra=True)
    except (HydraException, OmegaConfBaseException) as err:
        raise ConfigError(_one_line(err, overrides)) from None
    check_run_name(cfg.get("name"))
    validate(cfg)
    build_norm(cfg.norm)  # the norm's own options and ranges
    multirun = is_multirun(argv)
    check_writable(Path(cfg.hydra.sweep.dir if multirun else cfg.hydra.run.dir))
    if not multirun:  # a sweep's jobs take their locks one by one
        check_not_locked(Path(cfg.hydra.run.dir))


#: Below this much free space, a run cannot even write its config and first checkpoint.
MIN_FREE_BYTES = 256 << 10


def check_writable(run_dir: Path) -> None:
    """Raise one message if ``run_dir`` (or the directory it would be made in) cannot be written
    or its disk is full: Hydra writes there before normbench runs, with a traceback on failure."""
    existing = run_dir
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    unwritable = [
        p for p in (existing, existing / ".hydra") if p.is_dir() and not os.access(p, os.W_OK)
    ]
    if unwritable:
        raise NormbenchError(
            f"cannot write to {unwritable[0]}: it is read-only or not writable. Make it writable "
            "(chmod u+w, or remount it read-write) or choose another run directory with "
            "hydra.run.dir=<dir>."
        )
    free = shutil.disk_usage(existing).free
    if free < MIN_FREE_BYTES:
        raise NormbenchError(
            f"cannot write to {run_dir}: the disk is full ({free:,} bytes free). Free space there "
            "or point the runs elsewhere with hydra.run.dir=<dir>."
        )


def check_not_locked(run_dir: Path) -> None:
    """Raise :class:`RunLockedError` if another process holds ``run_dir`` (before Hydra appends
    to that run's train.log)."""
    if (run_dir / ".lock").exists():
        RunLock(run_dir).acquire().release()


def _one_line(err: BaseException, overrides: list[str]) -> str:
    """Hydra's composition error as one line; an unknown key gets our did-you-mean message."""
    text = str(err)
    cause = str(err.__cause__ or "")
    key = re.search(r"Could not override '([^']+)'", text)
    if key and "not in struct" in cause:
        section, _, name = key.group(1).rpartition(".")
        known = _known_keys(section, overrides, key.group(1))
        if section:
            return unknown_key_message(section, name, known)
        return f"{name} is not a top-level option (they are: {', '.join(known)}); `normbench train --cfg job` lists every option."
    lines = [line.strip() for line in (text + "\n" + cause).splitlines()]
    lines = [line for line in lines if line and "HYDRA_FULL_ERROR" not in line]
    message = " ".join(dict.fromkeys(lines))  # drop a cause repeated in the message
    missing = re.search(
        r"Could not find '([^'/]+)/([^']+)'.*?Available options in '[^']+': (.*?) Config", message
    )
    if missing:
        group, option, available = missing.groups()
        return (
            f"{group}={option} is not an option of {group}; choose one of: "
            f"{', '.join(available.split())} (`normbench train --help` lists every group)."
        )
    return message.split(" Config search path:")[0]


def _known_keys(section: str, overrides: list[str], bad_key: str) -> list[str]:
    """Keys of ``section`` in the config composed without the bad override."""
    rest = [o for o in overrides if o.split("=")[0].lstrip("+~") != bad_key]
    try:
        cfg = compose_train_config(first_of_each_sweep(rest))
        node = OmegaConf.select(cfg, section) if section else cfg
    except Exception:  # the other overrides may be bad too; the suggestion is only a help
        return []
    return [str(k) for k in node if k != "hydra"] if isinstance(node, DictConfig) else []
