"""The inference-batch report and claims on run directories made by hand: evals.csv rows with
made-up errors, built so that every claim holds on one fixture and fails on another; the folded-BN
claim on hand-made benchmark CSVs. Expected numbers are computed here from the same made-up
errors, with the shared verdict functions."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
import yaml

from normbench.report.collect import collect
from normbench.report.verdicts import (
    BY_CONSTRUCTION,
    NOT_SHOWN,
    OPPOSITE,
    SHOWN,
    paired,
    read_claims,
)
from normbench.studies.inference_batch import STUDY
from normbench.studies.inference_batch.claims import Setting, folded_free
from normbench.studies.inference_batch.points import BATCHES
from normbench.studies.report import write_report

SEEDS = [0, 1, 2]
NORMS = {"batch": True, "batch_renorm": True, "group": False, "layer": False, "frn": False}
HEADER = ["mode", "samples", "batch_size", "prior", "steps", "lr", "data", "corruption"]
HEADER += ["severity", "error", "nll", "ece", "status", "applied", "note", "step", "num_samples"]
UNDEFINED_NOTE = "hidden.0.norm: batch statistics are undefined: BatchNorm gets 1 value per channel"
Spec = Callable[[str, str, int, int], float | None]  # (norm, mode, b, seed) -> error % or None


def base(norm: str, seed: int) -> float:
    return {"batch": 10.0, "batch_renorm": 10.5, "group": 12.0, "layer": 13.0, "frn": 12.5}[
        norm
    ] + 0.4 * seed


def wiggle(seed: int, b: int) -> float:
    """A small difference between b, different per seed, in [-0.05, 0.05]."""
    return 0.05 * ((seed + b) % 3 - 1)


def good(norm: str, mode: str, b: int, seed: int) -> float | None:
    """Eval mode flat in b; test-batch statistics worse as b falls (BN, BRN)."""
    if mode == "running" or not NORMS[norm]:
        return base(norm, seed) + wiggle(seed, b)
    return base(norm, seed) + 30.0 / b + 0.1 * seed / b + wiggle(seed, b)


def bad(norm: str, mode: str, b: int, seed: int) -> float | None:
    """Eval mode moves with b (BN, GN); test-batch statistics better at small b."""
    if mode == "running":
        return (
            base(norm, seed) + (8.0 + seed) / b if norm in ("batch", "group") else base(norm, seed)
        )
    if not NORMS[norm]:
        return base(norm, seed) + (8.0 + seed) / b if norm == "group" else base(norm, seed)
    return base(norm, seed) - 3.0 / b - 0.2 * seed / b


def mlp(norm: str, mode: str, b: int, seed: int) -> float | None:
    """As ``good``, but test-batch statistics undefined at b = 1 (one value per channel)."""
    if mode == "batch" and NORMS[norm] and b == 1:
        return None
    return good(norm, mode, b, seed)


def eval_rows(norm: str, seed: int, spec: Spec) -> list[dict]:
    rows = []
    dependent = NORMS[norm]
    grids = [("running", b) for b in BATCHES]
    grids += [("batch", b) for b in (BATCHES if dependent else (1,))]
    for mode, b in grids:
        error = spec(norm, mode, b, seed)
        if mode == "batch" and not dependent:  # not applied: eval gives the running result
            error = spec(norm, "running", 1, seed)
        row = {"mode": mode, "batch_size": b, "data": "fashion_mnist", "corruption": "none"}
        row.update(step=1000, num_samples=1000, applied="true")
        if mode == "batch" and not dependent:
            row.update(
                applied="false",
                note=f"not applied: norm={norm} does not normalize with batch statistics",
            )
        if error is None:
            row.update(status="undefined", note=UNDEFINED_NOTE)
        else:
            row.update(status="ok", error=error / 100, nll=0.5, ece=0.05)
        rows.append(row)
    return rows


def make_run(root: Path, norm: str, seed: int, spec: Spec) -> Path:
    """A complete run directory as `normbench study run inference_batch` leaves it."""
    run = root / f"seed={seed},sweep_inference_batch_norm={norm}"
    (run / ".hydra").mkdir(parents=True)
    config = {
        "name": "inference_batch",
        "seed": seed,
        "norm": {"name": norm},
        "model": {"name": "resnet50", "width": 0.125, "stem": "cifar"},
        "dataset": {"name": "fashion_mnist", "val_split": "holdout", "holdout_size": 1000},
        "optim": {"name": "sgd", "lr": 0.025},
    }
    config["dataset"]["batch_size"] = 64
    (run / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    overrides = ["experiment=inference_batch", f"sweep/inference_batch_norm={norm}", f"seed={seed}"]
    (run / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    summary = {
        "status": "complete",
        "norm_batch_dependent": NORMS[norm],
        "num_classes": 10,
        "final": {"val_error": 0.1},
        "step": 1000,
        "steps": 1000,
        "wall_time_s": 60.0,
        "finished_at": "2026-12-06T10:00:00+00:00",
        "environment": {"device": "cpu", "device_name": "test CPU", "threads": 1, "git": "abc"},
    }
    (run / "summary.json").write_text(json.dumps(summary))
    (run / "metrics.csv").write_text("step,val_error\n500,0.2\n1000,0.1\n")
    with open(run / "evals.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=HEADER, restval="")
        writer.writeheader()
        writer.writerows(eval_rows(norm, seed, spec))
    return run


def report(tmp_path: Path, spec: Spec, norms=tuple(NORMS)) -> tuple[str, dict, pd.DataFrame]:
    root = tmp_path / "runs" / "inference_batch"
    for norm in norms:
        for seed in SEEDS:
            make_run(root, norm, seed, spec)
    out = tmp_path / "out"
    write_report(
        STUDY, None, collect([root]), [str(root)], out, "normbench study run inference_batch"
    )
    claims = {c.key: c for c in read_claims(out / "claims.csv")}
    return (out / "README.md").read_text(), claims, pd.read_csv(out / "inference_batch_points.csv")


def diff(spec: Spec, norm: str, mode: str, a: int, b: int) -> str:
    """err(b) − err(a) paired by seed, as the claims print it."""
    return paired(
        {s: spec(norm, mode, a, s) for s in SEEDS}, {s: spec(norm, mode, b, s) for s in SEEDS}
    ).text()


@pytest.fixture(autouse=True)
def no_bench(tmp_path, monkeypatch):
    """Reports run where there is no results/bench/inference-cpu.csv."""
    monkeypatch.chdir(tmp_path)


def test_every_claim_holds_on_the_good_fixture(tmp_path):
    readme, claims, pts = report(tmp_path, good)
    assert len(pts) == 5 * 3 * len(BATCHES) + 2 * 3 * len(BATCHES) + 3 * 3
    assert claims["eval_flat"].verdict == f"{SHOWN} (all 16 comparisons)"  # BN and BRN x 8 b
    assert claims["batch_free_flat"].verdict == f"{SHOWN} (all 24 comparisons)"  # GN, LN, FRN
    assert claims["batch_degrades"].verdict == SHOWN
    assert f"b = 1: {diff(good, 'batch', 'batch', 256, 1)}" in claims["batch_degrades"].ours
    assert "err(1) − err(256) > 0" in claims["batch_degrades"].rule
    assert claims["folded_free"].verdict.startswith("not measured")
    # the b = 1 table: BN differs (shown), GN/LN/FRN are the same function by construction
    table = readme.split("## At b = 1")[1].split("## Claims")[0]
    assert table.count("yes, by construction") == 3 and "measured: the same error" in table
    bn_row = next(line for line in table.splitlines() if line.startswith("| BN |"))
    assert f"no: test-batch − eval mode > 0 {SHOWN}" in bn_row
    running_b1 = {s: good("batch", "running", 1, s) for s in SEEDS}
    assert paired(running_b1, {s: good("batch", "batch", 1, s) for s in SEEDS}).text() in bn_row


def test_every_claim_fails_on_the_bad_fixture(tmp_path):
    readme, claims, _ = report(tmp_path, bad)
    eval_flat = claims["eval_flat"].verdict
    assert eval_flat.startswith(NOT_SHOWN) and "BN b = 1" in eval_flat and "BRN" not in eval_flat
    free = claims["batch_free_flat"].verdict
    assert free.startswith(NOT_SHOWN) and "GN b = 1" in free and "(of the other" in free
    assert claims["batch_degrades"].verdict == OPPOSITE
    assert f"b = 1: {diff(bad, 'batch', 'batch', 256, 1)}" in claims["batch_degrades"].ours


def test_an_undefined_batch_of_one_is_reported_and_the_claim_judged_at_two(tmp_path):
    readme, claims, pts = report(tmp_path, mlp, norms=("batch", "group"))
    bn1 = pts[(pts["norm"] == "batch") & (pts["mode"] == "batch") & (pts["b"] == 1)]
    assert set(bn1["status"]) == {"undefined"} and bn1["error"].isna().all()
    c = claims["batch_degrades"]
    assert c.verdict == SHOWN and "err(2) − err(256) > 0" in c.rule
    assert "b = 1: undefined in 3 of 3 seeds" in c.ours and UNDEFINED_NOTE in c.ours
    assert f"b = 2: {diff(mlp, 'batch', 'batch', 256, 2)}" in c.ours
    assert "| BN | test-batch statistics | undefined |" in readme
    assert "no: training-mode BN is undefined at b = 1" in readme


def bench_csv(path: Path, folded_ratio: float, left: int) -> Path:
    rows = [
        {
            "case": "none",
            "batch": 1,
            "ms_per_image": 1.0,
            "ratio_to_none": 1.0,
            "norm_layers_left": 0,
        },
        {
            "case": "none+fx",
            "batch": 1,
            "ms_per_image": 0.8,
            "ratio_to_none": 0.8,
            "norm_layers_left": 0,
        },
        {
            "case": "batch",
            "batch": 1,
            "ms_per_image": 1.3,
            "ratio_to_none": 1.3,
            "norm_layers_left": 0,
        },
        {
            "case": "batch+folded",
            "batch": 1,
            "ms_per_image": 0.8 * folded_ratio,  # folded_ratio: to the none+fx floor
            "ratio_to_none": 0.8 * folded_ratio,
            "norm_layers_left": left,
        },
        {
            "case": "batch+folded",
            "batch": 8,
            "ms_per_image": 9.0,
            "ratio_to_none": 9.0,
            "norm_layers_left": 0,
        },
    ]
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=[*rows[0], "date", "model"], restval="")
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.mark.parametrize(
    ("ratio", "left", "outcome", "text"),
    [
        (1.02, 0, BY_CONSTRUCTION, "x1.020 of the no-norm fx graph"),
        (1.02, 3, NOT_SHOWN, "3 BN layer(s) left unfolded"),
        (1.20, 0, NOT_SHOWN, "measured x1.200"),  # x0.96 of the nested model: not the floor
    ],
)
def test_folded_bn_is_judged_from_the_bench_csv(tmp_path, ratio, left, outcome, text):
    c = folded_free(Setting("test", 1000), bench_csv(tmp_path / "inference-cpu.csv", ratio, left))
    assert c.outcome == outcome and text in c.verdict
    assert f"x{ratio:.3f} of no norm as an fx graph (x{0.8 * ratio:.3f} of the nested" in c.ours
    assert "BN not folded x1.300" in c.ours


def test_folded_bn_not_measured_without_the_fx_floor(tmp_path):
    path = bench_csv(tmp_path / "inference-cpu.csv", 1.0, 0)
    rows = [r for r in csv.DictReader(path.open()) if r["case"] != "none+fx"]
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    c = folded_free(Setting("test", 1000), path)
    assert c.verdict.startswith("not measured") and "no none+fx row" in c.verdict


def test_folded_bn_not_measured_without_the_bench_csv(tmp_path):
    c = folded_free(Setting("test", 1000), tmp_path / "missing.csv")
    assert c.verdict.startswith("not measured") and "normbench bench inference" in c.verdict
