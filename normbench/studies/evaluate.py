"""A study's evaluation phases: which ``normbench eval`` jobs each finished run gets, and running
them, one worker per run directory.

Why one worker per run directory, through ``joblib.Parallel(backend="loky")``: a run directory
is owned by one process at a time (its lock), and a worker that takes all of a run's
evaluations loads the run once per data/device (``evaluate_run`` caches the loaded model). Loky
(joblib's process pool, already installed with Hydra's joblib launcher) starts each worker as a
fresh interpreter, returns results as they finish, and ends its workers when the parent stops.
With one job, everything runs in this process. Rows are written to ``RUN/evals.csv`` one
evaluation at a time (atomically), and evaluations already there for the run's checkpoint are
skipped, so an interrupted phase resumes where it stopped.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from normbench.report.collect import Run
from normbench.studies.study import KEPT, Phase


@dataclass
class RunEvals:
    """The evaluation jobs one run gets, as ``normbench eval -m`` override lists (one per phase)."""

    run: Run
    phases: list[str]
    grids: list[list[tuple[str, str]]]


@dataclass
class RunOutcome:
    """What one worker did on one run directory."""

    run_dir: str
    done: int
    skipped: int
    failed: list[str]
    seconds: float
    pid: int


def kept_steps_of(run: Run) -> list[int]:
    """The steps whose models the run keeps (``trainer.keep_every`` up to ``trainer.steps``)."""
    trainer = run.config.get("trainer") or {}
    every, steps = trainer.get("keep_every"), trainer.get("steps")
    if not isinstance(every, int) or not isinstance(steps, int) or every <= 0:
        return []
    return list(range(every, steps + 1, every))


def run_grid(phase: Phase, run: Run | None) -> list[tuple[str, str]]:
    """The phase's grid for ``run``: ``step=kept`` (:data:`KEPT`) becomes the steps the run keeps
    (for no run, or a run that keeps none: the last checkpoint)."""
    grid = []
    for key, value in phase.grid.items():
        if key == "step" and str(value) == KEPT:
            steps = kept_steps_of(run) if run is not None else []
            if not steps:
                continue
            value = ",".join(map(str, steps))
        grid.append((key, str(value)))
    return grid


def phase_plan(phases: tuple[Phase, ...], runs: list[Run]) -> list[RunEvals]:
    """For each complete run, the phases that select it (runs no phase selects are left out)."""
    plan = []
    for run in runs:
        if run.status != "complete":
            continue
        chosen = [p for p in phases if p.select(run)]
        if chosen:
            grids = [run_grid(p, run) for p in chosen]
            plan.append(RunEvals(run, [p.name for p in chosen], grids))
    return plan


def expand(grids: list[list[tuple[str, str]]]) -> list:
    """The distinct ``EvalJob`` of some phase grids (``make_jobs``'s own expansion), in order."""
    from normbench.cli.eval import make_jobs

    jobs: list = []
    for grid in grids:
        jobs += [j for j in make_jobs(grid, multirun=True) if j not in jobs]
    return jobs


def jobs_of(item: RunEvals) -> list:
    """The distinct ``EvalJob`` of a run, over its phases."""
    return expand(item.grids)


def count(plan: list[RunEvals]) -> tuple[int, int, list[float]]:
    """(evaluations in all, already in evals.csv, seconds each of those done) over the plan."""
    from normbench.evaluation.records import Answered, read_evals

    total = done = 0
    seconds: list[float] = []
    for item in plan:
        rows = read_evals(item.run.path)
        finished = Answered(rows, item.run.summary.get("step"))
        for job in jobs_of(item):
            total += 1
            done += job in finished
        seconds += [float(r["time_s"]) for r in rows if r.get("time_s") not in (None, "")]
    return total, done, seconds


def evaluate_one_run(run_dir: str, grids: list[list[tuple[str, str]]], threads: int) -> RunOutcome:
    """All the evaluations of one run directory that evals.csv does not hold yet (a worker)."""
    import torch

    from normbench.cli.eval import evaluate_run

    if threads:
        torch.set_num_threads(threads)
    jobs = expand(grids)
    start = time.monotonic()
    results = evaluate_run(Path(run_dir), jobs, many=True, progress_every_s=60.0, skip_done=True)
    failed = [f"{r.job.describe()}: {r.error}" for r in results if r.row is None and not r.skipped]
    return RunOutcome(
        run_dir,
        done=sum(1 for r in results if r.row is not None),
        skipped=sum(1 for r in results if r.skipped),
        failed=failed,
        seconds=time.monotonic() - start,
        pid=os.getpid(),
    )


def run_evaluations(plan: list[RunEvals], jobs: int) -> Iterator[RunOutcome]:
    """Evaluate every run of the plan, ``jobs`` run directories at a time; outcomes as they end."""
    work = [(str(item.run.path), item.grids) for item in plan]
    if jobs <= 1:
        for run_dir, grids in work:
            yield evaluate_one_run(run_dir, grids, 0)
        return
    from joblib import Parallel, delayed

    parallel = Parallel(n_jobs=jobs, backend="loky", return_as="generator_unordered")
    yield from parallel(delayed(evaluate_one_run)(run_dir, grids, 1) for run_dir, grids in work)
