"""The online declaration end to end through ``normbench study run``: its experiment (the MLP,
batching.sizes from the sweep/online_batching options), its ``test`` phase on generated
Fashion-MNIST files, and its report, on tiny runs (16 steps): BN and GN on the fixed batch and
on sizes [1, 8], 2 seeds. The batches of one image BN skips are counted from the sizes the
trainer draws (computed here with the trainer's own VariableBatches)."""

from __future__ import annotations

import dataclasses

import pandas as pd
import pytest
from omegaconf import OmegaConf

from normbench.engine.online import VariableBatches
from normbench.studies import register
from normbench.studies.online import STUDY
from tests.conftest import make_idx_dataset, study_cli, tiny_run

STEPS = 16

TINY = register(
    dataclasses.replace(
        STUDY,
        name="online_tiny",
        params={
            "sweep/online_norm": "batch,group",
            "sweep/online_batching": "fixed,with_one",
            "seed": "0,1",
        },
        overrides=tiny_run(STEPS, 4),
        variants={},
        results="results/online_tiny",
    )
)


def ones(seed: int) -> int:
    """Batches of one image among the steps of sizes [1, 8] (what BN skips), by the trainer's
    own draw."""
    cfg = OmegaConf.create(
        {
            "seed": seed,
            "dataset": {"batch_size": 32},
            "per_device": {"images": None},
            "batching": {"classes": None, "sizes": [1, 8], "lr_scaling": "linear"},
        }
    )
    sizes = VariableBatches(cfg, 1)
    return sum(sizes.size(t) == 1 for t in range(STEPS))


@pytest.mark.slow
def test_the_declared_study_trains_evaluates_and_reports(tmp_path):
    assert all(ones(seed) for seed in (0, 1))  # the draw holds a batch of one for each seed
    make_idx_dataset(tmp_path / "data" / "fashion_mnist", n_train=400, n_val=200)
    done = study_cli(tmp_path, "tests.test_online_study", "run", "online_tiny", "jobs=2")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = tmp_path / "results" / "online_tiny"
    pts = pd.read_csv(out / "online_points.csv")
    assert len(pts) == 8 and pts["test_error"].notna().all()  # the test phase on every run
    assert set(pts["setting"]) == {"fixed 32", "[1, 8]"}
    assert (pts["lr_scaling"] == "linear").all() and pts["spike"].notna().all()
    evals = pd.concat(pd.read_csv(tmp_path / run / "evals.csv") for run in pts["run"])
    test = evals[evals["data"] == "fashion_mnist[val_split=test]"]
    assert len(test) == 8 and (test["num_samples"] == 200).all()  # the generated test split
    skipped = pts.set_index(["norm", "setting", "seed"])["skipped"]
    for seed in (0, 1):
        assert skipped["batch", "[1, 8]", seed] == ones(seed)  # BN skips each batch of one
        assert skipped["group", "[1, 8]", seed] == 0  # GN trains on it
        assert skipped["batch", "fixed 32", seed] == 0
    claims = pd.read_csv(out / "claims.csv").set_index("key")
    assert list(claims.index) == [
        "bn_with_one",
        "gn_flat",
        "ln_flat",
        "frn_flat",
        "brn_small",
        "batch_one",
    ]
    # two seeds: at most suggestive; norms not run: not enough runs
    assert claims.loc["bn_with_one", "verdict"].split()[0] in ("not", "suggestive")
    assert claims.loc["ln_flat", "verdict"].startswith("not enough runs")
    assert claims.loc["batch_one", "verdict"].startswith("by construction")
    readme = (out / "README.md").read_text()
    assert "normbench study run online_tiny jobs=2" in readme and "## Claims" in readme
    assert "## Skipped batches" in readme and (out / "online.png").is_file()
