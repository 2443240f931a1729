"""The online report on run directories made by hand: test errors (evals.csv), training losses
(metrics.csv) and skipped batches (summary.json) with made-up numbers, built so that every claim
holds on one fixture and fails on another. Expected numbers are computed here from the same
made-up formulas."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from normbench.report.collect import collect
from normbench.report.verdicts import (
    BY_CONSTRUCTION,
    NOT_ENOUGH,
    NOT_SHOWN,
    OPPOSITE,
    SHOWN,
    estimate,
    read_claims,
)
from normbench.studies.online import STUDY
from normbench.studies.online.points import loss_spike
from normbench.studies.report import write_report

SEEDS = [0, 1, 2]
NORMS = {"batch": True, "batch_renorm": True, "group": False, "layer": False, "frn": False}
SETTINGS = {"fixed": (32, 32), "varying": (2, 64), "small": (2, 8), "with_one": (1, 8)}
BASE = {"batch": 11.0, "batch_renorm": 11.2, "group": 12.0, "layer": 12.5, "frn": 13.0}
TEST_DATA = "fashion_mnist[val_split=test]"
EVAL_HEADER = ["mode", "samples", "batch_size", "prior", "steps", "lr", "data", "corruption"]
EVAL_HEADER += ["severity", "error", "nll", "ece", "status", "applied", "note", "step"]
EVAL_HEADER += ["num_samples"]
STEPS = 1000

#: the change of each norm's test error (points) against the fixed batch, per setting
GOOD = {
    "batch": {"varying": 3.0, "small": 8.0, "with_one": 10.0},
    "batch_renorm": {"varying": 1.0, "small": 4.0, "with_one": 5.0},  # half of BN's loss back
    "group": {},  # flat
    "layer": {},
    "frn": {},
}
BAD = {
    "batch": {},  # BN does not rise
    "batch_renorm": {"small": 9.0, "with_one": 11.0},  # worse than BN
    "group": {"small": 2.0},  # GN suffers in the small stream
    "layer": {"varying": -2.0},  # LN gets better: not equal either
    "frn": {},  # flat on average, but its seeds scatter (below)
}
SCATTER = {"frn": 1.5}  # BAD: seed-dependent change of FRN's error, ± this many points


def wiggle(seed: int, norm: str, setting: str) -> float:
    """A small change per seed, cell and norm in [-0.04, 0.04]."""
    return 0.02 * (((seed * 7 + len(norm) * 3 + len(setting)) % 5) - 2)


def made_error(spec: dict, norm: str, setting: str, seed: int) -> float:
    """Error (%): base + 0.4 · seed + the setting's change (+ scatter) + a wiggle."""
    change = spec[norm].get(setting, 0.0)
    if spec is BAD and setting != "fixed":
        change += SCATTER.get(norm, 0.0) * (seed - 1)
    return BASE[norm] + 0.4 * seed + change + wiggle(seed, norm, setting)


def losses(norm: str, setting: str, seed: int) -> list[float]:
    """The windowed training loss: falling, with one rise of 0.5 for BN in the small stream."""
    xs = [1.5 / (1 + k) + 0.01 * seed for k in range(12)]
    if norm == "batch" and setting in ("small", "with_one"):
        xs[6] += 0.5
    return xs


def skipped(norm: str, setting: str, spec: dict) -> int:
    if SETTINGS[setting][0] != 1:
        return 0
    if NORMS[norm]:
        return 125
    return 3 if spec is BAD and norm == "group" else 0


def write_csv(path: Path, rows: list[dict], header: list[str]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=header, restval="")
        writer.writeheader()
        writer.writerows(rows)


