"""What a run prints: a progress line every ``trainer.log_every`` steps, one line at its end.

The progress line (rank 0, after the step's evaluation if one is due)::

    step 200/50000 (  0%) | loss(last 100) 0.4321 | val_err 89.98% @0 | 1.23 ms/step (data 0.05)
    | 48000 img/s | 0:05 elapsed, ETA 20:00

- ``loss(last N)``: the mean training loss over the N steps since the previous progress line
  (over every process's batch under torchrun);
- ``val_err X% @S``: the latest validation error and the step S it was measured at (an
  evaluation every ``trainer.eval_every`` steps: it can be older than the line's step).

The run's last line, once it is complete (under ``trainer.stop_after``, ``stopped at step k/n
(trainer.stop_after; the same command goes on)`` in place of ``done``)::

    done: val_err 12.34% @50000 | 812.3 s | runs/bn_fig1/norm=batch,seed=0

(final validation error and its step, training wall time over every attempt, run directory).

metrics.csv's ``train_loss`` averages another window: the steps since the previous evaluation
(:class:`TrainingLoss` keeps both sums).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from normbench.errors import DivergedError


class TrainingLoss:
    """The training loss summed on the device (no host sync per step) over two windows: since
    the previous evaluation (metrics.csv's ``train_loss``) and since the previous progress line
    (the line's ``loss(last N)``). Their state is part of the checkpoint."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.since_eval = torch.zeros((), device=device)
        self.since_eval_n = 0
        self.window = torch.zeros((), device=device)
        self.window_n = 0

    def add(self, loss: torch.Tensor) -> None:
        """Count one step's loss in both windows."""
        detached = loss.detach()
        self.window += detached
        self.since_eval += detached
        self.window_n += 1
        self.since_eval_n += 1

    def new_window(self) -> None:
        """Start the progress line's window anew."""
        self.window = torch.zeros((), device=self.device)
        self.window_n = 0

    def new_since_eval(self) -> None:
        """Start the evaluation's window anew."""
        self.since_eval.zero_()
        self.since_eval_n = 0

    def state_dict(self) -> dict[str, Any]:
        return {
            "loss_sum": self.since_eval,
            "loss_count": self.since_eval_n,
            "window_loss": self.window,
            "window_n": self.window_n,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.since_eval = state["loss_sum"].to(self.device)
        self.since_eval_n = state["loss_count"]
        # checkpoints written before 2026-11-29 have no progress-line window
        self.window = state.get("window_loss", torch.zeros(())).to(self.device)
        self.window_n = state.get("window_n", 0)


def start_line(run_dir: Path, spec: object, device: object, processes: int, backend: str) -> str:
    """The run's first line: where it writes, its norm, device and processes."""
    group = f" x {processes} processes ({backend})" if processes > 1 else ""
    return f"run dir {run_dir} | {spec} on {device}{group}"


def check_finite(loss: float, step: int, steps_in_window: int, norm: str, lr: float) -> None:
    """Stop a run whose training loss is no longer a number.

    Raises:
        DivergedError: naming the step range and the fix.
    """
    if not math.isfinite(loss):
        raise DivergedError(
            f"the training loss became {loss} between steps {step - steps_in_window} and {step}: "
            f"the run diverged (norm={norm}, optim.lr={lr}). "
            "Lower optim.lr, or choose another norm; the run is marked failed."
        )


def val_error_text(val_error: float | None, val_step: int | None) -> str:
    """``89.98% @0``: a validation error and the step of its evaluation (``-`` for none)."""
    if val_error is None:
        return "-"
    return f"{100 * val_error:.2f}%" + (f" @{val_step}" if val_step is not None else "")


def progress_line(
    *,
    step: int,
    steps: int,
    loss: float,
    window_n: int,
    val: str,
    step_ms: float,
    data_ms: float,
    images_per_s: float,
    elapsed_s: float,
    eta_s: float,
) -> str:
    """The progress line (see the module's docstring); ``val`` from :func:`val_error_text`."""
    return (
        f"step {step}/{steps} ({100 * step / steps:3.0f}%) | loss(last {window_n}) {loss:.4f} | "
        f"val_err {val} | {step_ms:.2f} ms/step (data {data_ms:.2f}) | {images_per_s:.0f} img/s"
        f" | {hms(elapsed_s)} elapsed, ETA {hms(eta_s)}"
    )


def final_line(status: str, step: int, steps: int, val: str, wall_s: float) -> str | None:
    """The start of a run's last line (the run directory follows): ``done`` or, for a run
    stopped by ``trainer.stop_after``, where it stopped; then its final validation error and
    training wall time. None for other ends (an interrupted run says why it stopped)."""
    if status == "complete":
        head = "done"
    elif status == "stopped":
        head = f"stopped at step {step}/{steps} (trainer.stop_after; the same command goes on)"
    else:
        return None
    return f"{head}: val_err {val} | {wall_s:.1f} s"


def shown_path(path: Path) -> Path:
    """``path`` relative to the working directory when inside it, else as it is."""
    try:
        return path.resolve().relative_to(Path.cwd().resolve())
    except ValueError:
        return path


def hms(seconds: float) -> str:
    """``m:ss``, or ``h:mm:ss`` from an hour on."""
    seconds = int(round(seconds))
    return (
        f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
        if seconds >= 3600
        else f"{seconds // 60}:{seconds % 60:02d}"
    )
