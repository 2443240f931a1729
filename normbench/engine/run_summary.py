"""What a run records about itself: summary.json's content and TensorBoard's hparams.

The report reads runs through summary.json alone (DESIGN.md: the report is a leaf), so whatever
it needs to know about a run is written here: status, final numbers, the norm and whether it
depends on the batch, images per device, the time split, the environment and the process group.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from normbench.engine.environment import environment
from normbench.probes.timing import images_per_s

if TYPE_CHECKING:
    from normbench.engine.train import Trainer

#: A run whose final accuracy is below CHANCE_MARGIN / classes is flagged as at chance level.
CHANCE_MARGIN = 1.2


def is_at_chance(val_error: float | None, num_classes: int) -> bool:
    """Whether a final validation error is at chance level: accuracy below 1.2 / classes."""
    return val_error is not None and (1.0 - val_error) < CHANCE_MARGIN / num_classes


def num_params(trainer: Trainer) -> int:
    return sum(p.numel() for p in trainer.model.parameters())


def hparams(trainer: Trainer) -> dict[str, Any]:
    """The run's hyperparameters, as TensorBoard's hparams plugin shows them."""
    c, fast = trainer.cfg, trainer.fast
    return {
        "norm": c.norm.name,
        "model": c.model.name,
        "dataset": c.dataset.name,
        "batch_size": c.dataset.batch_size,
        "images_per_device": trainer.per_device.images or c.dataset.batch_size,
        "per_device_mode": trainer.per_device.mode,
        "lr": c.optim.lr,
        "steps": c.trainer.steps,
        "seed": c.seed,
        "amp": fast.precision,
        "channels_last": fast.channels_last,
        "compile": fast.compile,
    }


def run_summary(trainer: Trainer, status: str) -> dict[str, Any]:
    """summary.json of ``trainer``'s run, with ``status`` (running, complete, stopped ...)."""
    t, cfg = trainer, trainer.cfg
    times = t.timer.state_dict()
    wall = t.prior_wall + t.wall()
    shares = {k: v / wall for k, v in times.items()} if wall > 0 else {}
    shares["other"] = max(0.0, 1.0 - sum(shares.values()))
    classes = t.data.num_classes
    at_chance = status == "complete" and is_at_chance(t.last_eval.get("val_error"), classes)
    warnings = (
        [
            f"the final val error {t.last_eval['val_error']:.4f} is at chance level "
            f"({classes} classes: chance is {1 - 1 / classes:.4f}); the run learned nothing "
            f"(too few steps, or optim.lr={cfg.optim.lr} too high or too low for this model and "
            "norm)"
        ]
        if at_chance
        else []
    )
    return {
        "status": status,
        "step": t.step,
        "steps": t.tcfg.steps,
        "name": cfg.name,
        "norm": cfg.norm.name,
        "seed": cfg.seed,
        "per_device": t.per_device.as_dict(),
        "norm_batch_dependent": t.spec.batch_dependent,
        "final": dict(t.last_eval),
        "best_val_error": t.best_val_error,
        "num_classes": classes,
        "at_chance": at_chance,
        "warnings": warnings,
        "wall_time_s": wall,
        "time_s": times,
        "time_share": shares,
        "ms_per_step": {
            k: 1000 * times[k] / t.step for k in ("train_step", "data") if k in times and t.step
        },
        "images_per_s": images_per_s(
            times, t.online.images if t.online else t.step * cfg.dataset.batch_size
        ),
        **({"batching": t.online.as_dict()} if t.online else {}),
        "num_params": num_params(t),
        "run_dir": str(t.run_dir),
        "started_at": t.started_at,
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "environment": {**environment(t.device), **t.fast.as_dict()},
        "distributed": {
            **t.dist.as_dict(),
            "evaluation": "rank 0 (its model and running statistics)",
        },
    }
