"""The inference-batch declaration end to end through ``normbench study run``: its MLP experiment
(where train-mode BN at b = 1 is undefined), its three evaluation phases over b = 1 … 256 on
generated Fashion-MNIST files, and its report, on tiny runs (4 steps)."""

from __future__ import annotations

import dataclasses
import os
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from normbench.studies import register
from normbench.studies.inference_batch import STUDY
from normbench.studies.inference_batch.points import BATCHES
from tests.conftest import make_idx_dataset, study_cli, tiny_run

DATA = os.environ.get("INFERENCE_BATCH_TINY_DATA", "data")

TINY = register(
    dataclasses.replace(
        STUDY,
        name="inference_batch_tiny",
        experiment="inference_batch_mlp",
        params={"sweep/inference_batch_norm": "batch,group", "seed": "0,1"},
        overrides=tiny_run(data=DATA),
        variants={},
        results="results/inference_batch_tiny",
    )
)


def run_study(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return study_cli(tmp_path, "tests.test_inference_batch_study", *args)


def test_the_plan_counts_the_main_grid_and_its_phases(tmp_path):
    done = run_study(tmp_path, "plan", "inference_batch")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    assert "training: 15 runs under runs/inference_batch/" in out
    assert "sweep/inference_batch_norm=batch,batch_renorm,group,layer,frn" in out
    per_run = len(BATCHES)
    assert f"evaluation phase eval_mode: {per_run} per selected run" in out
    assert f"evaluation phase batch_stats: {per_run} per selected run" in out
    assert "evaluation phase batch_free: 1 per selected run" in out


@pytest.mark.slow
def test_the_declared_study_trains_evaluates_and_reports(tmp_path):
    make_idx_dataset(tmp_path / "data" / "fashion_mnist", n_train=400, n_val=200)
    done = run_study(tmp_path, "run", "inference_batch_tiny", "jobs=2")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = tmp_path / "results" / "inference_batch_tiny"
    pts = pd.read_csv(out / "inference_batch_points.csv")
    assert pts["run"].nunique() == 4 and set(pts["norm"]) == {"batch", "group"}
    running = pts[pts["mode"] == "running"]
    assert sorted(set(running["b"])) == list(BATCHES) and len(running) == 4 * len(BATCHES)
    assert (running["status"] == "ok").all() and (running["images"] == 64).all()
    bn = pts[(pts["norm"] == "batch") & (pts["mode"] == "batch")]
    assert len(bn) == 2 * len(BATCHES)  # batch_stats: the BN runs only, every b
    # an MLP's BN at b = 1: one value per channel, recorded undefined (not a failure)
    assert set(bn[bn["b"] == 1]["status"]) == {"undefined"}
    assert (bn[bn["b"] > 1]["status"] == "ok").all()
    gn = pts[(pts["norm"] == "group") & (pts["mode"] == "batch")]
    assert list(gn["b"]) == [1, 1] and not gn["applied"].any()  # batch_free: not applied
    claims = pd.read_csv(out / "claims.csv").set_index("key")
    assert list(claims.index) == ["eval_flat", "batch_degrades", "batch_free_flat", "folded_free"]
    assert claims.loc["folded_free", "verdict"].startswith("not measured")  # no bench CSV here
    assert "b = 1: undefined in 2 of 2 seeds" in claims.loc["batch_degrades", "ours"]
    assert "err(2) − err(256)" in claims.loc["batch_degrades", "rule"]
    readme = (out / "README.md").read_text()
    assert "normbench study run inference_batch_tiny jobs=2" in readme and "## Claims" in readme
    assert "| BN | test-batch statistics | undefined |" in readme
    assert "yes, by construction" in readme and (out / "inference_batch.png").is_file()
