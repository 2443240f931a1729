"""The small-batch declaration end to end through ``normbench study run``: its experiment, its two
evaluation phases (``bn_stats`` with fewer samples, on generated Fashion-MNIST files) and its
report, on tiny runs (4 steps)."""

from __future__ import annotations

import dataclasses
import os

import pandas as pd
import pytest

from normbench.studies import register
from normbench.studies.small_batch import BN_STATS, STUDY, TEST
from tests.conftest import make_idx_dataset, study_cli, tiny_run

DATA = os.environ.get("SMALL_BATCH_TINY_DATA", "data")

TINY = register(
    dataclasses.replace(
        STUDY,
        name="small_batch_tiny",
        params={
            "sweep/small_batch_norm": "batch,group",
            "per_device.images": "32,2",
            "seed": "0,1",
        },
        overrides=tiny_run(data=DATA),
        phases=(TEST, dataclasses.replace(BN_STATS, grid={**BN_STATS.grid, "samples": "128"})),
        variants={},
        results="results/small_batch_tiny",
    )
)


@pytest.mark.slow
def test_the_declared_study_trains_evaluates_and_reports(tmp_path):
    make_idx_dataset(tmp_path / "data" / "fashion_mnist", n_train=400, n_val=200)
    done = study_cli(tmp_path, "tests.test_small_batch_study", "run", "small_batch_tiny", "jobs=2")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = tmp_path / "results" / "small_batch_tiny"
    pts = pd.read_csv(out / "small_batch_points.csv")
    assert len(pts) == 8 and pts["test_error"].notna().all()  # the test phase on every run
    evals = pd.concat(pd.read_csv(tmp_path / run / "evals.csv") for run in pts["run"])
    test = evals[evals["data"] == "fashion_mnist[val_split=test]"]
    assert len(test) == 8 and (test["num_samples"] == 200).all()  # the generated test split
    stats = pd.read_csv(out / "bn_stats.csv")  # the bn_stats phase on the BN runs only
    assert set(stats["norm"]) == {"batch"} and len(stats) == 4
    assert stats[["running", "precise", "batch"]].notna().all().all()
    claims = pd.read_csv(out / "claims.csv")
    assert claims["key"].tolist()[:2] == ["bn_rise", "gn_flat"]
    assert claims.set_index("key").loc["bn_rise", "verdict"].split()[0] in ("not", "suggestive")
    readme = (out / "README.md").read_text()
    assert "normbench study run small_batch_tiny jobs=2" in readme and "## Claims" in readme
