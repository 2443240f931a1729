"""The training loop behind ``normbench train``: SGD by steps, evaluation, probes, checkpoints.

Run directory (see DESIGN.md): metrics.csv, activations.csv, summary.json, tb/, ckpt/last.pt.
The same command finds the same run directory again; with ``trainer.resume=auto`` it
continues from the checkpoint, so an interrupted run (Ctrl-C, a killed job) loses nothing.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from normbench.config import config_dir, register_resolvers, validate
from normbench.data.datasets import load_dataset
from normbench.engine.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from normbench.engine.environment import environment, seed_everything, select_device
from normbench.engine.evaluate import evaluate
from normbench.engine.fastpath import FastPath, train_step
from normbench.engine.optim import build_optimizer, build_scheduler
from normbench.engine.per_device import apply_per_device
from normbench.errors import ConfigError, DivergedError, NormbenchError
from normbench.logging import Recorder
from normbench.models import build_model
from normbench.norms import build_norm_spec
from normbench.probes.activations import ActivationProbe
from normbench.probes.timing import PhaseTimer, images_per_s

log = logging.getLogger("normbench")

# Keys that may differ between an interrupted run and its resumption: where and how fast it
# runs, not what it computes (trainer.amp changes the arithmetic, so it may not change).
RESUMABLE_CHANGES = (
    "trainer.resume",
    "trainer.device",
    "trainer.threads",
    "trainer.stop_after",
    "trainer.channels_last",
    "trainer.compile",
    "dataset.root",
    "dataset.num_workers",
    "logging",
)


def hydra_main(argv: list[str]) -> int:
    """Run ``normbench train`` with Hydra on ``argv`` (overrides, -m, --cfg, --help ...)."""
    import hydra

    register_resolvers()
    sys.argv = ["normbench train", *argv]
    main = hydra.main(config_path=str(config_dir()), config_name="train", version_base="1.3")(
        hydra_task
    )
    main()
    return 0


def hydra_task(cfg: DictConfig) -> dict[str, Any] | None:
    """One Hydra job. A user error ends a single run with its message alone (exit 2); in a
    multirun, a failed run is recorded as failed and the sweep goes on."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    try:
        return train(cfg, run_dir)
    except NormbenchError as err:
        log.error("error: %s", err)
        _mark_failed(run_dir, err)
        if multirun:
            log.error("run %s failed; the sweep goes on", run_dir)
            return None
        raise SystemExit(2) from None
    except Exception as err:
        if not multirun:
            raise
        log.exception("run %s failed; the sweep goes on", run_dir)
        _mark_failed(run_dir, err)
        return None


def _mark_failed(run_dir: Path, err: BaseException) -> None:
    from normbench.logging import write_json_atomic

    write_json_atomic(
        run_dir / "summary.json", {"status": "failed", "error": f"{type(err).__name__}: {err}"}
    )


