"""Hydra launchers behind `normbench train -m`: hydra/launcher=parallel (joblib: local parallel
processes) and slurm_local (submitit: one process per job, as on a Slurm node). Each sweep runs
in a subprocess, as a user runs it: the launchers start worker processes of their own."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from tests.test_train_cli import FAST

pytest.importorskip("hydra_plugins.hydra_joblib_launcher")

GRID = ["norm=batch,layer", "seed=0,1", "trainer.threads=1"]


def _train(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("NORMBENCH_JOBS", None)
    return subprocess.run(
        [sys.executable, "-m", "normbench.cli", "train", "-m", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )


def _runs(sweep: Path) -> dict[str, Path]:
    return {p.parent.name: p.parent for p in sweep.glob("*/summary.json")}


def _status(run: Path) -> str:
    return json.loads((run / "summary.json").read_text())["status"]


@pytest.mark.slow  # 13 s; tests/test_small_batch.py checks the same (runs and report) in the fast set
def test_a_joblib_sweep_makes_the_runs_of_a_serial_sweep(tmp_path):
    serial = _train(tmp_path, "name=serial", *FAST, *GRID)
    assert serial.returncode == 0, serial.stdout + serial.stderr
    parallel = _train(
        tmp_path,
        "name=parallel",
        "hydra/launcher=parallel",
        "hydra.launcher.n_jobs=2",
        *FAST,
        *GRID,
    )
    assert parallel.returncode == 0, parallel.stdout + parallel.stderr
    assert "Joblib.Parallel(n_jobs=2" in parallel.stderr + parallel.stdout
    assert "multirun: 4 jobs: 4 complete" in parallel.stderr
    a, b = _runs(tmp_path / "runs" / "serial"), _runs(tmp_path / "runs" / "parallel")
    assert len(a) == 4 and sorted(a) == sorted(b)
    for name in a:
        assert _status(a[name]) == _status(b[name]) == "complete"
        pd.testing.assert_frame_equal(
            pd.read_csv(a[name] / "metrics.csv").drop(columns=["time"]),
            pd.read_csv(b[name] / "metrics.csv").drop(columns=["time"]),
        )


def test_a_failed_job_of_a_joblib_sweep_does_not_stop_the_others(tmp_path):
    # batch size 1 under BN in training cannot work, nor WN's data-dependent init of the dense
    # layers (one value per unit); the other jobs, in other workers, go on.
    done = _train(
        tmp_path,
        "name=f",
        "hydra/launcher=parallel",
        "hydra.launcher.n_jobs=2",
        *FAST,
        "dataset.batch_size=1",
        "trainer.steps=4",
        "norm=batch,none,layer,weight",
        "trainer.threads=1",
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "ConfigStore schema" not in done.stderr  # Hydra's warning, once per worker
    assert "Warning" not in done.stderr, done.stderr
    # the tally is gathered from every worker process
    assert "multirun: 4 jobs: 2 complete" in done.stderr and ", 2 failed" in done.stderr
    status = {name: _status(run) for name, run in _runs(tmp_path / "runs" / "f").items()}
    assert sorted(status.values()) == ["complete"] * 2 + ["failed"] * 2, status
    assert [s for n, s in status.items() if "norm=batch" in n] == ["failed"], status


def test_a_submitit_local_sweep(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    done = _train(
        tmp_path, "name=s", "hydra/launcher=slurm_local", *FAST, "seed=0,1", "trainer.threads=1"
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "multirun: 2 jobs: 2 complete" in done.stderr
    assert "Warning" not in done.stderr, done.stderr
    runs = _runs(tmp_path / "runs" / "s")
    assert len(runs) == 2 and all(_status(r) == "complete" for r in runs.values()), runs
    assert (tmp_path / "runs" / "s" / ".submitit").is_dir()  # submitit's own files, per job


#: Our launcher configs and the plugin config each one extends (its `_target_`'s launcher).
LAUNCHERS = {
    "parallel": "joblib_launcher.JoblibLauncher",
    "slurm_local": "submitit_launcher.LocalLauncher",
    "slurm": "submitit_launcher.SlurmLauncher",
}


@pytest.mark.filterwarnings("error")  # e.g. Hydra's "validated against ConfigStore schema"
def test_the_launcher_configs_compose(monkeypatch):
    """Each shipped launcher config composes without a warning (the Slurm one too, on a machine
    without Slurm), over its plugin's config: the plugin's keys and types, our values."""
    from hydra import compose, initialize_config_dir

    from normbench.config import config_dir, register_resolvers

    register_resolvers()
    shipped = {p.stem for p in (config_dir() / "hydra" / "launcher").glob("*.yaml")}
    assert shipped == set(LAUNCHERS)
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        for name, target in LAUNCHERS.items():
            cfg = compose("train", overrides=[f"hydra/launcher={name}"], return_hydra_config=True)
            assert cfg.hydra.launcher._target_.endswith(target)
        cfg = compose(
            "train",
            overrides=["hydra/launcher=slurm", "hydra.launcher.partition=gpu"],
            return_hydra_config=True,
        )
        slurm = cfg.hydra.launcher
        assert slurm.partition == "gpu" and slurm.gpus_per_node == 1 and slurm.tasks_per_node == 1
        assert slurm.timeout_min == 240 and slurm.signal_delay_s == 120  # ours; the plugin's
        local = compose("train", overrides=["hydra/launcher=slurm_local"], return_hydra_config=True)
        assert (
            local.hydra.launcher.cpus_per_task == 1 and local.hydra.launcher.gpus_per_node is None
        )
        monkeypatch.setenv("NORMBENCH_JOBS", "3")
        cfg = compose("train", overrides=["hydra/launcher=parallel"], return_hydra_config=True)
        joblib = cfg.hydra.launcher
        assert joblib.n_jobs == 3 and joblib.backend == "loky" and joblib.batch_size == "1"
        assert joblib.mmap_mode == "r"  # the plugin's default, from the config extended
        with pytest.raises(Exception, match="n_jobs"):  # the plugin's types hold
            compose(
                "train",
                overrides=["hydra/launcher=parallel", "hydra.launcher.n_jobs=many"],
                return_hydra_config=True,
            )


# Runs long enough (seconds) for a signal to land while both workers train; a checkpoint only
# when stopped, so that a resumed run must continue exactly from the step it stopped at.
LONG = [
    "dataset=synthetic",
    "dataset.num_train=512",
    "dataset.num_val=512",
    "dataset.batch_size=16",
    "model.hidden=[64,64,64]",
    "optim.lr=0.1",
    "trainer.steps=3000",
    "trainer.eval_every=50",
    "trainer.log_every=500",
    "trainer.threads=1",
    "trainer.ckpt_every=100000",
    "trainer.ckpt_minutes=1000",
    "probes.every=50",
    "probes.hist_every=500",
    "probes.batch_size=64",
    "norm=batch",
    "seed=0,1,2",
]


def _start_joblib_sweep(cwd: Path, *extra: str) -> subprocess.Popen:
    """`normbench train -m ... hydra/launcher=parallel` with NORMBENCH_JOBS=2, in its own process
    group (as a terminal's foreground job is)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "NORMBENCH_JOBS": "2"}
    argv = ["train", "-m", *LONG, *extra, "hydra/launcher=parallel"]
    return subprocess.Popen(
        [sys.executable, "-m", "normbench.cli", *argv],
        cwd=cwd,
        env=env,
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _when_two_train(proc: subprocess.Popen, sweep: Path) -> None:
    """Wait until two runs have written their step-0 evaluation (both workers train)."""
    deadline = time.monotonic() + 180
    while len(list(sweep.glob("*/metrics.csv"))) < 2:
        assert proc.poll() is None, proc.communicate()[0]
        assert time.monotonic() < deadline, "two runs did not start"
        time.sleep(0.02)


def _stopped(proc: subprocess.Popen, sweep: Path, signum: int) -> str:
    """The sweep has exited 128 + signum, left no process behind, and its two running jobs
    are interrupted with a checkpoint; the third was not started."""
    out = proc.communicate(timeout=180)[0]
    assert proc.returncode == 128 + signum, out
    assert "Traceback" not in out, out
    with pytest.raises(ProcessLookupError):  # no worker (nor anything else) of it is left
        os.killpg(proc.pid, 0)
    name = signal.Signals(signum).name
    assert (
        f"multirun stopped by {name}: 3 jobs: 2 interrupted (checkpointed), 1 not started; "
        "run the same command to resume"
    ) in out
    runs = sorted(p for p in sweep.iterdir() if p.is_dir())
    assert len(runs) == 3, runs
    started = [r for r in runs if (r / "summary.json").exists()]
    assert len(started) == 2, out
    for run in started:
        summary = json.loads((run / "summary.json").read_text())
        assert summary["status"] == "interrupted" and (run / "ckpt" / "last.pt").is_file()
        assert f"stopped at step {summary['step']} ({name})" in out
    return out


@pytest.fixture(scope="module")
def serial_sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The uninterrupted sweep, one job after another."""
    cwd = tmp_path_factory.mktemp("serial")
    done = _train(cwd, *LONG)
    assert done.returncode == 0, done.stdout + done.stderr
    return cwd / "runs" / "default"


@pytest.mark.slow  # 45-90 s on a shared 2-core machine
def test_ctrl_c_stops_a_joblib_sweep_at_a_step_and_the_same_command_resumes_it(
    serial_sweep, tmp_path
):
    """Ctrl-C to the sweep's process group, as a terminal sends it: the parent waits while
    each worker checkpoints its run, the job not started yet is skipped, exit 130. The same
    command then finishes every run exactly as the uninterrupted serial sweep did."""
    from tests.test_interrupt import assert_same_run

    sweep = tmp_path / "runs" / "default"
    proc = _start_joblib_sweep(tmp_path)
    _when_two_train(proc, sweep)
    os.killpg(proc.pid, signal.SIGINT)
    _stopped(proc, sweep, signal.SIGINT)
    proc = _start_joblib_sweep(tmp_path)
    out = proc.communicate(timeout=300)[0]
    assert proc.returncode == 0, out
    assert "multirun: 3 jobs: 3 complete" in out
    assert out.count("from its checkpoint at step") == 2, out
    assert sorted(_runs(sweep)) == sorted(_runs(serial_sweep))
    for name, run in _runs(sweep).items():
        assert_same_run(run, serial_sweep / name)


def test_sigterm_to_the_parent_alone_reaches_the_joblib_workers(tmp_path):
    """A scheduler's SIGTERM to the `normbench train -m` process only: it passes the stop on to
    its workers, which checkpoint; exit 143."""
    sweep = tmp_path / "runs" / "default"
    # runs long enough that the first cannot finish before a loaded machine starts the second
    proc = _start_joblib_sweep(tmp_path, "trainer.steps=100000")
    _when_two_train(proc, sweep)
    proc.send_signal(signal.SIGTERM)
    _stopped(proc, sweep, signal.SIGTERM)


def test_a_joblib_job_takes_the_gpu_of_its_number(monkeypatch):
    """With several GPUs, job k of a joblib sweep runs on GPU k mod count; with one GPU or none,
    or trainer.device=cpu, nothing is chosen."""
    import torch
    from omegaconf import OmegaConf

    from normbench.cli.command import _use_job_gpu

    chosen: list[int] = []
    monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
    for count, device, job, expected in [
        (3, "auto", 4, [1]),
        (2, "cuda", 2, [0]),
        (3, "cpu", 4, []),
        (1, "auto", 5, []),
        (0, "auto", 1, []),
    ]:
        monkeypatch.setattr(torch.cuda, "device_count", lambda count=count: count)
        chosen.clear()
        _use_job_gpu(OmegaConf.create({"trainer": {"device": device}}), job)
        assert chosen == expected, (count, device, job)
