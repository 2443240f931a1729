"""One evaluation of one finished run: rebuild it, load its weights, evaluate, make the row.

A run is rebuilt from its saved config (``.hydra/config.yaml``) through
:func:`~normbench.engine.build.build_run` (the one way in), on ``trainer.device`` or the
``device=`` of the command, and its checkpoint's model state is loaded after checking that the
checkpoint belongs to that config. The checkpoint file is only read; each evaluation starts
from a fresh copy of its state (a mode may change the model's statistics or affine
parameters), so evaluations of the same run in any order give the same rows.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from normbench.config import register_resolvers
from normbench.data.folder import FolderData
from normbench.engine.build import BuiltRun, build_run
from normbench.engine.checkpoint import (
    EVAL_FIX,
    config_changes,
    kept_path,
    kept_steps,
    load_checkpoint,
    plain_config,
)
from normbench.engine.environment import git_revision
from normbench.errors import ConfigError, NormbenchError
from normbench.evaluation.data import (
    DataChoice,
    EvalData,
    FolderEvalData,
    load_eval_data,
    shown_value,
)
from normbench.evaluation.kl import measure_kl
from normbench.evaluation.modes import EvalSetup, Knobs, Outcome, Progress, run_mode
from normbench.evaluation.records import KEY
from normbench.norms.stats import UndefinedStatisticsError, bn_layers
from normbench.recorder import read_summary

CONFIG = Path(".hydra") / "config.yaml"
CHECKPOINT = Path("ckpt") / "last.pt"


@dataclass(frozen=True)
class EvalJob:
    """One evaluation asked for: mode, knobs, data and device."""

    mode: str
    knobs: Knobs = field(default_factory=Knobs)
    data: DataChoice = field(default_factory=DataChoice)
    device: str | None = None  #: cpu | cuda | auto; None: the run's trainer.device
    kl: int | None = None  #: source samples of the per-layer KL (kl.csv); None: not measured
    step: int | None = None  #: a model kept by trainer.keep_every; None: the last checkpoint

    def describe(self) -> str:
        """The job as its overrides: ``mode=batch batch_size=8 data=mnist``."""
        parts = [f"mode={self.mode}"]
        parts += [f"{k}={v}" for k, v in vars(self.knobs).items() if v is not None]
        if self.data.name:
            parts.append(f"data={self.data.name}")
        parts += [f"data.{k}={shown_value(v)}" for k, v in self.data.overrides]
        if self.data.corruption != "none":
            parts.append(f"corruption={self.data.corruption} severity={self.data.severity}")
        if self.kl is not None:
            parts.append(f"kl={self.kl}")
        if self.step is not None:
            parts.append(f"step={self.step}")
        return " ".join(parts)


def kept_checkpoint(run_dir: Path, step: int) -> Path:
    """The model ``trainer.keep_every`` kept at ``step`` in ``run_dir``.

    Raises:
        ConfigError: no model was kept at that step (the message lists those that were).
    """
    path = kept_path(run_dir, step)
    if path.is_file():
        return path
    kept = kept_steps(run_dir)
    have = (
        f"it kept steps {', '.join(map(str, kept))}"
        if kept
        else "it kept none (train with trainer.keep_every=K to keep every K-th step)"
    )
    raise ConfigError(f"{run_dir} has no model kept at step={step}; {have}.")


def check_run_dir(run_dir: Path) -> None:
    """Raises NormbenchError unless ``run_dir`` is a run directory with a checkpoint."""
    if not (run_dir / CONFIG).is_file():
        raise NormbenchError(
            f"{run_dir} is not a run directory (no {CONFIG}); give a directory that "
            "`normbench train` wrote (runs/<name>/<overrides>)."
        )
    if not (run_dir / CHECKPOINT).is_file():
        raise NormbenchError(
            f"{run_dir}: no checkpoint ({run_dir / CHECKPOINT}); finish (or resume) the run "
            "with `normbench train` first."
        )


def read_run_config(run_dir: Path) -> DictConfig:
    """The composed config a run was trained with (``.hydra/config.yaml``)."""
    check_run_dir(run_dir)
    register_resolvers()
    try:
        return OmegaConf.load(run_dir / CONFIG)
    except Exception as err:  # noqa: BLE001 - any parse error means the same to the user
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise NormbenchError(f"{run_dir / CONFIG} cannot be read ({first}).") from None


def own_data(cfg: DictConfig, choice: DataChoice) -> bool:
    """Whether ``choice`` names the run's own dataset."""
    return choice.name in (None, cfg.dataset.name)


