"""A study declared in this one file runs end to end through ``normbench study run``: two runs,
two evaluation phases, one claim. Killed in the evaluation phase, the same command goes on and
ends with the CSVs of an uninterrupted study; with jobs=2, two processes share the work."""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest

from normbench.report.verdicts import Claim, estimate, judge_difference
from normbench.studies import register
from normbench.studies.study import Phase, ReportInput, ReportOutput, Study, uses_batch_statistics
from tests.conftest import study_cli

ROOT = Path(__file__).resolve().parents[1]
SLOW_EVAL = os.environ.get("TINY_STUDY_SAMPLES", "2048")


def tiny_report(given: ReportInput) -> ReportOutput:
    """errors.csv: every evaluation of every run; one claim: BN's precise vs running error."""
    rows = []
    for run in sorted(given.runs, key=lambda r: (r.norm, r.seed)):
        path = run.path / "evals.csv"
        if not path.is_file():
            continue
        with path.open(newline="") as f:
            for row in csv.DictReader(f):
                rows.append(
                    {
                        "norm": run.norm,
                        "seed": run.seed,
                        "mode": row["mode"],
                        "samples": row["samples"],
                        "error": row["error"],
                    }
                )
    table = pd.DataFrame(rows).sort_values(["norm", "seed", "mode", "samples"])
    table.to_csv(given.out_dir / "errors.csv", index=False)
    bn = table[table["norm"] == "batch"]
    diffs = [
        float(bn[(bn.seed == s) & (bn["mode"] == "precise")]["error"].iloc[0])
        - float(bn[(bn.seed == s) & (bn["mode"] == "running")]["error"].iloc[0])
        for s in sorted(set(bn.seed))
    ]
    d = estimate(100 * x for x in diffs)
    claim = Claim(
        "tiny_study",
        "precise",
        "Precise BN differs from the running averages",
        "test",
        "–",
        d.text(),
        "paired by seed",
        judge_difference(d, -1),
        "2 tiny runs",
    )
    return ReportOutput("# Tiny study\n", [claim])


TINY = register(
    Study(
        name="tiny_study",
        title="two tiny runs, two evaluation phases, one claim (a test's own study)",
        report=tiny_report,
        params={"norm": "none,batch", "seed": "0"},
        overrides=(
            "dataset=synthetic",
            "dataset.num_train=2048",
            "dataset.num_val=30000",
            "dataset.batch_size=16",
            "model.hidden=[256,256]",
            "trainer.steps=30",
            "trainer.eval_every=15",
            "optim.lr=0.05",
            "trainer.log_every=15",
            "probes.every=0",
            "probes.hist_every=0",
            "trainer.threads=1",
        ),
        phases=(
            Phase("clean", {"mode": "running"}),
            Phase(
                "statistics",
                {"mode": "precise,batch", "samples": SLOW_EVAL, "batch_size": "16,64"},
                select=uses_batch_statistics,
            ),
        ),
        results="results/tiny_study",
    )
)


def study(
    cwd: Path, *args: str, wait: bool = True, **kw
) -> subprocess.Popen | subprocess.CompletedProcess:
    """``normbench study ARGS`` in a fresh interpreter that knows this file's study."""
    return study_cli(cwd, "tests.test_study_run", *args, wait=wait, timeout=600, **kw)


def stable(path: Path) -> pd.DataFrame:
    """A CSV without the columns that hold times, dates and the git revision."""
    df = pd.read_csv(path)
    drop = [
        c
        for c in df.columns
        if c in ("time_s", "evaluated_at", "wall_time_s", "finished_at")
        or c.startswith(("ms_", "share_"))
    ]
    return df.drop(columns=drop)


def test_tiny_study_lists_plans_and_runs_end_to_end(tmp_path):
    listed = study(tmp_path, "list")
    assert listed.returncode == 0 and "tiny_study" in listed.stdout and "bn_fig1" in listed.stdout
    plan = study(tmp_path, "plan", "tiny_study")
    assert plan.returncode == 0, plan.stderr
    assert "training: 2 runs" in plan.stdout and "(0 done)" in plan.stdout
    done = study(tmp_path, "run", "tiny_study")
    assert done.returncode == 0, done.stdout + done.stderr
    out = tmp_path / "results" / "tiny_study"
    errors = pd.read_csv(out / "errors.csv")
    # phase clean on both runs, phase statistics (precise, and batch at 16 and 64) on BN only
    assert sorted(errors[errors.norm == "none"]["mode"]) == ["running"]
    assert sorted(errors[errors.norm == "batch"]["mode"]) == [
        "batch",
        "batch",
        "precise",
        "running",
    ]
    claims = pd.read_csv(out / "claims.csv")
    assert list(claims["key"]) == ["precise"] and claims["verdict"][0].startswith("not enough runs")
    readme = (out / "README.md").read_text()
    assert "normbench study run tiny_study" in readme and "Verdict rule" in readme
    again = study(tmp_path, "plan", "tiny_study")
    assert "training: 2 runs under runs/tiny_study/ (2 done)" in again.stdout
    assert (
        "evaluation phase statistics: 3 per selected run; 3 on the 1 runs selected so far (3 done)"
        in again.stdout
    )


