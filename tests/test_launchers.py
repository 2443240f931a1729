"""Hydra launchers behind `normbench train -m`: joblib (local parallel processes) and
submitit_local (one process per job, as on a Slurm node). Each sweep runs in a subprocess, as
a user runs it: the launchers start worker processes of their own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
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


def test_a_joblib_sweep_makes_the_runs_of_a_serial_sweep(tmp_path):
    serial = _train(tmp_path, "name=serial", *FAST, *GRID)
    assert serial.returncode == 0, serial.stdout + serial.stderr
    parallel = _train(
        tmp_path, "name=parallel", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", *FAST, *GRID
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
    # batch size 1 under BN in training cannot work; the other jobs, in other workers, go on.
    done = _train(
        tmp_path,
        "name=f",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        *FAST,
        "dataset.batch_size=1",
        "trainer.steps=4",
        "norm=batch,none,layer,weight",
        "trainer.threads=1",
    )
    assert done.returncode == 1, done.stdout + done.stderr
    # the tally is gathered from every worker process
    assert "multirun: 4 jobs: 3 complete" in done.stderr and ", 1 failed" in done.stderr
    status = {name: _status(run) for name, run in _runs(tmp_path / "runs" / "f").items()}
    assert sorted(status.values()) == ["complete"] * 3 + ["failed"], status
    assert [s for n, s in status.items() if "norm=batch" in n] == ["failed"], status


def test_a_submitit_local_sweep(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    done = _train(
        tmp_path, "name=s", "hydra/launcher=submitit_local", *FAST, "seed=0,1", "trainer.threads=1"
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "multirun: 2 jobs: 2 complete" in done.stderr
    runs = _runs(tmp_path / "runs" / "s")
    assert len(runs) == 2 and all(_status(r) == "complete" for r in runs.values()), runs
    assert (tmp_path / "runs" / "s" / ".submitit").is_dir()  # submitit's own files, per job


@pytest.mark.filterwarnings(
    r"ignore:\s*.hydra/launcher/.*is validated against ConfigStore:UserWarning"
)
def test_the_launcher_configs_compose(monkeypatch):
    """Each shipped launcher config composes (the Slurm one too, on a machine without Slurm)."""
    from hydra import compose, initialize_config_dir

    from normbench.config import config_dir, register_resolvers

    register_resolvers()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        for name in ("joblib", "submitit_local", "submitit_slurm"):
            cfg = compose("train", overrides=[f"hydra/launcher={name}"], return_hydra_config=True)
            assert name.split("_")[0] in cfg.hydra.launcher._target_.lower()
        cfg = compose(
            "train",
            overrides=["hydra/launcher=submitit_slurm", "hydra.launcher.partition=gpu"],
            return_hydra_config=True,
        )
        slurm = cfg.hydra.launcher
        assert slurm.partition == "gpu" and slurm.gpus_per_node == 1 and slurm.tasks_per_node == 1
        assert slurm.timeout_min > 0
        monkeypatch.setenv("NORMBENCH_JOBS", "3")
        cfg = compose("train", overrides=["hydra/launcher=joblib"], return_hydra_config=True)
        assert cfg.hydra.launcher.n_jobs == 3 and cfg.hydra.launcher.backend == "loky"
