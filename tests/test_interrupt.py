"""Interruption the way it happens: a real `normbench train` subprocess, a real signal at a
random moment, the same command again; the files must equal those of an uninterrupted run."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

RUN = [
    "dataset=synthetic",
    "dataset.num_train=512",
    "dataset.num_val=4096",
    "dataset.batch_size=16",
    "model.hidden=[64,64,64]",
    "optim.lr=0.1",
    "trainer.steps=3000",
    "trainer.eval_every=50",
    "trainer.eval_batch_size=32",
    "trainer.log_every=50",
    "trainer.threads=1",
    "trainer.ckpt_every=100000",
    "trainer.ckpt_minutes=1000",
    "probes.every=50",
    "probes.hist_every=500",
    "probes.batch_size=64",
    "probes.smoothness=100",
]
# Values that are timings or environment, not results.
VOLATILE_SUMMARY = {
    "wall_time_s",
    "time_s",
    "time_share",
    "ms_per_step",
    "images_per_s",
    "started_at",
    "finished_at",
    "environment",
    "run_dir",
}


def _start(cwd: Path, run_dir: str, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "normbench.cli", "train", *RUN, *extra, f"hydra.run.dir={run_dir}"]
    return subprocess.Popen(
        cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _finish(proc: subprocess.Popen, timeout: float = 300) -> tuple[int, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out + err


def _run(cwd: Path, run_dir: str, *extra: str) -> tuple[int, str]:
    return _finish(_start(cwd, run_dir, *extra))


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    """Wait until ``path`` (a glob pattern in its last part) exists."""
    deadline = time.monotonic() + timeout
    while not any(path.parent.glob(path.name)):
        assert proc.poll() is None, f"the run ended before {path} appeared: {_finish(proc)[1]}"
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.01)


def _scalars(run: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run), size_guidance={"scalars": 0, "histograms": 0})
    acc.Reload()
    out = {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}
    out.update(
        {f"hist:{t}": [(e.step, 0.0) for e in acc.Histograms(t)] for t in acc.Tags()["histograms"]}
    )
    return out


def _summary(run: Path) -> dict:
    data = json.loads((run / "summary.json").read_text())
    return {k: v for k, v in data.items() if k not in VOLATILE_SUMMARY}


def assert_same_run(run: Path, reference: Path) -> None:
    """metrics.csv, the probes' CSVs (activations, params, smoothness, shift), the summary and
    TensorBoard equal the reference's exactly, and TensorBoard holds every (tag, step) once."""
    pd.testing.assert_frame_equal(
        pd.read_csv(run / "metrics.csv").drop(columns=["time"]),
        pd.read_csv(reference / "metrics.csv").drop(columns=["time"]),
    )
    for name in ("activations.csv", "params.csv", "smoothness.csv", "shift.csv"):
        assert (run / name).read_bytes() == (reference / name).read_bytes(), name
    assert _summary(run) == _summary(reference)
    got, want = _scalars(run), _scalars(reference)
    for tag, points in got.items():
        steps = [s for s, _ in points]
        assert len(steps) == len(set(steps)), f"{tag}: a step logged twice: {steps}"
    assert set(got) == set(want)
    for tag in want:
        if tag.startswith("time/") or tag == "hparam/images_per_s":  # wall-clock numbers
            assert [s for s, _ in got[tag]] == [s for s, _ in want[tag]], tag
        else:
            assert got[tag] == want[tag], tag


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cwd = tmp_path_factory.mktemp("reference")
    code, out = _run(cwd, "ref")
    assert code == 0, out
    return cwd / "ref"


def _interrupt_and_resume(cwd: Path, name: str, delay: float, signum: int) -> tuple[int, str]:
    """Start the run, send ``signum`` ``delay`` s after its step-0 evaluation, check the stop,
    run the same command again; return the step it stopped at and the resumed run's output."""
    proc = _start(cwd, name)
    _wait_for(cwd / name / "metrics.csv", proc)
    time.sleep(delay)
    proc.send_signal(signum)
    code, out = _finish(proc)
    assert code == 128 + signum, out
    assert "Traceback" not in out
    stopped = json.loads((cwd / name / "summary.json").read_text())
    assert stopped["status"] == "interrupted", out
    assert f"stopped at step {stopped['step']} ({signal.Signals(signum).name})" in out
    code, out = _run(cwd, name)
    assert code == 0, out
    assert f"from its checkpoint at step {stopped['step']}" in out
    return stopped["step"], out


