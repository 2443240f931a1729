"""`normbench train` end to end on generated data: run directory, determinism, resume, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

FAST = [
    "dataset=synthetic",
    "dataset.num_train=256",
    "dataset.num_val=128",
    "dataset.batch_size=16",
    "trainer.steps=40",
    "trainer.eval_every=20",
    "trainer.log_every=10",
    "probes.every=10",
    "probes.hist_every=20",
    "probes.batch_size=64",
    "model.hidden=[32,32,32]",
]


def _metrics(run_dir: Path) -> pd.DataFrame:
    return pd.read_csv(run_dir / "metrics.csv").drop(columns=["time"])


def test_train_writes_the_run_directory(run_cli, tmp_path):
    code, out, err = run_cli("train", "experiment=bn_fig1", "norm=batch", *FAST)
    assert code == 0, out + err
    run_dirs = list((tmp_path / "runs" / "bn_fig1").iterdir())
    assert len(run_dirs) == 1
    run = run_dirs[0]
    assert (
        "norm=batch" in (run / ".hydra" / "overrides.yaml").read_text()
        and "step 40/40" in out + err
    )
    for name in (
        ".hydra/config.yaml",
        ".hydra/overrides.yaml",
        "metrics.csv",
        "activations.csv",
        "summary.json",
        "ckpt/last.pt",
    ):
        assert (run / name).is_file(), name
    metrics = pd.read_csv(run / "metrics.csv")
    assert metrics["step"].tolist() == [0, 20, 40]
    last_line = next(line for line in (out + err).splitlines() if "step 40/40" in line)
    assert f"val_err {100 * metrics['val_error'].iloc[-1]:.2f}% @40 |" in last_line
    assert {"epoch", "train_loss", "val_error", "val_loss", "lr", "time"} <= set(metrics.columns)
    params = pd.read_csv(run / "params.csv")  # probes.params: every parameter at every probe
    assert sorted(params["step"].unique()) == [0, 10, 20, 30, 40]
    names = ["hidden.0.linear.weight", "hidden.0.norm.weight", "hidden.0.norm.bias", "head.bias"]
    assert set(names) <= set(params["param"]) and len(params) == 5 * params["param"].nunique()
    trained = params[params["step"] > 0]
    assert trained["grad_norm"].notna().all() and (trained["grad_norm"] > 0).all()
    assert params[params["step"] == 0]["grad_norm"].isna().all()  # no step taken yet
    acts = pd.read_csv(run / "activations.csv")
    assert sorted(acts["step"].unique()) == [0, 10, 20, 30, 40]
    assert acts["layer"].nunique() == 3
    assert ((acts["unit_p15"] <= acts["unit_p50"]) & (acts["unit_p50"] <= acts["unit_p85"])).all()
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "complete" and summary["step"] == 40
    assert (
        summary["num_params"] == 784 * 32 + 32 * 32 * 2 + 32 * 10 + 10 + 3 * 2 * 32
    )  # BN: no linear bias
    assert {"train_step", "data", "eval", "probe"} <= set(summary["time_s"])
    assert {"git", "torch", "device", "threads"} <= set(summary["environment"])


def _progress(text: str, step: int) -> str:
    return next(line for line in text.splitlines() if f"] step {step}/" in line)


def test_the_progress_line_says_which_evaluation_its_val_err_is(run_cli, tmp_path):
    """eval_every 20, log_every 10: the step-10 and step-30 lines show the evaluations of steps 0
    and 20, marked @0 and @20."""
    code, out, err = run_cli("train", *FAST, "hydra.run.dir=p")
    assert code == 0, out + err
    metrics = pd.read_csv(tmp_path / "p" / "metrics.csv").set_index("step")
    for step, evaluated in [(10, 0), (20, 20), (30, 20), (40, 40)]:
        line = _progress(out + err, step)
        assert f"| val_err {100 * metrics.loc[evaluated, 'val_error']:.2f}% @{evaluated} |" in line


def test_a_run_ends_with_one_line_naming_its_result_time_and_directory(run_cli, tmp_path):
    code, out, err = run_cli("train", *FAST, "hydra.run.dir=runs/x")
    assert code == 0, out + err
    summary = json.loads((tmp_path / "runs" / "x" / "summary.json").read_text())
    last = (out + err).strip().splitlines()[-1]
    error, wall = 100 * summary["final"]["val_error"], summary["wall_time_s"]
    assert last.endswith(f"] done: val_err {error:.2f}% @40 | {wall:.1f} s | runs/x"), last
    assert (out + err).count("done:") == 1
    code, out, err = run_cli("train", *FAST, "hydra.run.dir=part", "trainer.stop_after=15")
    assert code == 0, out + err
    last = (out + err).strip().splitlines()[-1]
    assert "] stopped at step 15/40 (trainer.stop_after; the same command goes on): " in last
    assert "@0 |" in last and last.endswith(" s | part"), last


def test_the_progress_line_and_metrics_csv_say_which_steps_their_loss_averages(run_cli, tmp_path):
    """The progress line's loss is the mean over the steps since the previous line (10, or 5 when
    the run stops at step 15); metrics.csv's train_loss the mean over the 20 steps since the
    previous evaluation: the mean of the two lines' losses."""
    code, out, err = run_cli("train", *FAST, "hydra.run.dir=p")
    assert code == 0, out + err
    metrics = pd.read_csv(tmp_path / "p" / "metrics.csv").set_index("step")
    losses = {
        step: float(_progress(out + err, step).split("| loss(last 10) ")[1].split(" ")[0])
        for step in (10, 20, 30, 40)
    }
    for step, first in [(20, 10), (40, 30)]:
        mean = (losses[first] + losses[step]) / 2
        assert metrics.loc[step, "train_loss"] == pytest.approx(mean, abs=1e-4)
    assert abs(metrics.loc[20, "train_loss"] - losses[20]) > 1e-3  # the two windows differ
    code, out, err = run_cli("train", *FAST, "hydra.run.dir=part", "trainer.stop_after=15")
    assert code == 0 and "| loss(last 5) " in _progress(out + err, 15)  # steps 11 to 15