def _plain(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config without Hydra's own node, as plain containers."""
    container = OmegaConf.to_container(cfg, resolve=True)
    container.pop("hydra", None)
    return container


def _config_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Dotted keys whose value differs between two plain configs (ignoring resumable keys)."""
    flat_a, flat_b = _flatten(old), _flatten(new)
    keys = sorted(set(flat_a) | set(flat_b))
    return [
        k
        for k in keys
        if flat_a.get(k) != flat_b.get(k)
        and not any(k == p or k.startswith(p + ".") for p in RESUMABLE_CHANGES)
    ]


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict):
        out: dict[str, Any] = {}
        for key, value in tree.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: tree}


class Trainer:
    """One run: builds everything from the config, then :meth:`fit` trains, evaluates and probes."""

    def __init__(self, cfg: DictConfig, run_dir: Path) -> None:
        validate(cfg)
        self.per_device = apply_per_device(cfg)
        self.cfg, self.run_dir = cfg, run_dir
        self.tcfg = cfg.trainer
        self.device = select_device(self.tcfg.device)
        self.fast = FastPath.from_config(self.tcfg, self.device)
        seed_everything(cfg.seed, self.tcfg.deterministic, self.tcfg.threads)
        self.spec = build_norm_spec(cfg.norm, images_per_device=self.per_device.images)
        self.data = load_dataset(
            cfg.dataset,
            self.device,
            standardize=cfg.dataset.standardize or self.spec.standardize_input,
        )
        self.model = build_model(
            cfg.model, self.spec, self.data.num_classes, self.data.in_shape
        ).to(self.device)
        # The compiled module (trainer.compile) or the model itself; they share parameters.
        self.train_model = self.fast.prepare_model(self.model)
        self.optimizer = build_optimizer(cfg.optim, self.model)
        self.scheduler = build_scheduler(cfg.optim, self.optimizer, self.tcfg.steps)
        self.loader = self.data.train_loader(cfg.dataset.batch_size, cfg.seed)
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

    # --- state ---------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
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
            "config": _plain(self.cfg),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        changed = _config_changes(state["config"], _plain(self.cfg))
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

    def save(self) -> None:
        with self.timer.phase("checkpoint"):
            save_checkpoint(self.ckpt_path, self.state_dict())

    def _wall(self) -> float:
        return time.perf_counter() - self.t_start

    # --- loop ----------------------------------------------------------------------------
    def fit(self) -> dict[str, Any]:
        """Train to ``trainer.steps`` (or ``trainer.stop_after`` more steps); return the summary."""
        self.t_start = time.perf_counter()
        self.started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
        resume_step = None
        if self.tcfg.resume == "auto" and self.ckpt_path.exists():
            self.load_state_dict(load_checkpoint(self.ckpt_path, self.device))
            resume_step = self.step
            log.info("resuming %s from step %d", self.run_dir, self.step)
        self.step_at_start = self.step
        self.recorder = Recorder(self.run_dir, self.cfg.logging.tensorboard, resume_step)
        if self.step >= self.tcfg.steps:
            log.info(
                "%s is already complete (%d steps); trainer.resume=never trains it again",
                self.run_dir,
                self.step,
            )
            self.recorder.close()
            return self._summary("complete")
        self.recorder.summary(self._summary("running"))
        log.info(
            "run dir %s | %s on %s | %d parameters | data %s",
            self.run_dir,
            self.spec,
            self.device,
            self._num_params(),
            self.data.source,
        )
        if self.step == 0:
            self._evaluate()
            self._probe()
        status = "complete"
        last = (
            self.tcfg.steps
            if self.tcfg.stop_after is None
            else min(self.tcfg.steps, self.step + self.tcfg.stop_after)
        )
        try:
            self._train_until(last)
            if last < self.tcfg.steps:
                status = "stopped"
        except KeyboardInterrupt:
            status = "interrupted"
            log.warning("interrupted at step %d; run the same command again to resume", self.step)
        self.save()
        summary = self._summary(status)
        self.recorder.summary(summary)
        if status == "complete":
            self.recorder.hparams(
                self._hparams(), {"hparam/val_error": summary["final"]["val_error"]}
            )
        self.recorder.close()
        if status == "interrupted":
            raise KeyboardInterrupt
        return summary

    def _train_until(self, last: int) -> None:
        model, opt, sched, loader, timer = (
            self.train_model,
            self.optimizer,
            self.scheduler,
            self.loader,
            self.timer,
        )
        cfg, fast = self.cfg, self.fast
        window_loss = torch.zeros((), device=self.device)
        window_n = 0
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
            window_loss += detached
            self.loss_sum += detached
            window_n += 1
            self.loss_count += 1
            if cfg.probes.every and (step % cfg.probes.every == 0 or step == self.tcfg.steps):
                self._probe()
            if step % self.tcfg.eval_every == 0 or step == self.tcfg.steps:
                self._evaluate()
            # the progress line comes after the evaluation, so its val_err is this step's
            if step % self.tcfg.log_every == 0 or step == last:
                self._log_progress(step, window_loss, window_n)
                window_loss = torch.zeros((), device=self.device)
                window_n = 0
            if step % self.tcfg.ckpt_every == 0 and step < last:
                self.save()

    def _log_progress(self, step: int, window_loss: torch.Tensor, window_n: int) -> None:
        with self.timer.phase("logging"):
            window = self.timer.window()
            loss = window_loss.item() / window_n
            if not math.isfinite(loss):
                raise DivergedError(
                    f"the training loss became {loss} between steps {step - window_n} and {step}: "
                    f"the run diverged (norm={self.cfg.norm.name}, optim.lr={self.cfg.optim.lr}). "
                    "Lower optim.lr, or choose another norm; the run is marked failed."
                )
            step_ms = 1000 * (window.get("train_step", 0) + window.get("data", 0)) / window_n
            data_ms = 1000 * window.get("data", 0) / window_n
            ips = images_per_s(window, window_n * self.cfg.dataset.batch_size)
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
        with self.timer.phase("eval"):
            result = evaluate(
                self.model, self.data.val_batches(self.tcfg.eval_batch_size), self.fast
            )
            train_loss = (
                (self.loss_sum.item() / self.loss_count) if self.loss_count else float("nan")
            )
            self.loss_sum.zero_()
            self.loss_count = 0
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
        return {
            "status": status,
            "step": self.step,
            "steps": self.tcfg.steps,
            "name": self.cfg.name,
            "norm": self.cfg.norm.name,
            "seed": self.cfg.seed,
            "per_device": self.per_device.as_dict(),
            "final": dict(self.last_eval),
            "best_val_error": self.best_val_error,
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
        }


def train(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """Train one configuration into ``run_dir``; return its summary."""
    return Trainer(cfg, Path(run_dir)).fit()


def _hms(seconds: float) -> str:
    seconds = int(round(seconds))
    return (
        f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
        if seconds >= 3600
        else f"{seconds // 60}:{seconds % 60:02d}"
    )
