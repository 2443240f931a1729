"""``normbench study plan|status|run|report``: a declared study from training to its report.

``run`` trains the grid (one ``normbench train -m``, through Hydra's joblib launcher when
``jobs`` > 1), evaluates every phase (one worker per run directory, see
:mod:`normbench.studies.evaluate`), then writes the report and its claims. Interrupted (Ctrl-C,
SIGTERM, a kill), the same command goes on: finished runs are skipped by ``normbench train``,
finished evaluations by evals.csv, and the report is made from the files alone. A failed run or
evaluation is reported, the study goes on, and the exit status is 1.
"""

from __future__ import annotations

import os
import shlex
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from normbench.engine.signals import sigterm_as_interrupt
from normbench.errors import ConfigError
from normbench.report.collect import Run
from normbench.studies import grid as grids
from normbench.studies.evaluate import (
    RunEvals,
    count,
    jobs_of,
    phase_plan,
    run_evaluations,
    run_grid,
)
from normbench.studies.study import KEPT, Study, Variant


@dataclass
class Selection:
    """A study, its variant, the command line's overrides and options."""

    study: Study
    variant: Variant | None
    overrides: list[str]
    jobs: int = 1
    results: Path | None = None

    @cached_property
    def grid(self) -> grids.Grid:
        """The training grid (composed once: the progress thread must not touch Hydra while a
        multirun holds it)."""
        layers = []
        if self.study.experiment:
            layers.append([f"experiment={self.study.experiment}"])
            params = grids.experiment_params(self.study.experiment)
            layers.append([f"{k}={v}" for k, v in params.items()])
        layers.append([f"{k}={v}" for k, v in self.study.params.items()])
        layers.append(list(self.study.overrides))
        layers.append(list(self.variant.overrides) if self.variant else [])
        layers.append(self.overrides)
        return grids.make_grid(layers)

    @property
    def runs_root(self) -> Path:
        fixed = dict(o.split("=", 1) for o in self.grid.fixed)
        return Path("runs") / fixed.get("name", self.study.name)

    @property
    def out_dir(self) -> Path:
        return self.results or self.study.results_dir(self.variant)

    def command(self) -> str:
        words = ["normbench", "study", "run", self.study.name]
        if self.variant:
            words += ["--variant", self.variant.name]
        if self.jobs > 1:
            words.append(f"jobs={self.jobs}")
        return " ".join([*words, *map(shlex.quote, self.overrides)])


@dataclass
class State:
    """Where a study stands: its runs and evaluations, done and in all."""

    matched: list[tuple[dict[str, str], Run | None]]
    evals_total: int
    evals_done: int
    eval_seconds: list[float]

    @property
    def runs(self) -> list[Run]:
        return [r for _, r in self.matched if r is not None]

    @property
    def complete(self) -> list[Run]:
        return [r for r in self.runs if r.status == "complete"]

    @property
    def finished(self) -> list[Run]:
        """Complete runs and runs that diverged: training them again changes nothing."""
        return [r for r in self.runs if r.status in ("complete", "diverged")]

    @property
    def failed(self) -> list[Run]:
        return [r for r in self.runs if r.status in ("failed", "diverged")]


def state(sel: Selection) -> State:
    matched = grids.match_runs(sel.grid, sel.runs_root)
    runs = [r for _, r in matched if r is not None]
    total, done, seconds = count(phase_plan(sel.study.phases_of(sel.variant), runs))
    return State(matched, total, done, seconds)


def _duration(seconds: float) -> str:
    if seconds != seconds or seconds < 0:  # nan
        return "unknown"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def estimate_seconds(sel: Selection, st: State) -> float | None:
    """Time left, from the wall times of finished runs and evaluations (None: nothing finished)."""
    times = [float(r.summary["wall_time_s"]) for r in st.complete if r.summary.get("wall_time_s")]
    left_runs = len(st.matched) - len(st.finished)
    left_evals = st.evals_total - st.evals_done
    if not times and left_runs:
        return None
    train = left_runs * (sum(times) / len(times)) if times else 0.0
    per_eval = sum(st.eval_seconds) / len(st.eval_seconds) if st.eval_seconds else None
    if per_eval is None and left_evals:
        return None
    evals = left_evals * (per_eval or 0.0)
    # evaluations of runs not trained yet are not counted yet: say so in the plan
    return (train + evals) / max(1, sel.jobs)