def test_tensorboard_has_scalars_and_histograms(run_cli, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    assert run_cli("train", *FAST, "hydra.run.dir=tb_run")[0] == 0
    acc = EventAccumulator(str(tmp_path / "tb_run"), size_guidance={"histograms": 0})
    acc.Reload()
    tags = acc.Tags()
    assert {"val/error", "train/loss", "time/step_ms", "act/hidden.2/unit_p50"} <= set(
        tags["scalars"]
    )
    assert "act_hist/hidden.2" in tags["histograms"]
    assert [e.step for e in acc.Scalars("val/error")] == [0, 20, 40]


def test_same_seed_gives_identical_metrics(run_cli, tmp_path):
    for name in ("a", "b"):
        assert run_cli("train", *FAST, "seed=7", f"hydra.run.dir={name}")[0] == 0
    pd.testing.assert_frame_equal(_metrics(tmp_path / "a"), _metrics(tmp_path / "b"))
    assert run_cli("train", *FAST, "seed=8", "hydra.run.dir=c")[0] == 0
    assert not _metrics(tmp_path / "a").equals(_metrics(tmp_path / "c"))


def test_interrupted_run_resumes_exactly(run_cli, tmp_path):
    assert run_cli("train", *FAST, "hydra.run.dir=whole")[0] == 0
    code, out, err = run_cli("train", *FAST, "hydra.run.dir=parts", "trainer.stop_after=15")
    assert code == 0
    assert json.loads((tmp_path / "parts" / "summary.json").read_text())["status"] == "stopped"
    code, out, err = run_cli("train", *FAST, "hydra.run.dir=parts")
    assert code == 0 and "resuming" in out + err
    pd.testing.assert_frame_equal(_metrics(tmp_path / "whole"), _metrics(tmp_path / "parts"))
    whole = pd.read_csv(tmp_path / "whole" / "activations.csv")
    parts = pd.read_csv(tmp_path / "parts" / "activations.csv")
    pd.testing.assert_frame_equal(whole, parts)
    whole, parts = (pd.read_csv(tmp_path / d / "params.csv") for d in ("whole", "parts"))
    pd.testing.assert_frame_equal(whole, parts)
    code, out, err = run_cli("train", *FAST, "hydra.run.dir=parts")
    assert code == 0 and "already complete" in out + err


def test_resume_refuses_a_changed_config(run_cli):
    assert run_cli("train", *FAST, "hydra.run.dir=r", "trainer.stop_after=5")[0] == 0
    code, out, err = run_cli("train", *FAST, "hydra.run.dir=r", "optim.lr=0.01")
    assert code == 2 and "optim.lr" in out + err and "trainer.resume=never" in out + err


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["norm=foo"], 2, "norm=foo is not an option of norm; choose one of: batch,"),
        (["norm.name=foo"], 2, "Unknown normalization 'foo'. Known variants:"),
        (
            ["trainer.stepz=5"],
            2,
            "trainer.stepz is not an option of trainer (did you mean trainer.steps?)",
        ),
        (
            ["+trainer.stepz=5"],
            2,
            "trainer.stepz is not an option of trainer (did you mean trainer.steps?)",
        ),
        (["seed=-1"], 2, "seed must be an integer in 0..4294967295"),
        (["name=../../x"], 2, "must be a plain directory name under runs/"),
        (["trainer.steps=0"], 2, "trainer.steps must be > 0"),
        (["dataset=mnist", "dataset.root=empty", "dataset.download=false"], 2, "mnist not found"),
    ],
)
def test_user_errors_are_one_clear_message(run_cli, args, code, message):
    got, out, err = run_cli("train", "trainer.steps=2", *args)
    assert got == code and message in out + err
    assert "Traceback" not in out + err and len((out + err).strip().splitlines()) == 1, out + err