def _in_parallel(tmp_path: Path, names: list[str], delays: list[float], signum: int) -> list[int]:
    """:func:`_interrupt_and_resume` for several runs at once (threads driving subprocesses)."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(len(names)) as pool:
        jobs = [
            pool.submit(_interrupt_and_resume, tmp_path, name, delay, signum)
            for name, delay in zip(names, delays, strict=True)
        ]
        return [job.result()[0] for job in jobs]


def test_sigint_at_random_moments_resumes_exactly(reference, tmp_path):
    rng = random.Random(1)
    delays = [0.0, *(rng.uniform(0.05, 2.0) for _ in range(4))]
    names = [f"int{i}" for i in range(len(delays))]
    steps = _in_parallel(tmp_path, names, delays, signal.SIGINT)
    for name in names:
        assert_same_run(tmp_path / name, reference)
    assert len(set(steps)) >= 3, f"the interruptions hit too few distinct steps: {steps}"


def test_sigint_at_an_evaluation_step_keeps_its_row(reference, tmp_path):
    """Random moments, three runs at a time, until one stops the run at an evaluation step
    (every 50th; an evaluation of 4,096 samples takes a good share of the run's time)."""
    rng = random.Random(2)
    for attempt in range(4):
        names = [f"eval{attempt}_{i}" for i in range(3)]
        delays = [rng.uniform(0.05, 2.0) for _ in names]
        steps = _in_parallel(tmp_path, names, delays, signal.SIGINT)
        hits = [
            name for name, step in zip(names, steps, strict=True) if step % 50 == 0 and step > 0
        ]
        if hits:
            assert_same_run(tmp_path / hits[0], reference)
            return
    pytest.fail("no interruption landed at an evaluation step in 12 tries")


def test_sigterm_resumes_exactly(reference, tmp_path):
    _interrupt_and_resume(tmp_path, "term", 0.4, signal.SIGTERM)
    assert_same_run(tmp_path / "term", reference)


def test_sigkill_after_a_wall_time_checkpoint_resumes_exactly(reference, tmp_path):
    # ckpt_minutes=0.002: a checkpoint at the first step boundary 0.12 s after the last one.
    proc = _start(tmp_path, "kill", "trainer.ckpt_minutes=0.002")
    ckpt = tmp_path / "kill" / "ckpt" / "last.pt"
    _wait_for(ckpt, proc)
    time.sleep(0.3)
    proc.kill()
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert json.loads((tmp_path / "kill" / "summary.json").read_text())["status"] == "running"
    code, out = _run(tmp_path, "kill", "trainer.ckpt_minutes=0.002")
    assert code == 0, out
    assert "from its checkpoint at step" in out
    assert_same_run(tmp_path / "kill", reference)


def test_a_second_run_of_a_finished_command_changes_nothing(reference, tmp_path):
    code, out = _run(tmp_path, "twice")
    assert code == 0, out
    before = {p: p.read_bytes() for p in (tmp_path / "twice").rglob("*") if p.is_file()}
    code, out = _run(tmp_path, "twice")
    assert code == 0 and "already complete" in out, out
    after = {p: p.read_bytes() for p in (tmp_path / "twice").rglob("*") if p.is_file()}
    changed = [
        str(p) for p in after if before.get(p) != after[p] and p.name not in ("train.log", ".lock")
    ]
    assert not changed and set(after) == set(before), changed
    assert_same_run(tmp_path / "twice", reference)


def test_the_kill_after_the_final_checkpoint_completes_on_rerun(reference, tmp_path):
    """A kill between the final checkpoint and the summary leaves it 'running' with no hparams;
    the same command then completes it."""
    code, out = _run(tmp_path, "late")
    assert code == 0, out
    run = tmp_path / "late"
    from normbench.tensorboard_files import compact_event_files

    compact_event_files(run, 3000)  # what was on disk before the hparams were written
    summary = json.loads((run / "summary.json").read_text())
    summary["status"] = "running"
    (run / "summary.json").write_text(json.dumps(summary))
    code, out = _run(tmp_path, "late")
    assert code == 0 and "completing it" in out, out
    assert json.loads((run / "summary.json").read_text())["status"] == "complete"
    assert [s for s, _ in _scalars(run)["hparam/val_error"]] == [3000]
    assert_same_run(run, reference)


def test_a_second_process_on_the_same_run_stops_with_the_lock_message(reference, tmp_path):
    first = _start(tmp_path, "locked")
    _wait_for(tmp_path / "locked" / "metrics.csv", first)
    first.send_signal(signal.SIGSTOP)  # holds the lock, whatever the machine's speed
    try:
        code, out = _run(tmp_path, "locked")
    finally:
        first.kill()  # a dead owner: its lock is taken over
        first.communicate()
    assert code == 2, out
    assert f"in use by another normbench process (pid {first.pid} on" in out
    assert "Traceback" not in out and len(out.strip().splitlines()) == 1, out
    code, out = _run(tmp_path, "locked")
    assert code == 0, out
    assert_same_run(tmp_path / "locked", reference)


def test_a_restart_from_scratch_leaves_no_stale_events(reference, tmp_path):
    """SIGKILL before the first checkpoint, then the same command: it says it starts over, and
    then trainer.resume=never over the finished run: no event or row of either earlier attempt
    is left."""
    proc = _start(tmp_path, "again")
    _wait_for(tmp_path / "again" / "events.out.tfevents.*", proc)
    time.sleep(0.5)
    proc.kill()
    proc.wait()
    assert not (tmp_path / "again" / "ckpt" / "last.pt").exists()
    code, out = _run(tmp_path, "again")
    assert code == 0 and "starting from step 0 (an earlier attempt stopped" in out, out
    assert_same_run(tmp_path / "again", reference)
    code, out = _run(tmp_path, "again", "trainer.resume=never")
    assert code == 0 and "over from step 0" in out, out
    assert_same_run(tmp_path / "again", reference)