@pytest.mark.slow
def test_killed_in_the_evaluation_phase_the_same_command_goes_on(tmp_path):
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    whole.mkdir(), cut.mkdir()
    assert study(whole, "run", "tiny_study").returncode == 0
    proc = study(cut, "run", "tiny_study", wait=False)
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if "evaluating" in line:  # the evaluation phase has started
            break
    evals = [d / "evals.csv" for d in (cut / "runs" / "tiny_study").glob("*norm=batch*")]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not any(
        p.exists() and len(p.read_text().splitlines()) >= 2 for p in evals
    ):
        time.sleep(0.01)  # the first evaluation row is written: kill in the middle of the phase
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "".join(lines)
    bn = next((cut / "runs" / "tiny_study").glob("*norm=batch*"))
    before = pd.read_csv(bn / "evals.csv") if (bn / "evals.csv").exists() else pd.DataFrame()
    assert len(before) < 4, "the kill came after the evaluations: make them slower"
    finished = {(r["mode"], r["samples"], r["batch_size"]) for _, r in before.iterrows()}
    resumed = study(cut, "run", "tiny_study")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    # nothing redone: the rows written before the kill are still the same rows
    after = pd.read_csv(bn / "evals.csv")
    for key in finished:
        old = before[(before["mode"] == key[0])]
        new = after[(after["mode"] == key[0])]
        assert set(old["evaluated_at"]) <= set(new["evaluated_at"])
    assert "already done" in resumed.stdout
    for name in ("errors.csv", "claims.csv"):
        pd.testing.assert_frame_equal(
            stable(cut / "results" / "tiny_study" / name),
            stable(whole / "results" / "tiny_study" / name),
        )
    for run in (p.parent for p in (whole / "runs" / "tiny_study").glob("*/evals.csv")):
        pd.testing.assert_frame_equal(
            stable(run / "evals.csv").sort_values(["mode", "batch_size"]).reset_index(drop=True),
            stable(cut / "runs" / "tiny_study" / run.name / "evals.csv")
            .sort_values(["mode", "batch_size"])
            .reset_index(drop=True),
        )


@pytest.mark.slow
def test_two_jobs_share_the_work_and_a_failure_leaves_the_rest_done(tmp_path):
    done = study(tmp_path, "run", "tiny_study", "jobs=2")
    assert done.returncode == 0, done.stdout + done.stderr
    pids = set(re.findall(r"pid (\d+)\)", done.stdout))
    assert len(pids) == 2, done.stdout  # one worker per run directory, two at once
    # a failing job: BN refuses a batch of 1 in training; the other three complete
    bad = study(tmp_path / "runs", "run", "tiny_study", "jobs=2", "dataset.batch_size=16,1")
    said = bad.stdout + bad.stderr
    assert bad.returncode == 1, said
    assert "1 runs not complete" in said, said
    assert "evaluations 6/6 done" in said  # the three others were trained, evaluated, reported
    assert (tmp_path / "runs" / "results" / "tiny_study" / "claims.csv").is_file()


@pytest.mark.slow
def test_ctrl_c_in_training_with_two_jobs_then_the_same_command_finishes(tmp_path):
    """Ctrl-C to the study's process group (as a terminal sends it) while two jobs train: both
    checkpoint, exit 130, no process left; the same command finishes and reports."""
    longer = ["trainer.steps=4000", "trainer.eval_every=1000", "trainer.ckpt_minutes=1000"]
    proc = study(tmp_path, "run", "tiny_study", "jobs=2", *longer, wait=False)
    runs = tmp_path / "runs" / "tiny_study"
    deadline = time.monotonic() + 120
    while len(list(runs.glob("*/metrics.csv"))) < 2:
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)
    out = proc.communicate(timeout=120)[0]
    assert proc.returncode == 130, out
    status = [json.loads(p.read_text())["status"] for p in runs.glob("*/summary.json")]
    assert sorted(status) == ["interrupted", "interrupted"], out
    with pytest.raises(ProcessLookupError):  # no worker of the group is left running
        os.killpg(proc.pid, 0)
    assert not (tmp_path / "results").exists()  # stopped in training: no report yet
    done = study(tmp_path, "run", "tiny_study", "jobs=2", *longer)
    assert done.returncode == 0, done.stdout + done.stderr
    status = [json.loads(p.read_text())["status"] for p in runs.glob("*/summary.json")]
    assert status == ["complete", "complete"]
    assert (tmp_path / "results" / "tiny_study" / "claims.csv").is_file()


def test_made_line_gives_the_span_pauses_included_and_the_runs_own_time_apart():
    """A study run across two sessions: the span runs from the first start to the last end; the
    training time is the sum of the runs' own wall times (the pause is in the first only)."""
    from datetime import datetime, timedelta

    from normbench.studies.report import made_line

    t0, m = datetime(2026, 12, 7, 6, 0), timedelta(minutes=1)

    class FakeRun:
        def __init__(self, start, end):
            self.summary = {
                "finished_at": end.isoformat(),
                "wall_time_s": (end - start).total_seconds(),
                "environment": {"device_name": "cpu", "device": "cpu", "threads": 1},
            }

    spans = [(t0, t0 + 10 * m), (t0 + 5 * m, t0 + 20 * m), (t0 + 40 * m, t0 + 52 * m)]
    line = made_line([FakeRun(a, b) for a, b in spans])
    assert "06:00 to 2026-12-07 06:52 UTC (52 min, pauses included) for 3 runs" in line
    assert "37 min of training wall time in all (600–900 s each" in line