def test_cfg_job_and_help_work_behind_the_subcommand(run_cli):
    code, out, _ = run_cli("train", "experiment=bn_fig1", "--cfg", "job")
    assert code == 0 and "steps: 50000" in out
    code, out, _ = run_cli("train", "--help")
    assert code == 0 and "norm: " in out and "batch" in out


def test_missing_fashion_mnist_download_failure_is_clear(run_cli, monkeypatch, tmp_path):
    import normbench.data.datasets as ds

    monkeypatch.setattr(ds, "find_dataset", lambda name, root: None)  # as on a machine without it

    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr("torchvision.datasets.FashionMNIST", offline)
    code, out, err = run_cli(
        "train", "dataset=fashion_mnist", "dataset.root=empty", "trainer.steps=2"
    )
    assert code == 2 and "could not download fashion_mnist" in out + err
    assert "apt-get install dataset-fashion-mnist" in out + err


def test_data_command_lists_datasets(run_cli, data_root):
    code, out, _ = run_cli("data", "--root", str(data_root))
    assert code == 0 and "fashion_mnist" in out and str(data_root / "fashion_mnist") in out
    assert run_cli("data", "--root", str(data_root), "--check", "mnist")[0] == 1


def test_trains_on_generated_idx_files(run_cli, data_root):
    code, out, err = run_cli(
        "train",
        "dataset=fashion_mnist",
        f"dataset.root={data_root}",
        "trainer.steps=30",
        "trainer.eval_every=30",
        "probes.every=0",
        "hydra.run.dir=idx",
    )
    assert code == 0 and str(data_root / "fashion_mnist") in out + err


def test_a_diverging_run_stops_with_a_clear_message(run_cli, tmp_path):
    code, out, err = run_cli(
        "train", "experiment=bn_fig1", "norm=none", *FAST, "optim.lr=1e30", "model.init_std=10"
    )
    assert code == 2
    assert "the run diverged" in out + err and "Lower optim.lr" in out + err
    assert "Traceback" not in out + err
    (run,) = (tmp_path / "runs" / "bn_fig1").iterdir()
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "diverged" and "DivergedError" in summary["error"]
    # the same command does not train it again (it would diverge again): it says so at once
    metrics = (run / "metrics.csv").read_bytes()
    args = ("train", "experiment=bn_fig1", "norm=none", *FAST, "optim.lr=1e30", "model.init_std=10")
    code, out, err = run_cli(*args)
    assert code == 2 and "diverged before" in out + err and "trainer.resume=never" in out + err
    assert (run / "metrics.csv").read_bytes() == metrics
    again = json.loads((run / "summary.json").read_text())
    assert again["status"] == "diverged" and again["error"] == summary["error"]
    # trainer.resume=never trains it over from step 0 (and it diverges again)
    code, out, err = run_cli(*args, "trainer.resume=never")
    assert code == 2 and "the run diverged" in out + err and "diverged before" not in out + err


def test_the_jacobian_probe_refuses_what_it_cannot_do(run_cli):
    """probes.jacobian runs at probe steps on the MLP: a step count that is not a multiple of
    probes.every, or a CNN, is one clear error naming the fix."""
    code, out, err = run_cli("train", *FAST, "probes.jacobian=15")
    assert code == 2 and "probes.jacobian=15 must be a multiple of probes.every=10" in out + err
    code, out, err = run_cli(
        "train", "experiment=small_batch", "probes.every=10", "probes.jacobian=20"
    )
    assert (
        code == 2
        and "works on model=mlp_sigmoid" in out + err
        and "not model=resnet50" in out + err
    )
