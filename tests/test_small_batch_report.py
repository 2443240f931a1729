"""The small-batch study's report on run directories made by hand, laid out as the trainer and
``normbench eval`` lay them out: claims from the test-split rows of evals.csv, the bn_stats table
from the phase's rows, the scale table's resolved schedule and per-N ranges, runs of another
setting left out, and the verdicts of the study's other settings set beside these."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pandas as pd
import yaml

from normbench.evaluation.records import COLUMNS
from normbench.report.verdicts import Claim, write_claims
from tests.test_small_batch import KEYS

MILESTONES = ["${nb_step_at:${trainer.steps},0.5}", "${nb_step_at:${trainer.steps},0.75}"]
BASE_STEPS, BASE_BATCH, BASE_LR = 250, 64, 0.025


def make_sb_run(
    root: Path,
    norm: str,
    n: int,
    seed: int,
    test: float,
    *,
    name: str = "small_batch",
    mode: str = "ghost",
    val: float | None = None,
    precise: float | None = None,
) -> Path:
    """One run directory of the small-batch study: config (step counts written relative to the
    run length, as the experiment does), summary.json, metrics.csv and evals.csv (the test
    phase's row, and the bn_stats phase's rows for BN-type norms). Errors in %."""
    devices = 2 if mode in ("real", "ddp") else BASE_BATCH // n
    batch = 2 * n if mode in ("real", "ddp") else BASE_BATCH
    steps = BASE_STEPS * BASE_BATCH // batch
    overrides = [f"sweep/small_batch_norm={norm}", f"per_device.images={n}", f"seed={seed}"]
    if mode != "ghost":
        overrides[:0] = [f"per_device.mode={mode}", "per_device.devices=2"]
    run = root / name / ",".join([*overrides, f"n={name}"]).replace("/", "_")
    (run / ".hydra").mkdir(parents=True)
    norm_cfg = {"name": norm, "num_groups": 4} if norm == "group" else {"name": norm}
    config = {
        "name": name,
        "seed": seed,
        "norm": norm_cfg,
        "per_device": {"images": n, "mode": mode, "devices": 2 if mode != "ghost" else 1},
        "dataset": {
            "name": "fashion_mnist",
            "batch_size": BASE_BATCH,
            "val_split": "holdout",
            "holdout_size": 1000,
            "standardize": True,
            "augment": False,
        },
        "model": {"name": "resnet50", "width": 0.125, "stem": "cifar", "zero_init_last_norm": True},
        "optim": {
            "lr": BASE_LR,
            "momentum": 0.9,
            "weight_decay": 1e-4,
            "schedule": "step",
            "milestones": MILESTONES,
            "gamma": 0.1,
        },
        "trainer": {"steps": BASE_STEPS, "eval_every": 25},
    }
    (run / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    (run / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    dependent = norm not in ("group", "layer", "instance")
    val = test if val is None else val
    summary = {
        "status": "complete",
        "step": steps,
        "steps": steps,
        "final": {"val_error": val / 100},
        "num_classes": 10,
        "norm": norm,
        "norm_batch_dependent": dependent,
        "per_device": {
            "images": n,
            "mode": mode,
            "batch_size": batch,
            "devices": devices,
            "lr": BASE_LR * batch / BASE_BATCH,
            "steps": steps,
        },
        "distributed": {"world_size": 2 if mode == "ddp" else 1, "backend": "gloo"},
        "num_params": 375618,
        "wall_time_s": 60.0,
        "started_at": "2026-12-01T10:00:00+00:00",
        "finished_at": "2026-12-01T10:01:00+00:00",
        "environment": {"device": "cpu", "device_name": "test CPU", "threads": 1, "git": "abc"},
    }
    (run / "summary.json").write_text(json.dumps(summary))
    evals = [steps * k // 5 for k in range(6)]
    pd.DataFrame(
        {
            "step": evals,
            "epoch": [s * batch / 59000 for s in evals],
            "val_error": [0.9, *[val / 100] * 5],
        }
    ).to_csv(run / "metrics.csv", index=False)
    rows = [("running", {"data": "fashion_mnist[val_split=test]"}, test)]
    if dependent:
        p = val if precise is None else precise
        rows += [
            ("running", {"data": "fashion_mnist"}, val),
            ("precise", {"data": "fashion_mnist", "samples": 9984}, p),
            ("batch", {"data": "fashion_mnist", "batch_size": batch}, val + 5),
        ]
    with (run / "evals.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        for mode_, keys, error in rows:
            writer.writerow(
                {
                    "mode": mode_,
                    "corruption": "none",
                    "status": "ok",
                    "error": error / 100,
                    "step": steps,
                    "evaluated_at": "2026-12-01T11:00:00+00:00",
                    **keys,
                }
            )
    return run


BN = {32: (24.0, 24.4, 23.8), 2: (30.0, 30.6, 29.9)}  # BN rises by ~6 at N = 2 in every seed
GN = {32: (25.0, 25.3, 24.9), 2: (25.0, 25.3, 24.9)}


def _claims(path: Path) -> dict[str, dict]:
    return {row["key"]: row for row in csv.DictReader(path.open())}


def test_report_of_the_main_setting(run_cli, tmp_path):
    runs = tmp_path / "runs"
    for norm, by_n in (("batch", BN), ("group", GN)):
        for n, errors in by_n.items():
            for seed, e in enumerate(errors):
                make_sb_run(runs, norm, n, seed, e, val=e + 1, precise=e + 0.5)
    stray = make_sb_run(runs, "batch", 8, 0, 50.0, mode="real")  # another setting's run
    long_claim = Claim(
        "small_batch_long", "bn_rise", "c", "s", "p", "+3.1", "r", "not shown (x)", "2.2 epochs"
    )
    (tmp_path / "results" / "small_batch_long").mkdir(parents=True)
    write_claims([long_claim], tmp_path / "results" / "small_batch_long")
    code, out, err = run_cli("report", "runs/small_batch", "--out", "rep")
    assert code == 0, out + err
    rep = tmp_path / "rep"
    readme = (rep / "README.md").read_text()
    claims = _claims(rep / "claims.csv")
    assert tuple(claims) == KEYS
    assert claims["bn_rise"]["verdict"].startswith("shown") and claims["bn_rise"]["study"] == "rep"
    assert "+6.10 ±" in claims["bn_rise"]["ours"]  # the test errors' difference, not the val one
    assert claims["gn_flat"]["verdict"].startswith("by construction")
    assert claims["gn_wins_small"]["verdict"].startswith("shown")
    assert (
        "the batch (64 images per step) and the steps (250) fixed"
        in claims["gn_wins_small"]["claim"]
    )
    assert claims["ln_in"]["verdict"].startswith("not enough runs")
    # tables: val (paper-like, 1 point above test here) and test error
    assert "| BN, ours | 25.07 ± 0.31 | 31.17 ± 0.38 |" in readme
    assert "| BN, ours | 24.07 ± 0.31 | 30.17 ± 0.38 |" in readme
    # bn_stats table from the phase's evals.csv rows: running, precise, batch (held-out images)
    assert "| BN | 32 | 3 | 25.1 | 24.6 | 30.1 |" in readme
    assert pd.read_csv(rep / "bn_stats.csv")["precise_images"].eq(9984).all()
    # the schedule resolved from ${nb_step_at:...}, not printed as written
    assert "×0.1 at steps 125, 188" in readme and "nb_step_at" not in readme
    assert "claims on the 10,000-image test split" in readme
    # the other setting's verdict beside this one, and the difference said
    assert "results/small_batch_long" in readme and "not shown: +3.1" in readme
    assert "differs at another setting for 1 claim(s): bn_rise" in readme
    # the real-mode run recorded name=small_batch but is another setting: listed, not used
    assert f"- {stray.relative_to(tmp_path)} (name=small_batch, per_device.mode=real)" in readme
    assert "50.0" not in (rep / "small_batch_points.csv").read_text()
    assert (
        "## Claims" in readme
        and "Verdict rule" in readme
        and "normbench report runs/small_batch" in readme
    )


def test_report_of_the_real_setting_shows_each_ns_lr_steps_and_schedule(run_cli, tmp_path):
    for norm, by_n in (("batch", BN), ("group", {32: GN[32], 2: (21.0, 21.2, 20.9)})):
        for n, errors in by_n.items():
            for seed, e in enumerate(errors):
                make_sb_run(
                    tmp_path / "runs", norm, n, seed, e, name="small_batch_real", mode="real"
                )
    code, out, err = run_cli("report", "runs/small_batch_real", "--out", "rep")
    assert code == 0, out + err
    readme = (tmp_path / "rep" / "README.md").read_text()
    assert (
        "N = 32: batch 64, lr 0.025, 250 steps; N = 2: batch 4, lr 0.001563, 4,000 steps" in readme
    )
    assert "N = 32: ×0.1 at steps 125, 188; N = 2: ×0.1 at steps 2,000, 3,008" in readme
    claims = _claims(tmp_path / "rep" / "claims.csv")
    # GN measured at both N in real mode: an equivalence test, which GN's 4-point drop fails
    assert (
        claims["gn_flat"]["verdict"].startswith("not shown")
        and "leaves ±" in claims["gn_flat"]["verdict"]
    )
    held = "the epochs (0.27) fixed, not the steps: N = 32 trains 250 steps of 64 images, N = 2 4,000 steps of 4"
    assert held in claims["gn_wins_small"]["claim"]
    assert "GN's own change GN(2) − GN(32): -4.03" in claims["gn_wins_small"]["ours"]


def test_failed_runs_give_no_verdict_and_runs_at_chance_are_marked(run_cli, tmp_path):
    for n in (32, 2):
        for seed in range(3):
            run = make_sb_run(tmp_path / "runs", "batch", n, seed, 24.0 + n / 8)
            if n == 2:  # failed: listed, left out of every number
                summary = json.loads((run / "summary.json").read_text())
                (run / "summary.json").write_text(json.dumps({**summary, "status": "failed"}))
    chance = make_sb_run(tmp_path / "runs", "group", 32, 0, 90.0)
    code, out, err = run_cli("report", "runs/small_batch", "--out", "rep")
    assert code == 0, out + err
    readme = (tmp_path / "rep" / "README.md").read_text()
    claims = _claims(tmp_path / "rep" / "claims.csv")
    assert claims["bn_rise"]["verdict"].startswith(
        "not enough runs: needs BN runs at two or more N"
    )
    assert "| BN | 2 | 0 | failed | 250/250 | 60 |" in readme and "Runs not complete" in readme
    assert "| GN | 32 | 0 | complete ⚠ at chance level |" in readme
    assert f"⚠ at chance level: {chance.relative_to(tmp_path)}" in readme