class LoadedRun:
    """A run rebuilt from its config, holding its checkpoint's model state.

    Args:
        run_dir: the run directory.
        cfg: its config (:func:`read_run_config`).
        device: ``cpu`` | ``cuda`` | ``auto``, or None for the run's ``trainer.device``.
        location: ``root`` / ``num_workers`` of the run's own dataset files.
        step: the model ``trainer.keep_every`` kept at this step; None: the last checkpoint.

    Raises:
        CheckpointError: the checkpoint is empty, corrupt or crafted.
        ConfigError: the checkpoint holds another configuration; a bad device.
        DataError: the run's dataset is missing.
    """

    def __init__(
        self,
        run_dir: Path,
        cfg: DictConfig,
        device: str | None = None,
        location: dict[str, Any] | None = None,
        step: int | None = None,
    ) -> None:
        cfg = OmegaConf.create(OmegaConf.to_container(cfg))
        with open_dict(cfg):
            if device is not None:
                cfg.trainer.device = device
            for key, value in (location or {}).items():
                cfg.dataset[key] = value
        self.run_dir = run_dir
        # a run trained under torchrun is rebuilt with its process count (its effective batch
        # and steps depend on it in per_device.mode=ddp), here in one process
        trained_on = read_summary(run_dir / "summary.json").get("distributed") or {}
        world = int(trained_on.get("world_size", 1))
        self.built: BuiltRun = build_run(cfg, optimizer=False, world_size=world)
        path = run_dir / CHECKPOINT if step is None else kept_checkpoint(run_dir, step)
        checkpoint = load_checkpoint(path, self.built.device, fix=EVAL_FIX)
        changed = config_changes(checkpoint.get("config", {}), plain_config(self.built.cfg))
        if changed:
            raise ConfigError(
                f"{path} holds a checkpoint of a different configuration than "
                f"{run_dir / CONFIG} (changed: {', '.join(changed)}); it cannot be evaluated."
            )
        self.state = checkpoint["model"]
        self.step = int(checkpoint["step"])
        self.built.model.load_state_dict(self.state)
        self.summary = read_summary(run_dir / "summary.json")
        self.bn_count = len(bn_layers(self.built.model))
        self.git = git_revision()
        self._data: dict[DataChoice, EvalData] = {}

    def no_batch_stats(self) -> str:
        """Why modes of statistics do not apply to this model ('' when they do)."""
        dependent = self.summary.get("norm_batch_dependent", self.built.spec.batch_dependent)
        if not dependent:
            return f"norm={self.built.cfg.norm.name} does not normalize with batch statistics"
        if self.bn_count == 0:
            return "the model has no layer with running statistics"
        return ""

    def eval_data(self, choice: DataChoice) -> EvalData:
        """The evaluation split of ``choice`` (loaded once per run)."""
        if choice not in self._data:
            self._data[choice] = load_eval_data(self.built, choice)
        return self._data[choice]

    def train_size(self) -> int:
        data = self.built.data
        return len(data.train_set) if isinstance(data, FolderData) else len(data.train_x)

    def setup(self, data: EvalData, progress: Progress) -> EvalSetup:
        """The model reset to the checkpoint's state, with what the modes need."""
        built = self.built
        built.model.load_state_dict(self.state)
        torch.manual_seed(built.cfg.seed)
        return EvalSetup(
            model=built.model,
            fast=built.fast,
            data=data,
            train_data=built.data,
            train_size=self.train_size(),
            train_batch_size=int(built.cfg.dataset.batch_size),
            eval_batch_size=int(built.cfg.trainer.eval_batch_size),
            seed=int(built.cfg.seed),
            no_batch_stats=self.no_batch_stats(),
            large_scale=isinstance(data, FolderEvalData),
            progress=progress,
        )

    def evaluate(self, job: EvalJob, progress_every_s: float = 10.0) -> dict[str, Any]:
        """Evaluate ``job``; return its evals.csv row (see ``eval_records.COLUMNS``)."""
        return self.measure(job, progress_every_s)[0]

    def measure(
        self, job: EvalJob, progress_every_s: float = 10.0
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """Evaluate ``job``: its evals.csv row and, with ``job.kl``, its kl.csv rows
        (:mod:`normbench.evaluation.kl`; none when the evaluation is undefined)."""
        data = self.eval_data(job.data)
        progress = Progress(f"eval {self.run_dir} mode={job.mode}", progress_every_s)
        start = time.perf_counter()
        setup = self.setup(data, progress)
        outcome = run_mode(job.mode, job.knobs, setup)
        elapsed = time.perf_counter() - start
        layers: list[dict[str, Any]] = []
        if job.kl is not None and outcome.status == "ok":
            try:
                layers = measure_kl(job.mode, outcome, setup, job.kl)
            except UndefinedStatisticsError as err:
                outcome.note = "; ".join(filter(None, [outcome.note, f"kl not measured: {err}"]))
        self.built.model.load_state_dict(self.state)  # leave the model as loaded
        row = self._row(job, data, outcome, elapsed)
        key = {k: row.get(k) for k in KEY}
        common = {"step": self.step, "evaluated_at": row["evaluated_at"]}
        return row, [{**key, **layer, **common} for layer in layers]

    def _row(
        self, job: EvalJob, data: EvalData, outcome: Outcome, elapsed: float
    ) -> dict[str, Any]:
        metrics = outcome.metrics or {}
        return {
            "mode": job.mode,
            **vars(outcome.knobs),
            "data": data.label,
            "corruption": job.data.corruption,
            "severity": job.data.severity,
            "error": metrics.get("val_error"),
            "nll": metrics.get("val_loss"),
            "ece": metrics.get("ece"),
            "status": outcome.status,
            "applied": outcome.applied,
            "note": outcome.note,
            "step": self.step,
            "bn_layers": self.bn_count,
            "num_samples": data.num_samples,
            "device": str(self.built.device),
            "time_s": round(elapsed, 3),
            "evaluated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "requests": job.describe(),
            "git": self.git,
        }
