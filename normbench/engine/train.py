"""The training loop behind ``normbench train``: SGD by steps, evaluation, probes, checkpoints.

Run directory (see DESIGN.md): metrics.csv, activations.csv, summary.json, tb/, ckpt/last.pt.
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
from typing import Any

import torch
from omegaconf import DictConfig

from normbench.engine.build import build_run
from normbench.engine.checkpoint import (
    config_changes,
    load_checkpoint,
    plain_config,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from normbench.engine.distributed import Distributed
from normbench.engine.environment import environment, select_device
from normbench.engine.evaluate import evaluate
from normbench.engine.fastpath import train_step
from normbench.engine.signals import RunStopped, StopRequest
from normbench.errors import ConfigError, DivergedError
from normbench.probes.activations import ActivationProbe
from normbench.probes.timing import PhaseTimer, images_per_s
from normbench.recorder import Recorder, read_summary

log = logging.getLogger("normbench")

#: A run whose final accuracy is below CHANCE_MARGIN / classes is flagged as at chance level.
CHANCE_MARGIN = 1.2


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
        self.tcfg = self.cfg.trainer
        cfg = self.cfg
        # What the training step calls: the model itself, DDP around it, or either compiled
        # (trainer.compile); they share parameters. Evaluation and probes use the model itself.
        self.train_model = self._training_module()
        shard = (self.dist.rank, self.dist.world_size)
        self.loader = self.data.train_loader(cfg.dataset.batch_size, cfg.seed, shard)
        probe_x = self.data.probe_inputs(cfg.probes.batch_size)
        self.probe = ActivationProbe(self.model, probe_x, cfg.probes.saturation, cfg.probes.mode)
        self.timer = PhaseTimer(self.device)
        self.ckpt_path = run_dir / "ckpt" / "last.pt"
        self.step = 0
        self.prior_wall = 0.0
        self.best_val_error = float("inf")
        self.last_eval: dict[str, float] = {}
        self.loss_sum = torch.zeros((), device=self.device)  # since the last evaluation
        self.loss_count = 0
        self.window_loss = torch.zeros((), device=self.device)  # since the last progress line
        self.window_n = 0
        self.stop = StopRequest()

    def _training_module(self) -> torch.nn.Module:
        if not self.dist.enabled:
            return self.fast.prepare_model(self.model)
        from dataclasses import replace

        from torch.nn.parallel import DistributedDataParallel

        replace(self.fast, compile=False).prepare_model(self.model)  # channels_last, in place
        ids = [self.device.index] if self.device.type == "cuda" else None
        wrapped = DistributedDataParallel(self.model, device_ids=ids)
        return torch.compile(wrapped) if self.fast.compile else wrapped

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
            "wall": self.prior_wall + self._wall(),
            "best_val_error": self.best_val_error,
            "last_eval": self.last_eval,
            "loss_sum": self.loss_sum,
            "loss_count": self.loss_count,
            "window_loss": self.window_loss,
            "window_n": self.window_n,
            "config": plain_config(self.cfg),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        saved_world = int(state.get("world_size", 1))
        if saved_world != self.dist.world_size:
            raise ConfigError(
                f"{self.run_dir} holds a checkpoint of a run on {saved_world} process(es); this run "
                f"has {self.dist.world_size}. Resume it with the same count ("
                + (
                    "without torchrun"
                    if saved_world == 1
                    else f"torchrun --nproc_per_node={saved_world}"
                )
                + "), or start it over with trainer.resume=never."
            )
        changed = config_changes(state["config"], plain_config(self.cfg))
        if changed:
            raise ConfigError(
                f"{self.run_dir} holds a checkpoint of a different configuration (changed: "
                f"{', '.join(changed)}). Start it over with trainer.resume=never, or choose another "
                "run directory with hydra.run.dir=<dir>."
            )
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.loader.load_state_dict(state["loader"])
        set_rng_state(state["rng"])
        self.timer.load_state_dict(state["timer"])
        self.step, self.prior_wall = state["step"], state["wall"]
        self.best_val_error, self.last_eval = state["best_val_error"], state["last_eval"]
        self.loss_sum, self.loss_count = state["loss_sum"].to(self.device), state["loss_count"]
        # checkpoints written before 2026-11-29 have no progress-line window
        window_loss = state.get("window_loss", torch.zeros(()))
        self.window_loss, self.window_n = window_loss.to(self.device), state.get("window_n", 0)

    def save(self) -> None:
        """Checkpoint the run; TensorBoard is flushed first, so a kill after this loses no event
        at or before this step (the CSVs are written row by row)."""
        if self.dist.is_main:
            with self.timer.phase("checkpoint"):
                self.recorder.flush()
                save_checkpoint(self.ckpt_path, self.state_dict())
        self.last_save = time.perf_counter()

    def _wall(self) -> float:
        return time.perf_counter() - self.t_start

    # --- loop ----------------------------------------------------------------------------
    def fit(self) -> dict[str, Any]:
        """Train to ``trainer.steps`` (or ``trainer.stop_after`` more steps); return the summary.

        Raises:
            RunStopped: SIGINT or SIGTERM stopped the run (checkpointed at a step boundary).
        """
        self.t_start = time.perf_counter()
        self.started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
        resume_step = self._restore()
        self.step_at_start = self.step
        if self.step >= self.tcfg.steps:
            return self._finished_already()
        self.recorder = self._recorder(resume_step)
        self.recorder.summary(self._summary("running"))
        if self.dist.is_main:
            log.info(
                "run dir %s | %s on %s%s | %d parameters | data %s",
                self.run_dir,
                self.spec,
                self.device,
                f" x {self.dist.world_size} processes ({self.dist.backend})"
                if self.dist.enabled
                else "",
                self._num_params(),
                self.data.source,
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
        summary = self._finish(status)
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

    def _mean_over_ranks(self, total: torch.Tensor) -> torch.Tensor:
        """A per-process loss sum averaged over the processes (the global batch's)."""
        if not self.dist.enabled:
            return total
        import torch.distributed

        total = total.detach().clone()
        torch.distributed.all_reduce(total)
        return total / self.dist.world_size

    def _restore(self) -> int | None:
        """Load the checkpoint (``trainer.resume=auto``) or start over; say which. Returns the
        step resumed from, or None for a start from step 0. Under torchrun, rank 0 decides and
        the other ranks load the same checkpoint."""
        if not self.dist.enabled:
            return self._restore_main()
        resumed = self._restore_main() if self.dist.is_main else None
        self.dist.barrier()  # rank 0 has read (or removed) the checkpoint
        resumed = self.dist.broadcast_object(resumed)
        if resumed is not None and not self.dist.is_main:
            self.load_state_dict(load_checkpoint(self.ckpt_path, self.device))
        return resumed

    def _restore_main(self) -> int | None:
        if self.tcfg.resume == "never" and self.ckpt_path.exists():
            # First the checkpoint: a kill while the old files are cleared then starts over again.
            self.ckpt_path.unlink()
            log.info("trainer.resume=never: starting %s over from step 0", self.run_dir)
            return None
        if not self.ckpt_path.exists():
            earlier = (self.run_dir / "metrics.csv").exists()
            log.info(
                "no checkpoint in %s: starting from step 0%s",
                self.run_dir,
                " (an earlier attempt stopped before its first checkpoint)" if earlier else "",
            )
            return None
        saved = datetime.fromtimestamp(self.ckpt_path.stat().st_mtime).strftime("%Y-%m-%d %H:%M:%S")
        self.load_state_dict(load_checkpoint(self.ckpt_path, self.device))
        log.info(
            "resuming %s from its checkpoint at step %d (saved %s)", self.run_dir, self.step, saved
        )
        return self.step

    def _finished_already(self) -> dict[str, Any]:
        """The checkpoint is at the last step. A complete summary is left alone; otherwise the
        run was stopped between its final checkpoint and its summary: complete it now."""
        previous = read_summary(self.run_dir / "summary.json")
        if not self.dist.is_main:
            return previous
        if previous.get("status") == "complete":
            log.info(
                "%s is already complete (%d steps); trainer.resume=never trains it again",
                self.run_dir,
                self.step,
            )
            return previous
        self.recorder = Recorder(self.run_dir, self.cfg.logging.tensorboard, self.step)
        log.info(
            "%s: training had finished (step %d) but its summary was not written; completing it",
            self.run_dir,
            self.step,
        )
        return self._finish("complete")

    def _finish(self, status: str) -> dict[str, Any]:
        """Write the final records: hparams first, the summary last (a kill in between leaves a
        summary that is not complete, which the next run of the command completes)."""
        summary = self._summary(status)
        if not self.dist.is_main:
            return summary
        if status == "complete":
            self.recorder.hparams(
                self.step, self._hparams(), {"hparam/val_error": summary["final"]["val_error"]}
            )
            self.recorder.flush()
            for warning in summary["warnings"]:
                log.warning("warning: %s", warning)
        self.recorder.summary(summary)
        self.recorder.close()
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
            with timer.phase("data"):
                x, y = loader.next()
                x = fast.prepare_input(x)
            with timer.phase("train_step"):
                loss = train_step(model, x, y, opt, fast)
                sched.step()
            self.step += 1
            step = self.step
            detached = loss.detach()
            self.window_loss += detached
            self.loss_sum += detached
            self.window_n += 1
            self.loss_count += 1
            if cfg.probes.every and (step % cfg.probes.every == 0 or step == tcfg.steps):
                self._probe()
            if step % tcfg.eval_every == 0 or step == tcfg.steps:
                self._evaluate()
            # the progress line comes after the evaluation, so its val_err is this step's
            if step % tcfg.log_every == 0 or step == last:
                self._log_progress(step, self.window_loss, self.window_n)
                self.window_loss = torch.zeros((), device=self.device)
                self.window_n = 0
            if self._stop_agreed():
                return
            due = (
                step % tcfg.ckpt_every == 0 or time.perf_counter() - self.last_save >= ckpt_seconds
            )
            if due and step < last:
                self.save()

    def _log_progress(self, step: int, window_loss: torch.Tensor, window_n: int) -> None:
        with self.timer.phase("logging"):
            window = self.timer.window()
            loss = self._mean_over_ranks(window_loss).item() / window_n
            if not math.isfinite(loss):
                raise DivergedError(
                    f"the training loss became {loss} between steps {step - window_n} and {step}: "
                    f"the run diverged (norm={self.cfg.norm.name}, optim.lr={self.cfg.optim.lr}). "
                    "Lower optim.lr, or choose another norm; the run is marked failed."
                )
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
            wall = self._wall()
            eta = wall / max(step - self.step_at_start, 1) * (self.tcfg.steps - step)
            val = self.last_eval.get("val_error")
            log.info(
                "step %d/%d (%3.0f%%) | loss %.4f | val_err %s | %.2f ms/step (data %.2f) | %.0f img/s | "
                "%s elapsed, ETA %s",
                step,
                self.tcfg.steps,
                100 * step / self.tcfg.steps,
                loss,
                f"{100 * val:.2f}%" if val is not None else "-",
                step_ms,
                data_ms,
                ips,
                _hms(self.prior_wall + wall),
                _hms(eta),
            )

    def _evaluate(self) -> None:
        """Validation on rank 0 (the model itself, its running statistics); every rank takes
        part in averaging the training loss."""
        with self.timer.phase("eval"):
            loss_sum = self._mean_over_ranks(self.loss_sum)
            train_loss = (loss_sum.item() / self.loss_count) if self.loss_count else float("nan")
            self.loss_sum.zero_()
            self.loss_count = 0
            if not self.dist.is_main:
                return
            result = evaluate(
                self.model, self.data.val_batches(self.tcfg.eval_batch_size), self.fast
            )
            self.last_eval = result
            self.best_val_error = min(self.best_val_error, result["val_error"])
            self.recorder.metrics_row(
                {
                    "step": self.step,
                    "epoch": self.step / self.loader.steps_per_epoch,
                    "train_loss": train_loss,
                    **result,
                    "lr": self.scheduler.get_last_lr()[0],
                    "time": self.prior_wall + self._wall(),
                }
            )
            self.recorder.scalars(
                self.step, {"val/error": result["val_error"], "val/loss": result["val_loss"]}
            )

    def _probe(self) -> None:
        if not self.dist.is_main:
            return
        with self.timer.phase("probe"):
            captured = self.probe.capture()
            self.recorder.activation_rows(self.step, self.probe.summarize(captured))
            hist_every = self.cfg.probes.hist_every
            if hist_every and self.step % hist_every == 0:
                self.recorder.histograms(
                    self.step, {f"act_hist/{k}": v for k, v in captured.items()}
                )
                self.recorder.flush()

    # --- summary -------------------------------------------------------------------------
    def _num_params(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def _hparams(self) -> dict[str, Any]:
        c = self.cfg
        return {
            "norm": c.norm.name,
            "model": c.model.name,
            "dataset": c.dataset.name,
            "batch_size": c.dataset.batch_size,
            "images_per_device": self.per_device.images or c.dataset.batch_size,
            "per_device_mode": self.per_device.mode,
            "lr": c.optim.lr,
            "steps": c.trainer.steps,
            "seed": c.seed,
            "amp": self.fast.precision,
            "channels_last": self.fast.channels_last,
            "compile": self.fast.compile,
        }

    def _summary(self, status: str) -> dict[str, Any]:
        times = self.timer.state_dict()
        wall = self.prior_wall + self._wall()
        shares = {k: v / wall for k, v in times.items()} if wall > 0 else {}
        shares["other"] = max(0.0, 1.0 - sum(shares.values()))
        at_chance = status == "complete" and is_at_chance(
            self.last_eval.get("val_error"), self.data.num_classes
        )
        warnings = (
            [
                f"the final val error {self.last_eval['val_error']:.4f} is at chance level "
                f"({self.data.num_classes} classes: chance is {1 - 1 / self.data.num_classes:.4f}); "
                f"the run learned nothing (too few steps, or optim.lr={self.cfg.optim.lr} too high or too "
                "low for this model and norm)"
            ]
            if at_chance
            else []
        )
        return {
            "status": status,
            "step": self.step,
            "steps": self.tcfg.steps,
            "name": self.cfg.name,
            "norm": self.cfg.norm.name,
            "seed": self.cfg.seed,
            "per_device": self.per_device.as_dict(),
            "norm_batch_dependent": self.spec.batch_dependent,
            "final": dict(self.last_eval),
            "best_val_error": self.best_val_error,
            "num_classes": self.data.num_classes,
            "at_chance": at_chance,
            "warnings": warnings,
            "wall_time_s": wall,
            "time_s": times,
            "time_share": shares,
            "ms_per_step": {
                k: 1000 * times[k] / self.step
                for k in ("train_step", "data")
                if k in times and self.step
            },
            "images_per_s": images_per_s(times, self.step * self.cfg.dataset.batch_size),
            "num_params": self._num_params(),
            "run_dir": str(self.run_dir),
            "started_at": self.started_at,
            "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "environment": {**environment(self.device), **self.fast.as_dict()},
            "distributed": {
                **self.dist.as_dict(),
                "evaluation": "rank 0 (its model and running statistics)",
            },
        }


def is_at_chance(val_error: float | None, num_classes: int) -> bool:
    """Whether a final validation error is at chance level: accuracy below 1.2 / classes."""
    return val_error is not None and (1.0 - val_error) < CHANCE_MARGIN / num_classes


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


def _hms(seconds: float) -> str:
    seconds = int(round(seconds))
    return (
        f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
        if seconds >= 3600
        else f"{seconds // 60}:{seconds % 60:02d}"
    )


class _NoRecorder:
    """The recorder of ranks other than 0: every write is dropped."""

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: None
