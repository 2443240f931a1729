"""`normbench eval` end to end on tiny trained runs: rows of evals.csv, sweeps, errors, safety."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from normbench.cli import command as cli
from normbench.cli.eval import main as eval_main
from normbench.engine.lock import RunLock
from normbench.evaluation.records import read_evals, write_eval_row

from .conftest import write_idx

CLASSES = 4
TRAIN = [
    "dataset=fashion_mnist",
    "dataset.batch_size=16",
    "trainer.steps=60",
    "trainer.eval_every=60",
    "trainer.log_every=60",
    "trainer.device=cpu",
    "probes.every=0",
    "probes.hist_every=0",
    "model.hidden=[32,32,32]",
    "logging.tensorboard=false",
]


def make_hard_idx(folder: Path, n_train: int = 480, n_val: int = 240) -> None:
    """MNIST-format files, 4 classes: the class's image quarter is brighter by only 3 of 255,
    so that a 60-step run errs on about half the images (errors differ between seeds)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("t10k", n_val)):
        labels = rng.integers(0, CLASSES, size=n).astype(np.uint8)
        images = rng.integers(0, 60, size=(n, 28, 28)).astype(np.uint8)
        for i, c in enumerate(labels):
            r, q = divmod(int(c), 2)
            images[i, 14 * r : 14 * r + 14, 14 * q : 14 * q + 14] += 3
        write_idx(folder / f"{split}-images-idx3-ubyte", images, compress=False)
        write_idx(folder / f"{split}-labels-idx1-ubyte", labels, compress=False)


def train_runs(base: Path) -> dict[str, Path]:
    """Train the tiny runs the eval tests use, in ``base``: BN seeds 0 and 1, GroupNorm."""
    root = base / "data"
    make_hard_idx(root / "fashion_mnist")
    runs = {
        "bn": ["norm=batch", "seed=0"],
        "bn_seed1": ["norm=batch", "seed=1"],
        "gn": ["norm=group", "norm.num_groups=4", "seed=0"],
    }
    cwd = Path.cwd()
    argv = sys.argv
    try:
        os.chdir(base)
        sys.argv = ["normbench"]
        for name, extra in runs.items():
            code = cli.main(
                ["train", *TRAIN, f"dataset.root={root}", *extra, f"hydra.run.dir={name}"]
            )
            assert code == 0, name
    finally:
        os.chdir(cwd)
        sys.argv = argv
    return {name: base / name for name in runs}


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return train_runs(tmp_path_factory.mktemp("eval_runs"))


def copy_run(run: Path, where: Path) -> Path:
    """A private copy of a trained run (tests write evals.csv and break files)."""
    target = where / run.name
    shutil.copytree(run, target, ignore=shutil.ignore_patterns(".lock", "evals.csv"))
    return target


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def rows(run: Path) -> pd.DataFrame:
    return pd.read_csv(run / "evals.csv", keep_default_na=False, na_values=[""])


def test_running_reproduces_the_final_val_error_exactly(run_cli, trained, tmp_path):
    run = copy_run(trained["bn"], tmp_path)
    code, out, err = run_cli("eval", str(run))
    assert code == 0, out + err
    final = json.loads((run / "summary.json").read_text())["final"]
    (row,) = read_evals(run)
    assert float(row["error"]) == final["val_error"]  # bit-exact through the CSV
    assert float(row["nll"]) == pytest.approx(final["val_loss"], rel=1e-6)
    assert 0.2 < final["val_error"] < 0.7  # a run that learned something, not at chance
    assert row["mode"] == "running" and row["status"] == "ok" and row["applied"] == "true"
    assert row["step"] == "60" and row["bn_layers"] == "3" and row["num_samples"] == "240"
    assert row["data"] == "fashion_mnist" and row["corruption"] == "none"
    assert row["evaluated_at"].endswith("+00:00") and row["samples"] == ""
    assert f"error {final['val_error']:.4f}" in out


def test_a_sweep_writes_one_row_per_evaluation_and_prints_a_table(run_cli, trained, tmp_path):
    run = copy_run(trained["bn"], tmp_path)
    ckpt = sha256(run / "ckpt" / "last.pt")
    code, out, err = run_cli(
        "eval", str(run), "-m", "mode=running,precise,batch,adapt,partial,tent", "batch_size=8,32"
    )
    assert code == 0, out + err
    table = rows(run)
    # precise and adapt take no batch_size: one job each; the others two each
    assert sorted(table["mode"]) == sorted(
        ["precise", "adapt"] + ["running", "batch", "partial", "tent"] * 2
    )
    assert (table["status"] == "ok").all() and table["applied"].all()
    assert set(table.loc[table["mode"] == "batch", "batch_size"]) == {8, 32}
    assert table.loc[table["mode"] == "precise", "samples"].item() == 480  # the training set
    partial = table[table["mode"] == "partial"]
    assert (partial["prior"] == 16.0).all()
    tent = table[table["mode"] == "tent"]
    # Adam at lr 0.001 for batch 128, scaled linearly (Wang et al. 2021)
    assert tent.set_index("batch_size")["lr"].to_dict() == {8: 0.001 * 8 / 128, 32: 0.00025}
    assert table["ece"].between(0, 1).all() and (table["nll"] > 0).all()
    running = table[table["mode"] == "running"].set_index("batch_size")["error"]
    assert set(running.index) == {8, 32} and running[8] == running[32]  # eval mode: any batch
    assert "eval: 10 evaluations: 10 ok, 0 undefined, 0 failed" in err
    assert "partial" in out and "precise" in out  # the table
    assert sha256(run / "ckpt" / "last.pt") == ckpt  # the checkpoint is only read


