"""``normbench eval RUN_DIR... [key=value ...] [-m]``: evaluate finished runs; one row each.

Arguments are run directories and ``key=value`` overrides (a token naming an existing
directory is a run directory, even with ``=`` in its name). Without ``-m`` each key takes one
value; with ``-m`` a comma-separated list (commas inside ``[...]`` do not split) sweeps over it:
the jobs are the Cartesian product of the lists (``itertools.product``, in the order the keys
were given; Hydra is not involved), run over every RUN_DIR. A knob the job's mode does not
take is dropped from that job in a sweep (and is an error in a single evaluation), and so is
``severity`` for ``corruption=none``; identical jobs run once.

A single evaluation that fails raises its one-line error (the CLI exits 2). With several
evaluations, a failed one is printed and the sweep goes on; at the end a table of the results
and a one-line tally are printed, and the exit status is 1 if any failed.
"""

from __future__ import annotations

import difflib
import itertools
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml

from normbench.cli.values import split_values
from normbench.engine.lock import RunLock
from normbench.errors import ConfigError, NormbenchError
from normbench.evaluation.data import DataChoice, check_corruption
from normbench.evaluation.kl import COLUMNS as KL_COLUMNS
from normbench.evaluation.kl import FILE as KL_FILE
from normbench.evaluation.kl import SOURCE_SAMPLES
from normbench.evaluation.modes import KNOBS, MODES, Knobs, check_mode, parse_knob
from normbench.evaluation.records import Answered, read_evals, write_eval_row, write_rows
from normbench.evaluation.run import EvalJob, LoadedRun, own_data, read_run_config
from normbench.recorder import read_summary

log = logging.getLogger("normbench")

KEYS = ("mode", *KNOBS, "data", "corruption", "severity", "device", "kl", "step", "done")
DEVICES = ("cpu", "cuda", "auto")

HELP = """usage: normbench eval RUN_DIR... [key=value ...] [-m]

Re-evaluate finished runs from their config and checkpoint; each evaluation is a row of
RUN_DIR/evals.csv (the same evaluation again replaces its row).

keys:
  mode=running|precise|batch|adapt|partial|tent   statistics mode (default running)
      running  the running (EMA) statistics, as trained, in batches of batch_size=b
               (default: the run's trainer.eval_batch_size)
      precise  population statistics of samples=k training samples (default: all)
      batch    each evaluation batch's own statistics, batch_size=b (default: training's)
      adapt    AdaBN: population statistics of samples=k evaluation samples (default: all)
      partial  source statistics mixed with each batch's: prior=N (16), batch_size=n (8)
      tent     entropy minimisation of the norm layers' affine parameters: steps (1),
               lr (the paper's, scaled to batch_size), batch_size (the paper's)
  data=NAME            a dataset config (default: the run's own dataset, validation split)
  data.KEY=VALUE       an option of that dataset config (data.root, data.val_split, ...)
  corruption=NAME severity=1..5   a common corruption of the evaluation images
                       (none, or one of docs/corruptions.md's 19)
  device=cpu|cuda|auto (default: the run's trainer.device)
  kl=false|true|K      also write RUN_DIR/kl.csv: per norm layer, the KL divergence between
                       Gaussian fits of its output on K clean training samples and on (up to
                       K of) the evaluation data, under the mode (true: K = 2000)
  step=S               evaluate the model kept at step S (trained with trainer.keep_every)
                       instead of the last checkpoint
  done=redo|skip       skip: leave out evaluations evals.csv already holds for this checkpoint
                       (a study resumes without redoing them); redo (default): evaluate again
  -m                   sweep over comma-separated values: mode=running,precise batch_size=1,8

example:
  normbench eval runs/bn_fig1/norm=batch -m mode=running,precise,batch batch_size=8,60
"""


@dataclass
class Result:
    """What became of one job on one run: its row, or the error that stopped it (or that it
    was skipped: ``done=skip`` and evals.csv already answers it)."""

    run_dir: Path
    job: EvalJob
    row: dict[str, Any] | None = None
    error: str = ""
    kl: list[dict[str, Any]] = field(default_factory=list)
    skipped: bool = False


def parse_argv(argv: list[str]) -> tuple[list[Path], list[tuple[str, str]], bool]:
    """Run directories, ``(key, value)`` overrides in order, and whether ``-m`` was given.

    Raises:
        ConfigError: an unknown or repeated key.
    """
    runs: list[Path] = []
    overrides: list[tuple[str, str]] = []
    multirun = False
    for token in argv:
        if token in ("-m", "--multirun"):
            multirun = True
        elif "=" in token and not Path(token).is_dir():
            key, value = token.split("=", 1)
            if key not in KEYS and not (key.startswith("data.") and len(key) > 5):
                close = difflib.get_close_matches(key, KEYS, n=1)
                hint = f"did you mean {close[0]}? " if close else ""
                raise ConfigError(
                    f"{key} is not an option of normbench eval; {hint}the options are "
                    f"{', '.join(KEYS)} and data.<key>."
                )
            if any(k == key for k, _ in overrides):
                raise ConfigError(f"{key} is given twice; give it once (with -m: {key}=a,b).")
            overrides.append((key, value))
        else:
            runs.append(Path(token))
    return runs, overrides, multirun


