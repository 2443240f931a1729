"""The non-i.i.d. report and claims on run directories made by hand: evals.csv rows with made-up
errors, built so that every claim holds on one fixture and fails on another. Expected numbers
are computed here from the same made-up errors, with the shared verdict functions."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pandas as pd
import yaml

from normbench.report.collect import collect
from normbench.report.verdicts import NOT_SHOWN, OPPOSITE, SHOWN, paired, read_claims
from normbench.studies.non_iid import STUDY
from normbench.studies.report import write_report

SEEDS = [0, 1, 2]
DEPENDENT = {"batch": True, "batch_renorm": True, "group": False}
HEADER = ["mode", "samples", "batch_size", "prior", "steps", "lr", "data", "corruption"]
HEADER += ["severity", "error", "nll", "ece", "status", "applied", "note", "step", "num_samples"]
TEST = "fashion_mnist[val_split=test]"

#: (norm, i.i.d.?) -> (running error %, test-batch error %) before the per-seed terms
GOOD = {
    ("batch", True): (10.0, 10.6),
    ("batch", False): (25.0, 13.0),  # a 15-point loss, 12 of it recovered by test batches
    ("batch_renorm", True): (10.2, 10.8),
    ("batch_renorm", False): (11.0, 14.0),  # most of BN's loss recovered
    ("group", True): (12.0, None),
    ("group", False): (12.3, None),
}
BAD = {
    **GOOD,
    ("batch", False): (24.0, 30.0),  # test-batch statistics worse than the moving averages
    ("batch_renorm", False): (23.0, 25.0),  # recovers a tenth of BN's loss
}
NO_LOSS = {**GOOD, ("batch", False): (10.1, 9.0)}  # BN loses nothing: nothing to recover


def error(spec: dict, norm: str, iid: bool, column: int, seed: int) -> float | None:
    value = spec[(norm, iid)][column]
    if value is None:
        return None
    return value + 0.4 * seed + 0.1 * ((seed + column + len(norm) + iid) % 3)


def make_run(root: Path, norm: str, iid: bool, seed: int, spec: dict) -> Path:
    classes = "null" if iid else "2"
    run = root / f"batching.classes={classes},seed={seed},sweep_non_iid_norm={norm}"
    (run / ".hydra").mkdir(parents=True)
    config = {
        "name": "non_iid",
        "seed": seed,
        "norm": {"name": norm},
        "model": {"name": "resnet50", "width": 0.125, "stem": "cifar"},
        "dataset": {"name": "fashion_mnist", "batch_size": 32, "val_split": "holdout"},
        "batching": {"classes": None if iid else 2},
        "optim": {"name": "sgd", "lr": 0.0125},
    }
    (run / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    overrides = [f"sweep/non_iid_norm={norm}", f"batching.classes={classes}", f"seed={seed}"]
    (run / ".hydra" / "overrides.yaml").write_text(
        yaml.safe_dump(["experiment=non_iid", *overrides])
    )
    summary = {
        "status": "complete",
        "norm_batch_dependent": DEPENDENT[norm],
        "num_classes": 10,
        "final": {"val_error": 0.1},
        "step": 1500,
        "steps": 1500,
        "wall_time_s": 60.0,
        "finished_at": "2026-12-06T10:00:00+00:00",
        "environment": {"device": "cpu", "device_name": "test CPU", "threads": 1, "git": "abc"},
    }
    (run / "summary.json").write_text(json.dumps(summary))
    (run / "metrics.csv").write_text("step,val_error\n750,0.2\n1500,0.1\n")
    common = {
        "data": TEST,
        "corruption": "none",
        "status": "ok",
        "step": 1500,
        "num_samples": 10000,
    }
    rows = [{**common, "mode": "running", "error": error(spec, norm, iid, 0, seed) / 100}]
    if DEPENDENT[norm]:
        rows.append(
            {
                **common,
                "mode": "batch",
                "batch_size": 32,
                "error": error(spec, norm, iid, 1, seed) / 100,
            }
        )
    rows.append({**common, "mode": "running", "data": "fashion_mnist", "error": 0.5})  # held-out
    with open(run / "evals.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=HEADER, restval="")
        writer.writeheader()
        writer.writerows(rows)
    return run


def report(tmp_path: Path, spec: dict) -> tuple[str, dict, pd.DataFrame]:
    root = tmp_path / "runs" / "non_iid"
    for norm, iid in spec:
        for seed in SEEDS:
            make_run(root, norm, iid, seed, spec)
    out = tmp_path / "out"
    write_report(STUDY, None, collect([root]), [str(root)], out, "normbench study run non_iid")
    claims = {c.key: c for c in read_claims(out / "claims.csv")}
    return (out / "README.md").read_text(), claims, pd.read_csv(out / "non_iid_points.csv")


def seeds(spec: dict, norm: str, iid: bool, column: int = 0) -> dict[int, float]:
    return {s: error(spec, norm, iid, column, s) for s in SEEDS}


def test_every_claim_holds_on_the_good_fixture(tmp_path):
    readme, claims, pts = report(tmp_path, GOOD)
    assert len(pts) == 18 and pts["test_batch"].notna().sum() == 12  # BN and BRN runs
    loss = paired(seeds(GOOD, "batch", True), seeds(GOOD, "batch", False))
    assert claims["bn_degrades"].verdict == SHOWN and loss.text() in claims["bn_degrades"].ours
    c = claims["test_batch_recovers"]
    assert c.verdict == f"{SHOWN} (all 2 comparisons)"
    gain = paired(seeds(GOOD, "batch", False, 1), seeds(GOOD, "batch", False))
    assert f"{gain.text()}, {100 * gain.mean / loss.mean:.0f}% of BN's loss" in c.ours
    c = claims["brn_recovers_most"]
    assert c.verdict == f"{SHOWN} (all 2 comparisons)"
    brn_gain = paired(seeds(GOOD, "batch_renorm", False), seeds(GOOD, "batch", False))
    assert f"{100 * brn_gain.mean / loss.mean:.0f}% of BN's loss" in c.ours
    gn = paired(seeds(GOOD, "group", True), seeds(GOOD, "group", False))
    assert f"difference, {gn.text()}, is the effect of the batching" in readme
    assert "| 78.3 | about the same |" in readme  # the paper's table, from docs/papers.md §3.2


def test_the_claims_fail_on_the_bad_fixture(tmp_path):
    _, claims, _ = report(tmp_path, BAD)
    assert claims["bn_degrades"].verdict == SHOWN  # the loss is there ...
    c = claims["test_batch_recovers"]  # ... but test batches make it worse
    assert c.verdict.startswith(OPPOSITE) and "recovers some: opposite" in c.verdict
    c = claims["brn_recovers_most"]  # ... and BRN wins back a tenth of it
    assert c.verdict.startswith(OPPOSITE) and "BRN below the midpoint: opposite" in c.verdict


def test_without_a_loss_there_is_nothing_to_recover(tmp_path):
    _, claims, _ = report(tmp_path, NO_LOSS)
    assert claims["bn_degrades"].verdict.startswith(NOT_SHOWN)
    assert "no share of it is given" in claims["test_batch_recovers"].ours
    c = claims["brn_recovers_most"]
    assert c.verdict.startswith(NOT_SHOWN) and "there is no loss to recover" in c.verdict