def make_run(root: Path, norm: str, setting: str, seed: int, spec: dict) -> Path:
    """A complete run directory as `normbench study run online` leaves it."""
    low, high = SETTINGS[setting]
    run = root / f"seed={seed},sweep_online_batching={setting},sweep_online_norm={norm}"
    (run / ".hydra").mkdir(parents=True)
    config = {
        "name": "online",
        "seed": seed,
        "norm": {"name": norm},
        "model": {"name": "mlp", "hidden": [100, 100, 100], "activation": "sigmoid"},
        "dataset": {"name": "fashion_mnist", "batch_size": 32, "val_split": "holdout"},
        "batching": {"sizes": [low, high], "lr_scaling": "linear"},
        "optim": {"lr": 0.5},
    }
    (run / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    overrides = [f"sweep/online_norm={norm}", f"sweep/online_batching={setting}", f"seed={seed}"]
    (run / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    summary = {
        "status": "complete",
        "step": STEPS,
        "steps": STEPS,
        "norm_batch_dependent": NORMS[norm],
        "num_classes": 10,
        "final": {"val_error": 0.12},
        "batching": {
            "sizes": [low, high],
            "lr_scaling": "linear",
            "images": 32000 - 20 * skipped(norm, setting, spec),
            "skipped_batches": skipped(norm, setting, spec),
        },
        "wall_time_s": 60.0,
        "finished_at": "2026-12-06T10:00:00+00:00",
        "environment": {"device": "cpu", "device_name": "test CPU", "threads": 1, "git": "abc"},
    }
    (run / "summary.json").write_text(json.dumps(summary))
    rows = [{"step": 0, "epoch": 0.0, "train_loss": "", "val_error": 0.9}]
    rows += [
        {"step": 80 * (k + 1), "epoch": 0.05 * (k + 1), "train_loss": x, "val_error": 0.2}
        for k, x in enumerate(losses(norm, setting, seed))
    ]
    write_csv(run / "metrics.csv", rows, ["step", "epoch", "train_loss", "val_error"])
    error = made_error(spec, norm, setting, seed) / 100
    test = {"mode": "running", "data": TEST_DATA, "corruption": "none", "status": "ok"}
    test.update(error=error, nll=0.4, ece=0.01, step=STEPS, num_samples=10000)
    write_csv(run / "evals.csv", [test], EVAL_HEADER)
    return run


def make_runs(root: Path, spec: dict, settings: tuple[str, ...] = tuple(SETTINGS)) -> Path:
    for norm in NORMS:
        for setting in settings:
            for seed in SEEDS:
                make_run(root, norm, setting, seed, spec)
    return root


def report(root: Path, out: Path) -> tuple[str, dict[str, pd.DataFrame], dict]:
    """README, tables and {claim key: claim} of the study's report on the runs under root."""
    write_report(STUDY, None, collect([root]), [str(root)], out, "normbench study run online")
    tables = {p.stem: pd.read_csv(p) for p in out.glob("*.csv") if p.stat().st_size > 1}
    return (
        (out / "README.md").read_text(),
        tables,
        {c.key: c for c in read_claims(out / "claims.csv")},
    )


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("good")
    return report(make_runs(tmp / "runs" / "online", GOOD), tmp / "out")


@pytest.fixture(scope="module")
def bad(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bad")
    return report(make_runs(tmp / "runs" / "online", BAD), tmp / "out")


KEYS = ["bn_varying", "bn_small", "bn_with_one", "gn_flat", "ln_flat", "frn_flat", "brn_small"]


def change(spec: dict, norm: str, setting: str):
    """The paired change against the fixed batch, as the claims compute it."""
    return estimate(
        made_error(spec, norm, setting, s) - made_error(spec, norm, "fixed", s) for s in SEEDS
    )


def test_every_claim_holds_on_the_good_fixture(good):
    readme, tables, claims = good
    assert list(claims) == [*KEYS, "batch_one"]
    for key in KEYS:
        assert claims[key].outcome == SHOWN, (key, claims[key].verdict, claims[key].ours)
    assert claims["batch_one"].outcome == BY_CONSTRUCTION
    for setting in ("varying", "small", "with_one"):
        d = change(GOOD, "batch", setting)
        assert d.text() in claims[f"bn_{setting}"].ours
        assert change(GOOD, "group", setting).text() in claims["gn_flat"].ours
    assert "BN 375 of 3,000" in claims["batch_one"].ours  # 125 per seed
    assert "GN 0 of 3,000" in claims["batch_one"].ours


def test_every_claim_fails_on_the_bad_fixture(bad):
    readme, tables, claims = bad
    for key in ("bn_varying", "bn_small", "bn_with_one"):  # BN does not rise: the interval holds 0
        assert claims[key].outcome == NOT_SHOWN, (key, claims[key].verdict)
    for key in ("gn_flat", "ln_flat", "frn_flat"):
        assert claims[key].outcome == NOT_SHOWN, (key, claims[key].verdict)
    assert "[2, 8]: not shown" in claims["gn_flat"].verdict  # GN suffers in the small stream
    assert "[2, 64]: not shown" in claims["ln_flat"].verdict  # LN gets better: not equal
    frn = change(BAD, "frn", "small")
    assert abs(frn.mean) < 0.1 and frn.high > 0.65  # flat on average, too scattered to show
    assert claims["brn_small"].outcome == OPPOSITE  # BRN worse than BN, not better
    assert claims["batch_one"].outcome == NOT_SHOWN  # a batch-independent run skipped a batch


def test_the_tables_hold_the_made_up_numbers(good):
    readme, tables, claims = good
    errors = tables["online_errors"].set_index("norm")
    values = [made_error(GOOD, "layer", "small", s) for s in SEEDS]
    mean, sd = sum(values) / 3, pd.Series(values).std()
    assert errors.loc["LN", "[2, 8]"] == f"{mean:.2f} ± {sd:.2f} (3)"
    assert list(errors.columns) == ["fixed 32", "[2, 64]", "[2, 8]", "[1, 8]"]  # reference first
    stability = tables["online_stability"].set_index(["norm", "setting"])
    spikes = [loss_spike(losses("batch", "small", s)) for s in SEEDS]
    assert stability.loc[("BN", "[2, 8]"), "worst seed"] == pytest.approx(max(spikes), abs=1e-3)
    assert "## Skipped batches" in readme and "## Training stability" in readme
    assert "normbench study run online" in readme


def test_loss_spike_is_the_largest_rise_above_an_earlier_low():
    xs = [2.0, 1.0, 1.5, 0.8, 1.6, 0.5, float("nan")]
    finite = xs[:-1]
    want = max(finite[k] - min(finite[:k]) for k in range(1, len(finite)))
    assert loss_spike(xs) == pytest.approx(want) == pytest.approx(0.8)
    assert loss_spike([3.0, 2.0, 1.0]) == 0.0  # never went back up
    assert loss_spike([float("nan")]) != loss_spike([float("nan")])  # nan: no window


def test_without_a_fixed_batch_or_enough_seeds_the_claims_say_what_is_missing(tmp_path):
    root = make_runs(tmp_path / "runs" / "online", GOOD, ("varying", "small"))
    _, _, claims = report(root, tmp_path / "out")
    assert all(claims[k].outcome == NOT_ENOUGH for k in ("bn_varying", "gn_flat", "brn_small"))
    assert "batch_one" not in claims  # no setting draws batches of one
    two = tmp_path / "two"
    for norm in NORMS:
        for setting in ("fixed", "small"):
            for seed in SEEDS[:2]:
                make_run(two, norm, setting, seed, GOOD)
    _, _, claims = report(two, tmp_path / "out2")
    assert claims["bn_small"].verdict.startswith("suggestive (n = 2)")
