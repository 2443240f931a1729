"""The non-i.i.d. declaration end to end through ``normbench study run``: its experiment (BN and
GN on 2 classes x 16 images per batch of 32 against i.i.d. batches), its two evaluation phases on
the generated test split, and its report, on tiny runs (4 steps)."""

from __future__ import annotations

import dataclasses
import math
import os
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import yaml

from normbench.studies import register
from normbench.studies.non_iid import STUDY
from tests.conftest import make_idx_dataset, study_cli, tiny_run

DATA = os.environ.get("NON_IID_TINY_DATA", "data")

TINY = register(
    dataclasses.replace(
        STUDY,
        name="non_iid_tiny",
        params={"sweep/non_iid_norm": "batch,group", "batching.classes": "null,2", "seed": "0,1"},
        overrides=tiny_run(data=DATA),
        variants={},
        results="results/non_iid_tiny",
    )
)


def run_study(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return study_cli(tmp_path, "tests.test_non_iid_study", *args)


def test_the_plan_counts_the_main_grid_and_its_phases(tmp_path):
    done = run_study(tmp_path, "plan", "non_iid")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    assert "training: 18 runs under runs/non_iid/" in out
    assert "sweep/non_iid_norm=batch,batch_renorm,group batching.classes=null,2 seed=0,1,2" in out
    assert "evaluation phase test: 1 per selected run" in out
    assert "evaluation phase test_batch: 1 per selected run" in out


@pytest.mark.slow
def test_the_declared_study_trains_evaluates_and_reports(tmp_path):
    make_idx_dataset(tmp_path / "data" / "fashion_mnist", n_train=400, n_val=200)
    done = run_study(tmp_path, "run", "non_iid_tiny", "jobs=2")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = tmp_path / "results" / "non_iid_tiny"
    pts = pd.read_csv(out / "non_iid_points.csv")
    assert len(pts) == 8 and pts["running"].notna().all() and (pts["images"] == 200).all()
    assert sorted(pts["iid"].astype(str).unique()) == ["False", "True"]
    assert (
        set(pts.loc[~pts["iid"], "classes"]) == {2} and pts.loc[pts["iid"], "classes"].isna().all()
    )
    bn, gn = pts[pts["norm"] == "batch"], pts[pts["norm"] == "group"]
    assert bn["test_batch"].notna().all() and (bn["test_batch_size"] == 32).all()
    assert gn["test_batch"].isna().all()  # the test_batch phase selects BN-type runs only
    for run in pts["run"]:
        cfg = yaml.safe_load((tmp_path / run / ".hydra" / "config.yaml").read_text())
        assert cfg["dataset"]["batch_size"] == 32
        classes = cfg["batching"]["classes"]
        row = pts[pts["run"] == run].iloc[0]
        assert (classes is None) == bool(row["iid"])
    claims = pd.read_csv(out / "claims.csv").set_index("key")
    assert list(claims.index) == ["bn_degrades", "test_batch_recovers", "brn_recovers_most"]
    assert claims.loc["brn_recovers_most", "verdict"].startswith("not enough runs")  # no BRN
    for key in ("bn_degrades", "test_batch_recovers"):
        assert not claims.loc[key, "verdict"].startswith("shown")  # 2 seeds: never shown
        assert "(n = 2)" in claims.loc[key, "ours"]
    readme = (out / "README.md").read_text()
    assert "normbench study run non_iid_tiny jobs=2" in readme and "## Claims" in readme
    assert "2 classes x 16 images per batch of 32" in readme and (out / "non_iid.png").is_file()
    assert not math.isnan(float(bn["running"].iloc[0]))
