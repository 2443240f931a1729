"""Checkpoints: everything needed to continue a run exactly where it stopped.

A checkpoint holds tensors and plain containers only (dict, list, tuple, str, int, float, bool,
None), so it is read back with ``torch.load(weights_only=True)``: a crafted file cannot run code
when a run resumes. Writes go to a temporary file that is renamed over the old checkpoint, so a
crash or a full disk mid-save leaves the previous checkpoint intact and no temporary file behind.
A checkpoint also holds its run's resolved config: :func:`config_changes` lists what differs
from the config of the command that would resume it.
"""

from __future__ import annotations

import pickle
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from normbench.errors import ConfigError, NormbenchError
from normbench.files import write_atomic


class CheckpointError(NormbenchError):
    """A checkpoint cannot be read (truncated, corrupt, or holding more than plain data)."""


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Save ``state`` to ``path`` atomically (a crash mid-save leaves the old checkpoint).

    Raises:
        NormbenchError: the directory is not writable or the disk is full (message names the fix).
    """
    write_atomic(path, lambda f: torch.save(state, f), binary=True)


def kept_path(run_dir: Path, step: int) -> Path:
    """Where ``trainer.keep_every`` keeps the model of ``step``: ``ckpt/step_00000500.pt``."""
    return Path(run_dir) / "ckpt" / f"step_{step:08d}.pt"


def keep_model(
    run_dir: Path, step: int, model: torch.nn.Module, world_size: int, config: dict
) -> None:
    """Keep the model of ``step`` (``trainer.keep_every``) for ``normbench eval step=S``: the
    model, its step and config, no optimizer state (a resumed run writes it again, the same)."""
    state = {"world_size": world_size, "step": step, "model": model.state_dict(), "config": config}
    save_checkpoint(kept_path(run_dir, step), state)


def kept_steps(run_dir: Path) -> list[int]:
    """The steps whose models ``trainer.keep_every`` kept in ``run_dir``, ascending."""
    steps = []
    for path in (Path(run_dir) / "ckpt").glob("step_*.pt"):
        number = path.stem.removeprefix("step_")
        if number.isdigit():
            steps.append(int(number))
    return sorted(steps)


#: What to do about an unreadable checkpoint, for a run that is resumed.
RESUME_FIX = (
    "start the run over with trainer.resume=never (the old checkpoint is replaced), "
    "or move {path} away"
)
#: ... and for a finished run that is evaluated (``normbench eval``).
EVAL_FIX = (
    "the run cannot be evaluated from it: train it again with its command and "
    "trainer.resume=never, or move {path} away"
)


def load_checkpoint(path: Path, device: torch.device, fix: str = RESUME_FIX) -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` (tensors and plain data only).

    Raises:
        CheckpointError: the file is empty, truncated, corrupt, or holds other objects.
    """
    fix = fix.format(path=path)
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path} is empty (a save was cut off); {fix}.")
    try:
        with torch.serialization.safe_globals(_numpy_array_globals()):
            state = torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        if "weights_only" in str(err) or "Unsupported global" in str(err):
            raise CheckpointError(
                f"{path} was refused: it holds Python objects other than tensors and plain data "
                f"({_refused_global(str(err))}), and loading it could run code, so it was not loaded. "
                f"{fix[0].upper() + fix[1:]}."
            ) from None
        raise CheckpointError(f"{path} is corrupt ({first}); {fix}.") from None
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"{path} is truncated or corrupt ({first}); {fix}.") from None
    if not isinstance(state, dict) or "step" not in state:
        raise CheckpointError(f"{path} is not a normbench checkpoint; {fix}.")
    return state


def _numpy_array_globals() -> list[Any]:
    """What a plain numpy array needs to unpickle (checkpoints written before 2026-11-29 hold the
    numpy generator's state as an array): array reconstruction only, no other callable."""
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy 1
        from numpy.core.multiarray import _reconstruct
    return [_reconstruct, np.ndarray, np.dtype, type(np.dtype(np.uint32))]


def _refused_global(message: str) -> str:
    """The global torch refused, from its ``weights_only`` error text."""
    found = re.search(r"GLOBAL ([\w.]+)", message)
    return f"it refers to {found.group(1)}" if found else "an unsupported global"


def rng_state() -> dict[str, Any]:
    """The state of every random number generator a run draws from, as tensors and plain data."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore generators saved by :func:`rng_state`."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    if isinstance(n, tuple):  # a checkpoint written before 2026-11-29
        np.random.set_state(n)
    else:
        np.random.set_state(
            (
                n["kind"],
                n["keys"].numpy().astype(np.uint32),
                n["pos"],
                n["has_gauss"],
                n["cached_gaussian"],
            )
        )
    torch.set_rng_state(state["torch"].cpu())
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


# Keys that may differ between an interrupted run and its resumption: where and how fast it
# runs, not what it computes (trainer.amp changes the arithmetic, so it may not change).
RESUMABLE_CHANGES = (
    "trainer.resume",
    "trainer.device",
    "trainer.threads",
    "trainer.stop_after",
    "trainer.keep_every",
    "trainer.ckpt_every",
    "trainer.ckpt_minutes",
    "trainer.channels_last",
    "trainer.compile",
    "dataset.root",
    "dataset.num_workers",
    "logging",
)


# Keys added after checkpoints were written, with the value that computes what their absence
# did: a checkpoint without the key resumes when the key has that value.
ADDED_KEYS: dict[str, Any] = {
    "optim.warmup_steps": 0,
    "probes.hidden_grads": 0,
    "norm.log_scale": None,
    "norm.max_v_norm": None,
}


def plain_config(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config without Hydra's own node, as plain containers."""
    container = OmegaConf.to_container(cfg, resolve=True)
    container.pop("hydra", None)
    return container


def config_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Dotted keys whose value differs between two plain configs (ignoring resumable keys, and
    keys of :data:`ADDED_KEYS` absent from the old config that hold their neutral value)."""
    flat_a, flat_b = _flatten(old), _flatten(new)
    for key, neutral in ADDED_KEYS.items():
        if key not in flat_a and key in flat_b and flat_b[key] == neutral:
            flat_a[key] = neutral
    keys = sorted(set(flat_a) | set(flat_b))
    return [
        k
        for k in keys
        if flat_a.get(k) != flat_b.get(k)
        and not any(k == p or k.startswith(p + ".") for p in RESUMABLE_CHANGES)
    ]


def check_resumable(
    state: dict[str, Any], world_size: int, config: dict[str, Any], run_dir: Path
) -> None:
    """Refuse to resume ``run_dir`` from ``state`` on another process count or another config.

    Raises:
        ConfigError: naming the difference and how to resume or start over.
    """
    saved_world = int(state.get("world_size", 1))
    if saved_world != world_size:
        how = "without torchrun" if saved_world == 1 else f"torchrun --nproc_per_node={saved_world}"
        raise ConfigError(
            f"{run_dir} holds a checkpoint of a run on {saved_world} process(es); this run "
            f"has {world_size}. Resume it with the same count ({how}), or start it over with "
            "trainer.resume=never."
        )
    changed = config_changes(state["config"], config)
    if changed:
        raise ConfigError(
            f"{run_dir} holds a checkpoint of a different configuration (changed: "
            f"{', '.join(changed)}). Start it over with trainer.resume=never, or choose another "
            "run directory with hydra.run.dir=<dir>."
        )


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict):
        out: dict[str, Any] = {}
        for key, value in tree.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: tree}