def _typed(text: str) -> Any:
    """A ``data.<key>`` value as YAML (lists as tuples, so that a choice is hashable)."""
    try:
        value = yaml.safe_load(text) if text else ""
    except yaml.YAMLError:
        value = text
    return tuple(value) if isinstance(value, list) else value


def make_job(values: dict[str, str], sweep: bool) -> EvalJob:
    """One job from one value per key.

    Raises:
        ConfigError: an unknown mode or device, a knob out of range or not taken by the mode
            (outside a sweep), a bad severity or an unavailable corruption.
    """
    mode = values.get("mode", "running")
    check_mode(mode)
    knobs: dict[str, Any] = {}
    for name in KNOBS:
        if name not in values:
            continue
        value = parse_knob(name, values[name])
        if name in MODES[mode]:
            knobs[name] = value
        elif not sweep:
            takes = ", ".join(MODES[mode]) or "no knobs"
            raise ConfigError(f"mode={mode} does not take {name} (it takes {takes}).")
    severity = None
    if "severity" in values:
        text = values["severity"]
        if not text.isdigit() or not 1 <= int(text) <= 5:
            raise ConfigError(f"severity={text} is out of range: severity is an integer in 1..5.")
        severity = int(text)
    corruption = values.get("corruption", "none")
    if sweep and corruption == "none":
        severity = None  # clean data in a sweep over corruptions: severity does not apply
    check_corruption(corruption, severity)
    kl = parse_kl(values.get("kl", "false"))
    device = values.get("device")
    if device is not None and device not in DEVICES:
        raise ConfigError(f"device={device} is not one of {', '.join(DEVICES)}.")
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device=cuda but CUDA is not available here; use device=cpu or auto.")
    data = DataChoice(
        name=values.get("data") or None,
        overrides=tuple((k[5:], _typed(v)) for k, v in values.items() if k.startswith("data.")),
        corruption=corruption,
        severity=severity,
    )
    return EvalJob(mode, Knobs(**knobs), data, device, kl, parse_step(values.get("step")))


def parse_step(text: str | None) -> int | None:
    """``step=S``: a kept model's step (an integer >= 0), or None (the last checkpoint).

    Raises:
        ConfigError: anything else.
    """
    if text is None or text.strip().lower() in ("", "last", "null"):
        return None
    if not text.strip().isdigit():
        raise ConfigError(f"step={text} is not valid: step is a training step S >= 0 or last.")
    return int(text)


def parse_kl(text: str) -> int | None:
    """``kl=false|true|K``: the source samples of the per-layer KL, or None (not measured).

    Raises:
        ConfigError: anything else.
    """
    lowered = text.strip().lower()
    if lowered in ("false", "no", "0", ""):
        return None
    if lowered in ("true", "yes"):
        return SOURCE_SAMPLES
    if lowered.isdigit():
        return int(lowered)
    raise ConfigError(
        f"kl={text} is not valid: kl is true, false or a number of source samples K >= 1."
    )


def make_jobs(overrides: list[tuple[str, str]], multirun: bool) -> list[EvalJob]:
    """The jobs of the overrides: one, or with ``multirun`` the product of the value lists."""
    lists = []
    for key, value in overrides:
        values = split_values(value)
        if len(values) > 1 and not multirun:
            raise ConfigError(f"{key}={value} holds several values; add -m to sweep over them.")
        lists.append([(key, v) for v in values])
    jobs: list[EvalJob] = []
    for combination in itertools.product(*lists):
        job = make_job(dict(combination), multirun)
        if job not in jobs:
            jobs.append(job)
    return jobs


def _line(result: Result) -> str:
    head = f"{result.run_dir} {result.job.describe()}"
    row = result.row
    if result.skipped:
        return f"{head}: skipped (already in evals.csv; done=redo evaluates it again)"
    if row is None:
        return f"{head}: failed: {result.error}"
    if row["status"] != "ok":
        return f"{head}: {row['status']}: {row['note']}"
    flag = "" if row["applied"] else " (mode not applied)"
    kl = [r["kl_mean"] for r in result.kl if r["kl_mean"] is not None]
    shown = f", kl {sum(kl) / len(kl):.4g} over {len(kl)} layers" if kl else ""
    return (
        f"{head}: error {row['error']:.4f}, nll {row['nll']:.4f}, ece {row['ece']:.4f}{flag}"
        f"{shown} ({row['time_s']:.1f} s)"
    )


