"""The training loop behind ``normbench train``: SGD by steps, evaluation, probes, checkpoints.

Run directory (see DESIGN.md): metrics.csv, activations.csv, summary.json, TensorBoard event
files, ckpt/last.pt.
metrics.csv has one row per evaluation (every ``trainer.eval_every`` steps, at step 0 and at the
last step): ``step``, ``epoch``, ``train_loss`` (the mean training loss over the steps since the
previous evaluation; nan at step 0), ``val_error``, ``val_loss``, ``lr`` and ``time`` (training
wall time so far, in seconds). What the console shows: :mod:`normbench.engine.progress`.
The same command finds the same run directory again; with ``trainer.resume=auto`` it
continues from the checkpoint, so an interrupted run (Ctrl-C, a killed job) loses nothing.

Under torchrun (:mod:`normbench.engine.distributed`) every process runs this loop on its slice
of each global batch through DistributedDataParallel; rank 0 alone evaluates, probes and
writes the run directory; losses are averaged over the processes before they are logged.
"""

from __future__ import annotations

import logging
import math
import time
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from omegaconf import DictConfig, OmegaConf

from normbench.engine.build import build_run
from normbench.engine.checkpoint import (
    check_resumable,
    keep_model,
    plain_config,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from normbench.engine.distributed import Distributed
from normbench.engine.environment import select_device
from normbench.engine.evaluate import evaluate
from normbench.engine.fastpath import train_step
from normbench.engine.frozen_norms import FrozenNormStats
from normbench.engine.online import variable_batches
from normbench.engine.progress import (
    TrainingLoss,
    check_finite,
    final_line,
    progress_line,
    shown_path,
    start_line,
    val_error_text,
)
from normbench.engine.resume import finished_already, restore
from normbench.engine.run_summary import final_metrics, hparams, num_params, run_summary
from normbench.engine.signals import RunStopped, StopRequest
from normbench.probes.activations import ActivationProbe
from normbench.probes.hidden_grads import HiddenGradProbe
from normbench.probes.record import record_probes
from normbench.probes.timing import PhaseTimer, images_per_s
from normbench.recorder import Recorder

log = logging.getLogger("normbench")


class Trainer:
    """One run: builds everything from the config, then :meth:`fit` trains, evaluates and probes."""

    def __init__(self, cfg: DictConfig, run_dir: Path, dist: Distributed | None = None) -> None:
        self.dist = dist or Distributed()
        device = self.dist.device(select_device(cfg.trainer.device)) if self.dist.enabled else None
        built = build_run(cfg, device=device, world_size=self.dist.world_size)
        self.cfg, self.run_dir = built.cfg, run_dir  # the effective config
        self.per_device, self.device, self.fast = built.per_device, built.device, built.fast
        self.spec, self.data, self.model = built.spec, built.data, built.model
        self.optimizer, self.scheduler = built.optimizer, built.scheduler
        # trainer.* resolved once: the loop reads it every step, and an interpolated value
        # (${nb_step_at:...}) would be parsed again at each read (milliseconds a step)
        self.tcfg = SimpleNamespace(**OmegaConf.to_container(self.cfg.trainer, resolve=True))
        cfg = self.cfg
        # What the training step calls: the model itself, DDP around it, or either compiled
        # (trainer.compile); they share parameters. Evaluation and probes use the model itself.
        self.train_model = self.dist.training_module(self.model, self.fast, self.device)
        shard = (self.dist.rank, self.dist.world_size)
        self.loader = self.data.train_loader(
            cfg.dataset.batch_size, cfg.seed, shard, cfg.batching.classes
        )
        self.online = variable_batches(cfg, self.dist.world_size, self.loader)
        self.frozen_norms = FrozenNormStats(
            self.model, cfg.trainer.freeze_norm_stats_at, cfg.trainer.steps
        )
        probe_x = self.data.probe_inputs(cfg.probes.batch_size)
        self.probe = ActivationProbe(self.model, probe_x, cfg.probes.saturation, cfg.probes.mode)
        self.hidden_probe = HiddenGradProbe.of_run(self.model, self.data, cfg.probes)
        self.timer = PhaseTimer(self.device)
        self.ckpt_path = run_dir / "ckpt" / "last.pt"
        self.step = 0
        self.prior_wall = 0.0
        self.best_val_error = float("inf")
        self.last_eval: dict[str, float] = {}
        self.last_eval_step: int | None = None  # the step of last_eval
        self.loss = TrainingLoss(self.device)
        self.stop = StopRequest()

    # --- state ---------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "world_size": self.dist.world_size,
            "step": self.step,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "loader": self.loader.state_dict(),
            "rng": rng_state(),
            "timer": self.timer.state_dict(),
            "wall": self.prior_wall + self.wall(),
            "best_val_error": self.best_val_error,
            "last_eval": self.last_eval,
            "last_eval_step": self.last_eval_step,
            **self.loss.state_dict(),
            **({"online": self.online.state_dict()} if self.online else {}),
            "config": plain_config(self.cfg),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        check_resumable(state, self.dist.world_size, plain_config(self.cfg), self.run_dir)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.loader.load_state_dict(state["loader"])
        set_rng_state(state["rng"])
        self.timer.load_state_dict(state["timer"])
        self.step, self.prior_wall = state["step"], state["wall"]
        self.best_val_error, self.last_eval = state["best_val_error"], state["last_eval"]
        # checkpoints written before 2026-12-06 do not hold it (the step is then not shown)
        self.last_eval_step = state.get("last_eval_step")
        self.loss.load_state_dict(state)
        if self.online:
            self.online.load_state_dict(state["online"])

    def keep(self) -> None:
        """Keep this step's model (``trainer.keep_every``) for ``normbench eval step=S``."""
        if self.dist.is_main:
            with self.timer.phase("checkpoint"):
                config = plain_config(self.cfg)
                keep_model(self.run_dir, self.step, self.model, self.dist.world_size, config)

    def save(self) -> None:
        """Checkpoint the run; TensorBoard is flushed first, so a kill after this loses no event
        at or before this step (the CSVs are written row by row)."""
        if self.dist.is_main:
            with self.timer.phase("checkpoint"):
                self.recorder.flush()
                save_checkpoint(self.ckpt_path, self.state_dict())
        self.last_save = time.perf_counter()

    def wall(self) -> float:
        """Seconds since this invocation's :meth:`fit` began."""
        return time.perf_counter() - self.t_start

    # --- loop ----------------------------------------------------------------------------
    def fit(self) -> dict[str, Any]:
        """Train to ``trainer.steps`` (or ``trainer.stop_after`` more steps); return the summary.

        Raises:
            RunStopped: SIGINT or SIGTERM stopped the run (checkpointed at a step boundary).
        """
        self.t_start = time.perf_counter()
        self.started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
        resume_step = restore(self)
        self.step_at_start = self.step
        if self.step >= self.tcfg.steps:
            return finished_already(self)
        self.recorder = self._recorder(resume_step)
        self.recorder.summary(run_summary(self, "running"))
        if self.dist.is_main:
            processes = self.dist.world_size if self.dist.enabled else 1
            log.info(
                "%s",
                start_line(self.run_dir, self.spec, self.device, processes, self.dist.backend)
                + f" | {num_params(self)} parameters | data {self.data.source}",
            )
        last = (
            self.tcfg.steps
            if self.tcfg.stop_after is None
            else min(self.tcfg.steps, self.step + self.tcfg.stop_after)
        )
        self.last_save = time.perf_counter()
        if resume_step is None:
            self._evaluate()
            self._probe()
        if not self._stop_agreed():
            self._train_until(last)
        if self.step >= self.tcfg.steps:
            status = "complete"
        else:
            status = "interrupted" if self.stop.requested else "stopped"
        self.save()
        summary = self.finish(status)
        if self.stop.requested:
            if self.dist.is_main:
                log.warning(
                    "stopped at step %d (%s); run the same command to resume",
                    self.step,
                    self.stop.name,
                )
            raise RunStopped(self.stop.signum)
        return summary

    def _recorder(self, resume_step: int | None) -> Any:
        """The run directory's writer on rank 0; a writer of nothing on the other ranks."""
        if self.dist.is_main:
            return Recorder(self.run_dir, self.cfg.logging.tensorboard, resume_step)
        return _NoRecorder()

    def _stop_agreed(self) -> bool:
        """Whether any process was asked to stop; every process then stops after this step
        (one all-reduce per step under torchrun)."""
        if not self.dist.enabled:
            return self.stop.requested
        signum = self.dist.max_int(self.stop.signum or 0)
        if signum and self.stop.signum is None:
            self.stop.signum = signum  # asked on another rank
        return bool(signum)

    def finish(self, status: str) -> dict[str, Any]:
        """Write the final records: hparams first, the summary last (a kill in between leaves a
        summary that is not complete, which the next run of the command completes)."""
        summary = run_summary(self, status)
        if not self.dist.is_main:
            return summary
        if status == "complete":
            self.recorder.hparams(self.step, hparams(self), final_metrics(summary))
            self.recorder.flush()
            for warning in summary["warnings"]:
                log.warning("warning: %s", warning)
        self.recorder.summary(summary)
        self.recorder.close()
        val = val_error_text(self.last_eval.get("val_error"), self.last_eval_step)
        line = final_line(status, self.step, self.tcfg.steps, val, summary["wall_time_s"])
        if line is not None:
            log.info("%s | %s", line, shown_path(self.run_dir))
        return summary

    def _train_until(self, last: int) -> None:
        """Train to step ``last``, or until a stop is requested (read at step boundaries, after
        the step's probe, evaluation and progress line)."""
        model, opt, sched, loader, timer = (
            self.train_model,
            self.optimizer,
            self.scheduler,
            self.loader,
            self.timer,
        )
        cfg, fast, tcfg = self.cfg, self.fast, self.tcfg
        ckpt_seconds = 60.0 * tcfg.ckpt_minutes
        model.train()
        while self.step < last:
            self.frozen_norms.apply(self.step)  # FrozenBN, when asked for (after any eval)
            online = self.online
            with timer.phase("data"):
                x, y = loader.next() if online is None else loader.next(online.size(self.step))
                x = fast.prepare_input(x)
            with timer.phase("train_step"):
                if online is None:
                    loss = train_step(model, x, y, opt, fast)
                else:
                    loss = online.train_step(model, x, y, opt, fast, sched.get_last_lr())
                sched.step()
            self.step += 1
            step = self.step
            if loss is not None:  # None: an online batch skipped (undefined statistics)
                self.loss.add(loss)
            if cfg.probes.every and (step % cfg.probes.every == 0 or step == tcfg.steps):
                self._probe((x, y, sched.get_last_lr()[0]))
            if step % tcfg.eval_every == 0 or step == tcfg.steps:
                self._evaluate()
            if tcfg.keep_every and step % tcfg.keep_every == 0:
                self.keep()
            # the progress line comes after the evaluation, so its val_err is this step's
            if step % tcfg.log_every == 0 or step == last:
                self._log_progress(step)
                self.loss.new_window()
            if self._stop_agreed():
                return
            due = (
                step % tcfg.ckpt_every == 0 or time.perf_counter() - self.last_save >= ckpt_seconds
            )
            if due and step < last:
                self.save()

    def _log_progress(self, step: int) -> None:
        """The progress line, and its numbers as TensorBoard scalars."""
        with self.timer.phase("logging"):
            window, window_n = self.timer.window(), self.loss.window_n
            loss = self.dist.mean(self.loss.window).item() / window_n
            check_finite(loss, step, window_n, self.cfg.norm.name, self.cfg.optim.lr)
            step_ms = 1000 * (window.get("train_step", 0) + window.get("data", 0)) / window_n
            data_ms = 1000 * window.get("data", 0) / window_n
            ips = images_per_s(window, window_n * self.cfg.dataset.batch_size)
            if not self.dist.is_main:
                return
            self.recorder.scalars(
                step,
                {
                    "train/loss": loss,
                    "time/step_ms": step_ms,
                    "time/data_ms": data_ms,
                    "time/images_per_s": ips,
                    "train/lr": self.scheduler.get_last_lr()[0],
                },
            )
            wall = self.wall()
            eta = wall / max(step - self.step_at_start, 1) * (self.tcfg.steps - step)
            line = progress_line(
                step=step,
                steps=self.tcfg.steps,
                loss=loss,
                window_n=window_n,
                val=val_error_text(self.last_eval.get("val_error"), self.last_eval_step),
                step_ms=step_ms,
                data_ms=data_ms,
                images_per_s=ips,
                elapsed_s=self.prior_wall + wall,
                eta_s=eta,
            )
            log.info("%s", line)

    def _evaluate(self) -> None:
        """Validation on rank 0 (the model itself, its running statistics) and its metrics.csv
        row, whose ``train_loss`` is the mean over the steps since the previous evaluation (every
        rank takes part in averaging it)."""
        with self.timer.phase("eval"):
            loss_sum, count = self.dist.mean(self.loss.since_eval), self.loss.since_eval_n
            train_loss = loss_sum.item() / count if count else math.nan
            self.loss.new_since_eval()
            if not self.dist.is_main:
                return
            result = evaluate(
                self.model, self.data.val_batches(self.tcfg.eval_batch_size), self.fast
            )
            self.last_eval, self.last_eval_step = {**result, "train_loss": train_loss}, self.step
            self.best_val_error = min(self.best_val_error, result["val_error"])
            self.recorder.metrics_row(
                {
                    "step": self.step,
                    "epoch": (
                        self.loader.epochs
                        if self.online
                        else self.step / self.loader.steps_per_epoch
                    ),
                    "train_loss": train_loss,
                    **result,
                    "lr": self.scheduler.get_last_lr()[0],
                    "time": self.prior_wall + self.wall(),
                }
            )
            self.recorder.scalars(
                self.step, {"val/error": result["val_error"], "val/loss": result["val_loss"]}
            )

    def _probe(self, batch: tuple[Any, Any, float] | None = None) -> None:
        if not self.dist.is_main:
            return
        with self.timer.phase("probe"):
            args = (self.probe, self.model, self.step, self.cfg.probes, batch, self.hidden_probe)
            record_probes(self.recorder, *args)


def train(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """Train one configuration into ``run_dir``; return its summary.

    SIGINT and SIGTERM are requests from setup to the last write: one arriving while the model
    and data are built is honoured at step 0 (or at the step resumed from).

    Raises:
        RunStopped: a signal stopped the run; it is checkpointed and resumable.
    """
    with StopRequest() as stop:
        dist = Distributed.start(select_device(cfg.trainer.device))
        try:
            trainer = Trainer(cfg, Path(run_dir), dist)
            trainer.stop = stop
            summary = trainer.fit()
            if stop.requested:  # arrived while an already finished run was checked: stop a sweep
                raise RunStopped(stop.signum)
            return summary
        finally:
            dist.close()


class _NoRecorder:
    """The recorder of ranks other than 0: every write is dropped."""

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: None
