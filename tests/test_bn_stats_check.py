"""scripts/bn_stats_check.py on a finished tiny run: running, batch and precise BN statistics."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pandas as pd
import pytest

from .test_train_cli import FAST

SCRIPT = Path(__file__).parents[1] / "scripts" / "bn_stats_check.py"


def _script():
    spec = importlib.util.spec_from_file_location("bn_stats_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bn_stats_check_reevaluates_a_finished_run(run_cli, tmp_path):
    code, out, err = run_cli("train", "norm=batch", *FAST, "hydra.run.dir=runs/bn")
    assert code == 0, out + err
    run = tmp_path / "runs" / "bn"
    reported = pd.read_csv(run / "metrics.csv")["val_error"].iloc[-1]
    out_csv = tmp_path / "check.csv"
    assert _script().main([str(run), "--images", "64", "--out", str(out_csv)]) == 0
    row = pd.read_csv(out_csv).iloc[0]
    assert row["running"] == pytest.approx(reported)  # the final weights and statistics, reloaded
    assert row["bn_layers"] == 3 and row["precise_images"] == 64 and row["step"] == 40
    assert 0.0 <= row["batch"] <= 1.0 and 0.0 <= row["precise"] <= 1.0
    assert row["evaluated"].startswith("20") and "torch" in row["hardware"]


def test_bn_stats_check_names_a_missing_checkpoint(run_cli, tmp_path):
    code, out, err = run_cli("train", "norm=batch", *FAST, "hydra.run.dir=runs/bn")
    assert code == 0, out + err
    (tmp_path / "runs" / "bn" / "ckpt" / "last.pt").unlink()
    with pytest.raises(SystemExit, match="no checkpoint"):
        _script().main([str(tmp_path / "runs" / "bn")])