def evaluate_run(
    run_dir: Path,
    jobs: list[EvalJob],
    many: bool,
    progress_every_s: float = 10.0,
    skip_done: bool = False,
) -> list[Result]:
    """Run ``jobs`` on one run directory, holding its lock; write each row to evals.csv.

    Raises:
        NormbenchError: when not ``many``, the first failure.
    """
    results: list[Result] = []
    try:
        cfg = read_run_config(run_dir)
        with RunLock(run_dir):
            runs: dict[Any, LoadedRun | Exception] = {}
            step = read_summary(run_dir / "summary.json").get("step")
            finished = Answered(read_evals(run_dir) if skip_done else [], step)
            for job in jobs:
                if job in finished:
                    results.append(Result(run_dir, job, skipped=True))
                    print(_line(results[-1]), file=sys.stderr)
                    continue
                location = job.data.location() if own_data(cfg, job.data) else {}
                key = (job.device, tuple(sorted(location.items())), job.step)
                try:
                    if key not in runs:
                        try:
                            runs[key] = LoadedRun(run_dir, cfg, job.device, location, job.step)
                        except NormbenchError as err:
                            runs[key] = err
                    loaded = runs[key]
                    if isinstance(loaded, Exception):
                        raise loaded
                    row, layers = loaded.measure(job, progress_every_s)
                    write_eval_row(run_dir, row)
                    if layers:
                        write_rows(run_dir, KL_FILE, KL_COLUMNS, layers)
                    results.append(Result(run_dir, job, row, kl=layers))
                except NormbenchError as err:
                    if not many:
                        raise
                    results.append(Result(run_dir, job, error=str(err)))
                except Exception as err:  # a bug: keep the traceback, go on with the sweep
                    if not many:
                        raise
                    log.exception("eval %s %s failed", run_dir, job.describe())
                    results.append(Result(run_dir, job, error=f"{type(err).__name__}: {err}"))
                print(_line(results[-1]), file=sys.stdout if results[-1].row else sys.stderr)
    except NormbenchError as err:  # the directory, its config or its lock
        if not many:
            raise
        failed = [Result(run_dir, job, error=str(err)) for job in jobs[len(results) :]]
        for result in failed:
            print(_line(result), file=sys.stderr)
        results += failed
    return results


def table(results: list[Result]) -> str:
    """The results as a plain-text table (one line per evaluation)."""
    columns = ("mode", "samples", "batch_size", "prior", "steps", "lr", "data", "error", "nll")
    columns += ("ece", "status", "applied")
    lines = [("run", *columns, "note")]
    for r in results:
        status = "skipped" if r.skipped else "failed"
        row = r.row or {"mode": r.job.mode, "status": status, "note": r.error}
        cells = [str(r.run_dir)]
        for c in columns:
            value = row.get(c)
            cells.append(
                f"{value:.4g}"
                if isinstance(value, float)
                else ("" if value is None else str(value))
            )
        lines.append((*cells, str(row.get("note", ""))))
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]) - 1)]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=False)) + "  " + line[-1]
        for line in lines
    )


def tally(results: list[Result]) -> tuple[str, bool]:
    """The one-line tally, and whether any evaluation failed."""
    counts: dict[str, int] = {"ok": 0, "undefined": 0, "failed": 0}
    for r in results:
        status = "skipped" if r.skipped else r.row["status"] if r.row else "failed"
        counts[status] = counts.get(status, 0) + 1
    parts = ", ".join(f"{n} {status}" for status, n in counts.items())
    return f"eval: {len(results)} evaluations: {parts}", counts["failed"] > 0


def main(argv: list[str], progress_every_s: float = 10.0) -> int:
    """``normbench eval``; returns the exit status (errors of a single evaluation raise).

    Raises:
        NormbenchError: a bad argument, or the failure of a single evaluation.
    """
    if any(a in ("-h", "--help") for a in argv):
        print(HELP)
        return 0
    runs, overrides, multirun = parse_argv(argv)
    if not runs:
        raise ConfigError(
            "give at least one run directory: normbench eval RUN_DIR... [key=value ...]"
        )
    done = dict(overrides).get("done", "redo")
    if done not in ("redo", "skip"):
        raise ConfigError(f"done={done} is not one of redo, skip.")
    jobs = make_jobs([(k, v) for k, v in overrides if k != "done"], multirun)
    many = multirun or len(runs) * len(jobs) > 1
    results: list[Result] = []
    for run_dir in runs:
        results += evaluate_run(run_dir, jobs, many, progress_every_s, skip_done=done == "skip")
    if not many:
        return 0
    print(table(results))
    line, failed = tally(results)
    print(line, file=sys.stderr)
    return 1 if failed else 0