def test_rerunning_an_evaluation_replaces_its_row(run_cli, trained, tmp_path):
    run = copy_run(trained["bn"], tmp_path)
    for args in (["mode=batch", "batch_size=8"], ["mode=running"], ["mode=batch", "batch_size=8"]):
        code, out, err = run_cli("eval", str(run), *args)
        assert code == 0, out + err
    assert rows(run)[["mode", "batch_size"]].fillna(0).values.tolist() == [
        ["batch", 8],
        ["running", 0],
    ]
    assert run_cli("eval", str(run), "mode=batch", "batch_size=4")[0] == 0
    assert len(rows(run)) == 3


def test_a_write_killed_midway_leaves_the_previous_file_and_no_temporary(
    trained, tmp_path, monkeypatch
):
    run = copy_run(trained["bn"], tmp_path)
    write_eval_row(run, {"mode": "running", "error": 0.5})
    before = (run / "evals.csv").read_bytes()

    def killed(fd: int) -> None:  # the new file is written but not yet renamed over the old
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", killed)
    with pytest.raises(KeyboardInterrupt):
        write_eval_row(run, {"mode": "batch", "batch_size": 8, "error": 0.25})
    assert (run / "evals.csv").read_bytes() == before
    assert sorted(p.name for p in run.glob("evals.csv*")) == ["evals.csv"]
    monkeypatch.undo()
    (run / "evals.csv12345.tmp").write_text("left by a SIGKILL")  # as mkstemp names them
    write_eval_row(run, {"mode": "batch", "batch_size": 8, "error": 0.25})
    assert sorted(p.name for p in run.glob("evals.csv*")) == ["evals.csv"]
    assert [r["mode"] for r in read_evals(run)] == ["running", "batch"]


def test_a_failed_rename_is_one_line_and_keeps_the_file(run_cli, trained, tmp_path, monkeypatch):
    run = copy_run(trained["bn"], tmp_path)
    assert run_cli("eval", str(run))[0] == 0
    before = (run / "evals.csv").read_bytes()

    def no_rename(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", no_rename)
    code, out, err = run_cli("eval", str(run), "mode=batch")
    assert code == 2 and "disk is full" in err and len(err.strip().splitlines()) == 1
    assert (run / "evals.csv").read_bytes() == before
    assert sorted(p.name for p in run.glob("evals.csv*")) == ["evals.csv"]


def test_undefined_statistics_are_a_row_not_a_crash(run_cli, trained, tmp_path):
    run = copy_run(trained["bn"], tmp_path)
    code, out, err = run_cli(
        "eval", str(run), "-m", "mode=batch,partial,running", "batch_size=1", "prior=0"
    )
    assert code == 0, out + err
    table = rows(run).set_index("mode")
    for mode in ("batch", "partial"):
        assert table.loc[mode, "status"] == "undefined"
        assert pd.isna(table.loc[mode, "error"]) and pd.isna(table.loc[mode, "nll"])
        assert "1 value per channel" in table.loc[mode, "note"]
        assert "hidden.0.norm" in table.loc[mode, "note"]  # the layer is named
    assert table.loc["running", "status"] == "ok"
    assert "eval: 3 evaluations: 1 ok, 2 undefined, 0 failed" in err


def test_statistics_modes_do_not_apply_without_batch_statistics(run_cli, trained, tmp_path):
    run = copy_run(trained["gn"], tmp_path)
    code, out, err = run_cli(
        "eval", str(run), "-m", "mode=running,precise,batch,adapt,partial,tent"
    )
    assert code == 0, out + err
    table = rows(run).set_index("mode")
    running = table.loc["running", "error"]
    for mode in ("precise", "batch", "adapt", "partial"):
        assert not table.loc[mode, "applied"] and table.loc[mode, "error"] == running
        assert "norm=group does not normalize with batch statistics" in table.loc[mode, "note"]
    assert table.loc["tent", "applied"] and "affine parameters only" in table.loc["tent", "note"]
    assert table.loc["running", "bn_layers"] == 0


def test_other_data_with_an_input_adapter(run_cli, trained, tmp_path):
    run = copy_run(trained["bn"], tmp_path)
    args = ["data=synthetic", "data.num_classes=4", "data.image_shape=[3,32,32]", "data.num_val=64"]
    code, out, err = run_cli("eval", str(run), "-m", "mode=running,adapt", *args)
    assert code == 0, out + err
    table = rows(run)
    assert set(table["data"]) == {"synthetic[num_classes=4,image_shape=[3,32,32],num_val=64]"}
    assert (table["num_samples"] == 64).all() and (table["status"] == "ok").all()


def test_a_sweep_goes_on_after_a_failure_and_exits_1(run_cli, trained, tmp_path):
    good = copy_run(trained["bn"], tmp_path / "a")
    bad = copy_run(trained["bn_seed1"], tmp_path / "b")
    _truncate(bad)
    code, out, err = run_cli("eval", "-m", str(bad), str(good), "mode=running,batch")
    assert code == 1
    assert "eval: 4 evaluations: 2 ok, 0 undefined, 2 failed" in err
    assert err.count("failed: ") == 2 and "truncated or corrupt" in err
    assert "Traceback" not in err
    assert sorted(rows(good)["mode"]) == ["batch", "running"]
    assert not (bad / "evals.csv").exists()


def test_a_run_in_training_is_refused_with_the_lock_message(run_cli, trained, tmp_path):
    run = copy_run(trained["bn"], tmp_path)
    with RunLock(run):
        code, out, err = run_cli("eval", str(run))
    assert code == 2 and "in use by another normbench process" in err
    assert len(err.strip().splitlines()) == 1 and not (run / "evals.csv").exists()


def test_long_evaluations_print_progress_lines(trained, tmp_path, capsys):
    run = copy_run(trained["bn"], tmp_path)
    assert eval_main([str(run), "mode=precise"], progress_every_s=0.0) == 0
    err = capsys.readouterr().err
    assert f"eval {run} mode=precise: statistics 1/30 batches" in err
    assert f"eval {run} mode=precise: statistics 30/30 batches" in err
    assert f"eval {run} mode=precise: evaluation 1/1 batches" in err


def _truncate(run: Path) -> None:
    """Cut the checkpoint in half, as a kill in the middle of a copy would."""
    ckpt = run / "ckpt" / "last.pt"
    ckpt.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])