def progress_line(sel: Selection, st: State) -> str:
    left = estimate_seconds(sel, st)
    eta = f"ETA {_duration(left)}" if left is not None else "ETA unknown (nothing finished yet)"
    return (
        f"study {sel.study.name}{f' ({sel.variant.name})' if sel.variant else ''}: runs "
        f"{len(st.finished)}/{len(st.matched)} done, evaluations {st.evals_done}/"
        f"{st.evals_total} done (of the runs trained so far), {eta} at jobs={sel.jobs}"
    )


def plan(sel: Selection) -> int:
    """Print the counts of the study and an estimate of its time."""
    st = state(sel)
    g = sel.grid
    print(f"study {sel.study.name}: {sel.study.title}")
    if sel.variant:
        print(f"variant {sel.variant.name}: {sel.variant.about}")
    print(f"training: {len(st.matched)} runs under {sel.runs_root}/ ({len(st.finished)} done)")
    if sel.variant is not None and sel.variant.distributed:
        print("  one run at a time (some under torchrun), the grid of:")
    print("  normbench train -m " + " ".join(map(shlex.quote, g.argv())))
    phases = sel.study.phases_of(sel.variant)
    for item in phases:
        chosen = phase_plan((item,), st.runs)
        total, done, _ = count(chosen)
        per_run = len(jobs_of(RunEvals(None, [item.name], [run_grid(item, None)])))
        each = "per kept step of each selected run" if item.grid.get("step") == KEPT else ""
        grid = " ".join(f"{k}={v}" for k, v in item.grid.items())
        print(
            f"evaluation phase {item.name}: {per_run} {each or 'per selected run'}; {total} on the "
            f"{len(chosen)} runs selected so far ({done} done): {grid}"
        )
        if item.about:
            print(f"  {item.about}")
    if len(st.complete) < len(st.matched) and phases:
        print("  (evaluations are counted on the runs trained so far)")
    print(f"report: {sel.out_dir}/")
    print(progress_line(sel, st))
    return 0


def status(sel: Selection) -> int:
    """Print what is done, and each run that failed or is unfinished."""
    st = state(sel)
    print(progress_line(sel, st))
    for job, run in st.matched:
        if run is None or run.status != "complete":
            what = (
                "not started" if run is None else f"{run.status} at step {run.summary.get('step')}"
            )
            print(
                f"  {what}: {' '.join(f'{k}={v}' for k, v in job.items())}"
                + (f" ({run.path})" if run else "")
            )
    return 0


PROGRESS_EVERY_S = 60.0


