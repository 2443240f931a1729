"""The Recorder: every number a run produces goes through here.

- ``metrics.csv``: one row per evaluation; ``activations.csv``: one row per layer per probe;
  ``params.csv``: one row per parameter tensor per probe (``probes.params``); ``jacobian.csv``:
  one row per layer map per Jacobian probe (``probes.jacobian``); ``smoothness.csv`` and
  ``shift.csv``: one row per step size and per layer at each smoothness probe
  (``probes.smoothness``); rows are appended and flushed as they come, so an interrupted run
  loses nothing;
- ``summary.json``: final numbers, status and environment, replaced atomically;
- TensorBoard scalars, histograms and hparams: event files in the run directory itself, so that
  TensorBoard's run name is the run directory's (``bn_fig1/norm=batch,seed=0``).

Opened for a run that resumes from its checkpoint at step k, the Recorder drops what a previous
attempt logged after k from the CSVs and from TensorBoard, so that every (tag, step) is recorded
exactly once; opened for a fresh start, it removes every earlier file first.
"""

from __future__ import annotations

import csv
import json
import math
import threading
from pathlib import Path
from typing import Any

import torch

from normbench.files import DISK_ERRNOS, disk_error, write_atomic
from normbench.tensorboard_files import (
    adopt_legacy_events,
    compact_event_files,
    remove_event_files,
)


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` as strict JSON (NaN and infinities as null) to ``path`` via a temporary
    file and an atomic rename."""
    clean = _finite(data)
    write_atomic(path, lambda f: json.dump(clean, f, indent=2, default=str, allow_nan=False))


def _finite(value: Any) -> Any:
    """``value`` with every non-finite float replaced by None (JSON has no NaN or Infinity)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def read_summary(path: Path) -> dict[str, Any]:
    """A run's summary.json, or ``{}`` when it is missing or unreadable (cut short by a kill)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def tag_layer(name: str) -> str:
    """A probed layer's name in TensorBoard tags: the module name without the ``.act`` of the
    MLP's activation modules (``hidden.0.act`` -> ``hidden.0``: ``act/hidden.0/unit_p15``, not
    ``act/hidden.0.act/unit_p15``). The CSVs keep the module name."""
    return name.removesuffix(".act")


class CsvLog:
    """An append-only CSV file whose columns are fixed by its first row."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.columns: list[str] | None = None
        if path.exists() and path.stat().st_size > 0:
            with path.open(newline="") as f:
                self.columns = next(csv.reader(f), None)

    def append(self, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        try:
            if self.columns is None:
                self.columns = list(rows[0])
                with self.path.open("w", newline="") as f:
                    csv.writer(f).writerow(self.columns)
            with self.path.open("a", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=self.columns, extrasaction="ignore")
                writer.writerows(rows)
        except OSError as err:
            raise disk_error(self.path, err) from None

    def truncate_after(self, step: int) -> None:
        """Drop rows logged after ``step`` (when resuming from a checkpoint at ``step``)."""
        if self.columns is None:
            return
        with self.path.open(newline="") as f:
            rows = [r for r in csv.DictReader(f) if _step(r) <= step]

        def write(f: Any) -> None:
            writer = csv.DictWriter(f, fieldnames=self.columns)
            writer.writeheader()
            writer.writerows(rows)

        write_atomic(self.path, write)


def _step(row: dict[str, str]) -> float:
    """A row's step; a row cut short by a kill sorts after every checkpoint."""
    if None in row.values() or None in row:
        return float("inf")
    try:
        return float(row["step"])
    except (TypeError, ValueError):
        return float("inf")


def _quiet_writer_thread_disk_errors() -> None:
    """TensorBoard writes from a background thread; on a full disk that thread would print a
    traceback, then the next flush in the main thread raises the same error, which the CLI turns
    into one message. Keep the thread quiet about such errors (others are printed as before)."""
    previous = threading.excepthook
    if getattr(previous, "normbench", False):
        return

    def hook(args: threading.ExceptHookArgs) -> None:
        if isinstance(args.exc_value, OSError) and args.exc_value.errno in DISK_ERRNOS:
            return
        previous(args)

    hook.normbench = True  # type: ignore[attr-defined]
    threading.excepthook = hook


class Recorder:
    """Writes one run's metrics, activation statistics, summary and TensorBoard events."""

    def __init__(
        self, run_dir: Path, tensorboard: bool = True, resume_step: int | None = None
    ) -> None:
        """Open the run's files: continue them after ``resume_step``, or start them over (None)."""
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.metrics = CsvLog(self.run_dir / "metrics.csv")
        self.activations = CsvLog(self.run_dir / "activations.csv")
        self.params = CsvLog(self.run_dir / "params.csv")
        self.jacobian = CsvLog(self.run_dir / "jacobian.csv")
        self.smoothness = CsvLog(self.run_dir / "smoothness.csv")
        self.shift = CsvLog(self.run_dir / "shift.csv")
        self.hidden_grads = CsvLog(self.run_dir / "hidden_grads.csv")
        logs = (
            self.metrics,
            self.activations,
            self.params,
            self.jacobian,
            self.smoothness,
            self.shift,
            self.hidden_grads,
        )
        if resume_step is None:
            for log in logs:
                log.path.unlink(missing_ok=True)
                log.columns = None
            remove_event_files(self.run_dir)
        else:
            for log in logs:
                log.truncate_after(resume_step)
            adopt_legacy_events(self.run_dir)
            compact_event_files(self.run_dir, resume_step)
        self.writer = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.run_dir))
            _quiet_writer_thread_disk_errors()

    def scalars(self, step: int, values: dict[str, float]) -> None:
        if self.writer:
            for key, value in values.items():
                self.writer.add_scalar(key, value, step)

    def histograms(self, step: int, values: dict[str, torch.Tensor]) -> None:
        if self.writer:
            for key, value in values.items():
                self.writer.add_histogram(key, value.float().cpu(), step)

    def metrics_row(self, row: dict[str, Any]) -> None:
        self.metrics.append([row])

    def activation_rows(self, step: int, rows: list[dict[str, Any]]) -> None:
        self.activations.append([{"step": step, **r} for r in rows])
        self.scalars(
            step,
            {
                f"act/{tag_layer(r['layer'])}/{k}": r[k]
                for r in rows
                for k in ("unit_p15", "unit_p50", "unit_p85", "saturated")
            },
        )

    def parameter_rows(self, step: int, rows: list[dict[str, Any]]) -> None:
        """params.csv rows, and each parameter's norm and gradient norm as scalars."""
        self.params.append([{"step": step, **r} for r in rows])
        self.scalars(step, {f"param_norm/{r['param']}": r["norm"] for r in rows})
        self.scalars(
            step,
            {
                f"grad_norm/{r['param']}": r["grad_norm"]
                for r in rows
                if math.isfinite(r["grad_norm"])
            },
        )

    def jacobian_rows(self, step: int, rows: list[dict[str, Any]]) -> None:
        """jacobian.csv rows, and each map's median singular value and |ln σ| as scalars."""
        self.jacobian.append([{"step": step, **r} for r in rows])
        self.scalars(
            step,
            {f"jacobian/{r['map']}/{k}": r[k] for r in rows for k in ("p50", "log_dist")},
        )

    def smoothness_rows(
        self, step: int, rows: list[dict[str, Any]], shifts: list[dict[str, Any]]
    ) -> None:
        """smoothness.csv and shift.csv rows; the gradient change and loss at each step size,
        and each layer's shift, as scalars."""
        self.smoothness.append([{"step": step, **r} for r in rows])
        self.shift.append([{"step": step, **r} for r in shifts])
        scalars = {}
        for r in rows:
            scalars[f"smoothness/grad_change/x{r['multiple']:g}"] = r["grad_change"]
            scalars[f"smoothness/loss_change/x{r['multiple']:g}"] = r["loss"] - r["loss0"]
        for r in shifts:
            scalars[f"shift/{tag_layer(r['layer'])}/mean"] = r["shift_mean"]
            scalars[f"shift/{tag_layer(r['layer'])}/scale"] = r["shift_scale"]
            scalars[f"shift/{tag_layer(r['layer'])}/shape"] = r["shift_shape"]
        self.scalars(step, scalars)

    def hidden_grad_rows(self, step: int, rows: list[dict[str, Any]]) -> None:
        """hidden_grads.csv rows; ‖∂L/∂h_t‖ at the first and last step t of each layer as scalars."""
        self.hidden_grads.append([{"step": step, **r} for r in rows])
        last = {}
        for r in rows:
            if r["t"] == 1:
                last[f"hidden_grad/layer{r['layer']}/first"] = r["grad_norm"]
            last[f"hidden_grad/layer{r['layer']}/last"] = r["grad_norm"]
        self.scalars(step, last)

    def hparams(self, step: int, hparams: dict[str, Any], metrics: dict[str, float]) -> None:
        """Record the run's hyper-parameters and final metrics (at ``step``) in TensorBoard's
        HPARAMS tab."""
        if not self.writer:
            return
        from torch.utils.tensorboard.summary import hparams as hparams_summary

        clean = {
            k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in hparams.items()
        }
        exp, ssi, sei = hparams_summary(clean, metrics)
        for summary in (exp, ssi, sei):
            self.writer.file_writer.add_summary(summary, step)
        for key, value in metrics.items():
            self.writer.add_scalar(key, value, step)

    def summary(self, data: dict[str, Any]) -> None:
        write_json_atomic(self.run_dir / "summary.json", data)

    def flush(self) -> None:
        if self.writer:
            self.writer.flush()

    def close(self) -> None:
        if self.writer:
            self.writer.close()