def _other_config(run: Path) -> None:
    config = run / ".hydra" / "config.yaml"
    config.write_text(config.read_text().replace("init_std: 0.1", "init_std: 0.2"))


ERRORS = {
    "not a run directory": (
        lambda run: shutil.rmtree(run / ".hydra"),
        [],
        "is not a run directory",
    ),
    "no checkpoint": (lambda run: (run / "ckpt" / "last.pt").unlink(), [], "no checkpoint"),
    "truncated checkpoint": (_truncate, [], "is truncated or corrupt"),
    "crafted checkpoint": (
        lambda run: (run / "ckpt" / "last.pt").write_bytes(b"\x80\x02garbage"),
        [],
        "was refused",
    ),
    "checkpoint of another config": (_other_config, [], "changed: model.init_std"),
    "other class count": (None, ["data=synthetic"], "has 10 classes but the run was trained"),
    "unknown mode": (None, ["mode=median"], "choose one of running, precise, batch, adapt"),
    "batch_size out of range": (None, ["mode=batch", "batch_size=0"], "integer >= 1"),
    "prior out of range": (None, ["mode=partial", "prior=-1"], "prior must be a number >= 0"),
    "samples out of range": (None, ["mode=precise", "samples=100000"], "samples in 1..480"),
    "lr out of range": (None, ["mode=tent", "lr=0"], "lr must be a number > 0"),
    "knob of another mode": (None, ["mode=running", "samples=5"], "does not take samples"),
    "corruption": (None, ["corruption=fogg", "severity=3"], "did you mean corruption=fog?"),
    "corruption without severity": (None, ["corruption=fog"], "needs severity=1..5"),
    "severity": (None, ["severity=9"], "severity is an integer in 1..5"),
    "unknown key": (None, ["mdoe=batch"], "did you mean mode?"),
    "unknown data key": (None, ["data.no_such_key=1"], "data.no_such_key is not an option"),
    "sweep without -m": (None, ["mode=running,batch"], "add -m"),
}


@pytest.mark.parametrize("case", ERRORS, ids=list(ERRORS))
def test_user_errors_are_one_line_and_exit_2(run_cli, trained, tmp_path, case):
    damage, args, message = ERRORS[case]
    run = copy_run(trained["bn"], tmp_path)
    if damage is not None:
        damage(run)
    code, out, err = run_cli("eval", str(run), *args)
    assert code == 2, out + err
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in out + err


def test_help_lists_the_command_and_its_keys(run_cli):
    code, out, _ = run_cli("--help")
    assert code == 0 and "eval RUN_DIR..." in out
    code, out, _ = run_cli("eval", "--help")
    assert code == 0 and "mode=running|precise|batch|adapt|partial|tent" in out