@contextmanager
def _progress_every(sel: Selection, seconds: float):
    """While training runs, a study progress line every ``seconds`` when a run has finished."""
    import threading

    stop = threading.Event()

    def report() -> None:
        last = None
        while not stop.wait(seconds):
            try:
                st = state(sel)
            except Exception:  # a run directory being written: try again next time
                continue
            if len(st.finished) != last:
                last = len(st.finished)
                print(progress_line(sel, st), flush=True)

    thread = threading.Thread(target=report, name="study-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)


def train(sel: Selection) -> int:
    """Train the grid's runs not finished yet (one multirun); its exit status."""
    from normbench.cli.command import train_command

    if sel.variant is not None and sel.variant.distributed:
        return train_distributed(sel, sel.variant)
    launcher = []
    if sel.jobs > 1:
        launcher = ["hydra/launcher=parallel"]
        os.environ["NORMBENCH_JOBS"] = str(sel.jobs)
    name = f"name={sel.runs_root.name}"
    with _progress_every(sel, PROGRESS_EVERY_S):
        return train_command(["-m", *sel.grid.argv(), name, *launcher])


def train_distributed(sel: Selection, variant: Variant) -> int:
    """Each unfinished run of the grid in turn: one ``torchrun --nproc_per_node=P`` where the
    variant gives the job P > 1 processes, a plain ``normbench train`` where it gives 1 (a
    multirun cannot run under torchrun). The first signal stops the study, resumable."""
    import subprocess

    code = 0
    name = f"name={sel.runs_root.name}"
    for job, run in grids.match_runs(sel.grid, sel.runs_root):
        if run is not None and run.status == "complete":
            continue
        processes = variant.processes_of(job)
        launch = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
        argv = [sys.executable, *(launch if processes > 1 else []), "-m", "normbench", "train"]
        argv += [*(f"{k}={v}" for k, v in job.items()), name]
        print("study: " + " ".join(map(shlex.quote, argv[1:])), flush=True)
        # torchrun's own default (1 thread per process), set so that it prints no banner about it
        env = {"OMP_NUM_THREADS": "1", **os.environ}
        done = subprocess.run(argv, check=False, env=env)
        if done.returncode < 0 or done.returncode >= 128:  # stopped: the same command resumes
            return 128 + abs(done.returncode) if done.returncode < 0 else done.returncode
        code = max(code, 1 if done.returncode else 0)
    return code


def evaluate(sel: Selection) -> int:
    """Every phase's evaluations of the finished runs; 1 if any failed."""
    st = state(sel)
    plan_ = phase_plan(sel.study.phases_of(sel.variant), st.runs)
    todo = [item for item in plan_ if (counted := count([item]))[1] < counted[0]]
    if not todo:
        return 0
    print(f"study {sel.study.name}: evaluating {len(todo)} runs at jobs={sel.jobs}", flush=True)
    failed = 0
    with sigterm_as_interrupt():
        for outcome in run_evaluations(todo, sel.jobs):
            failed += len(outcome.failed)
            for line in outcome.failed:
                print(f"  failed: {outcome.run_dir} {line}", file=sys.stderr)
            print(
                f"study {sel.study.name}: {outcome.run_dir}: {outcome.done} evaluated, "
                f"{outcome.skipped} already done, {len(outcome.failed)} failed "
                f"({outcome.seconds:.0f} s, pid {outcome.pid})",
                flush=True,
            )
            print(progress_line(sel, state(sel)), flush=True)
    return 1 if failed else 0


def report(sel: Selection) -> int:
    """Write the study's report (README, CSV, PNG, claims.csv) from its runs."""
    from normbench.studies.report import write_study_report

    st = state(sel)
    if not st.runs:
        raise ConfigError(
            f"no runs of study {sel.study.name} under {sel.runs_root}/ yet; run it first: "
            f"{sel.command()}"
        )
    write_study_report(sel, st.runs)
    return 0


def run(sel: Selection) -> int:
    """Train, evaluate and report; the same command resumes an interrupted study."""
    start = time.monotonic()
    print(progress_line(sel, state(sel)), flush=True)
    code = train(sel)
    if code >= 128:  # stopped by a signal: the same command resumes
        return code
    evaluated = evaluate(sel)
    code = max(code, evaluated)
    st = state(sel)
    if st.runs:
        report(sel)
    print(progress_line(sel, st))
    bad = len(st.matched) - len(st.finished)
    diverged = len(st.finished) - len(st.complete)
    if code == 1 and not bad:
        code = evaluated  # the multirun's failures were divergences: outcomes, in the report
    print(
        f"study {sel.study.name}: finished in {_duration(time.monotonic() - start)}"
        + (f"; {diverged} runs diverged (kept in the report as such)" if diverged else "")
        + (f"; {bad} runs not complete" if bad else "")
        + ("; some evaluations failed" if code == 1 and not bad else ""),
        file=sys.stderr if code or bad else sys.stdout,
    )
    return 1 if code or bad else 0
