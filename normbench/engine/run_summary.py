"""What a run records about itself: summary.json's content and TensorBoard's hparams.

The report reads runs through summary.json alone (DESIGN.md: the report is a leaf), so whatever
it needs to know about a run is written here: status, final numbers, the norm and whether it
depends on the batch, images per device, the time split, the environment and the process group.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
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


#: Overrides that say where or how a run executes, not what it computes: not hyper-parameters.
PLUMBING = (
    "hydra.",
    "name",
    "logging.",
    "dataset.root",
    "dataset.download",
    "trainer.device",
    "trainer.threads",
    "trainer.resume",
    "trainer.stop_after",
    "trainer.ckpt_every",
    "trainer.ckpt_minutes",
    "trainer.log_every",
    "trainer.keep_every",
)
#: Logged for every run: what tells runs apart in any sweep.
IDENTITY = ("norm", "seed")
#: TensorBoard's HPARAMS tab shows this many hyper-parameters at first (the first by name).
SHOWN = 5


def _parse(overrides: list[str]) -> list[Any]:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        return OverridesParser.create().parse_overrides([str(o) for o in overrides])
    except Exception:  # an override Hydra itself accepted; if not, log none of them
        return []


def _is_plumbing(key: str) -> bool:
    return any(key == p or (p.endswith(".") and key.startswith(p)) for p in PLUMBING)


def run_overrides(run_dir: Path) -> dict[str, str]:
    """The keys and values the run's command line set (Hydra's ``.hydra/overrides.yaml``; in a
    multirun, the job's own values of the sweep), plumbing left out; ``{}`` without Hydra."""
    from omegaconf import OmegaConf

    path = run_dir / ".hydra" / "overrides.yaml"
    if not path.is_file():
        return {}
    found = {}
    for o in _parse(list(OmegaConf.load(path))):
        key = o.key_or_group
        if o.is_delete() or _is_plumbing(key):
            continue
        found[key] = o.get_value_element_as_str()
    return found


def sweep_axes(run_dir: Path) -> set[str]:
    """The keys a multirun swept (its ``multirun.yaml``, beside the run directory): those given
    several values on the command line, and the sweeper's ``params`` (an experiment's grid)."""
    from omegaconf import OmegaConf

    path = run_dir.parent / "multirun.yaml"
    if not path.is_file():
        return set()
    hydra = OmegaConf.load(path).get("hydra") or {}
    axes = set((hydra.get("sweeper") or {}).get("params") or {})
    task = list((hydra.get("overrides") or {}).get("task") or [])
    return axes | {o.key_or_group for o in _parse(task) if o.is_sweep_override()}


def hparams(trainer: Trainer) -> dict[str, Any]:
    """The run's hyper-parameters, as TensorBoard's HPARAMS tab shows them: norm and seed, and
    every key the run's command line set (the sweep's axes, ``experiment``, ``trainer.steps``
    ...) with its resolved value. TensorBoard shows the first five by name at first, so where
    there are more, only the sweep's axes and norm and seed are logged. Engine settings (amp,
    channels_last, compile) appear only when the command line set them; summary.json has them
    all."""
    from omegaconf import OmegaConf

    c = trainer.cfg
    values: dict[str, Any] = {"norm": c.norm.name, "seed": c.seed}
    for key, text in run_overrides(Path(trainer.run_dir)).items():
        if key in values:
            continue
        value = OmegaConf.select(c, key, default=None)
        values[key] = value if isinstance(value, (int, float, str, bool)) else text
    axes = sweep_axes(Path(trainer.run_dir))
    if len(values) > SHOWN and axes:
        values = {k: v for k, v in values.items() if k in axes or k in IDENTITY}
    return values


def final_metrics(summary: dict[str, Any]) -> dict[str, float]:
    """The metric columns of TensorBoard's HPARAMS tab: the run's final validation error and
    training loss (the mean since the previous evaluation), and its training images/s."""
    final = summary["final"]
    metrics = {
        "hparam/val_error": final.get("val_error"),
        "hparam/train_loss": final.get("train_loss"),
        "hparam/images_per_s": summary.get("images_per_s"),
    }
    return {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))}


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
