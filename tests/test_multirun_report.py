"""Multirun over every shipped experiment, a failing job inside a sweep, and `normbench report`."""

from __future__ import annotations

import json

import pandas as pd
import yaml

from normbench.config import config_dir
from tests.test_train_cli import FAST

# Overrides that make every shipped experiment a seconds-long run of its own model: generated data
# in memory (ImageNet's image folders included), the test split, a batch every N divides, few steps.
SMOKE = [
    "dataset=synthetic",
    "dataset.num_train=128",
    "dataset.num_val=64",
    "dataset.batch_size=16",
    "dataset.val_split=test",
    "per_device.images=null",
    "trainer.steps=6",
    "trainer.eval_every=3",
    "trainer.log_every=3",
    "trainer.threads=1",
    "probes.every=3",
    "probes.batch_size=32",
    "probes.hist_every=0",
    "probes.jacobian=0",  # experiment=jacobian's 500 is not a multiple of probes.every=3 (an error)
    "probes.smoothness=0",  # experiment=covariate_shift's 100: likewise
    "probes.hidden_grads=0",  # experiment=recurrent's 2,500: likewise
]


def test_smoke_multirun_every_experiment(run_cli, tmp_path):
    code, out, err = run_cli("train", "-m", "experiment=glob(*)", "seed=0", *SMOKE)
    assert code == 0, out + err
    summaries = list((tmp_path / "runs").rglob("summary.json"))
    experiments = sorted(p.stem for p in (config_dir() / "experiment").glob("*.yaml"))
    assert len(summaries) >= len(experiments)
    assert all(json.loads(s.read_text())["status"] == "complete" for s in summaries)


def test_a_failed_run_does_not_stop_the_sweep(run_cli, tmp_path):
    # batch size 1 under BN in training cannot work; the norm=none job must still run.
    code, out, err = run_cli(
        "train",
        "-m",
        "norm=batch,none",
        *FAST,
        "dataset.batch_size=1",
        "trainer.steps=4",
        "hydra.sweep.dir=sweep",
        "hydra.sweep.subdir=${hydra.job.num}",
    )
    assert code == 1, out + err  # after finishing the others, with a one-line tally
    assert "multirun: 2 jobs: 1 complete (1 at chance level), 1 failed" in err
    status = {
        " ".join(yaml.safe_load((p.parent / ".hydra/overrides.yaml").read_text())): json.loads(
            p.read_text()
        )["status"]
        for p in (tmp_path / "sweep").rglob("summary.json")
    }
    assert any("norm=batch" in k and v == "failed" for k, v in status.items()), status
    assert any("norm=none" in k and v == "complete" for k, v in status.items()), status
    assert "the sweep goes on" in out + err


def test_report_draws_figure_1(run_cli, tmp_path):
    code, out, err = run_cli("train", "-m", "experiment=bn_fig1", "seed=0,1", *FAST)
    assert code == 0, out + err
    code, out, err = run_cli("report", "runs/bn_fig1", "--out", "rep")
    assert code == 0, out + err
    rep = tmp_path / "rep"
    for name in ("fig1.png", "fig1_accuracy.csv", "fig1_percentiles.csv", "runs.csv", "README.md"):
        assert (rep / name).is_file(), name
    acc = pd.read_csv(rep / "fig1_accuracy.csv")
    assert set(acc["norm"]) == {"none", "batch"} and (acc["seeds"] == 2).all()
    # the plotted mean is the mean of the runs' own metrics
    runs = [
        p.parent
        for p in (tmp_path / "runs" / "bn_fig1").rglob("summary.json")
        if json.loads(p.read_text())["norm"] == "batch"
    ]
    assert len(runs) == 2
    last = [1 - pd.read_csv(r / "metrics.csv")["val_error"].iloc[-1] for r in runs]
    got = acc[(acc["norm"] == "batch") & (acc["step"] == 40)]["mean"].iloc[0]
    assert abs(got - sum(last) / len(last)) < 1e-5  # the CSV keeps 6 significant digits
    pct = pd.read_csv(rep / "fig1_percentiles.csv")
    assert set(pct["layer"]) == {"hidden.2.act"}
    steps = sorted(set(pct["step"]))
    assert steps == [0, 10, 20, 30, 40]
    readme = (rep / "README.md").read_text()
    assert "normbench train -m" in readme and "Hardware:" in readme and "verdict" in readme
    probe_row = next(line for line in readme.splitlines() if line.startswith("| probe |"))
    assert probe_row.endswith(f"percentiles, at steps {', '.join(map(str, steps[:-1]))} and 40 |")
    assert "every 250 steps" not in readme  # the experiment's probes.every, not what ran


def test_the_probe_steps_are_said_as_they_ran():
    from normbench.studies.bn_fig1.report import probe_steps_text

    assert probe_steps_text([0, 50]) == "at steps 0 and 50"
    assert probe_steps_text([0]) == "at step 0"
    assert probe_steps_text(list(range(0, 50_001, 250))) == (
        "every 250 steps, 201 probes (steps 0–50,000)"
    )
    assert probe_steps_text([]) == "no probe steps recorded"


def test_report_of_nothing_is_a_clear_error(run_cli, tmp_path):
    (tmp_path / "empty").mkdir()
    code, _, err = run_cli("report", "empty")
    assert code == 2 and "no run directories" in err
