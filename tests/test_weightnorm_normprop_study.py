"""The weightnorm_normprop declaration: its grid, its claims on a fixture where the papers hold
and on its mirror (every claim must be able to fail), and a tiny end-to-end run of every
setting through ``normbench study run``."""

from __future__ import annotations

import csv
import dataclasses
import math
import statistics

import pandas as pd
import pytest

from normbench.bench.train_report import COLUMNS
from normbench.report.verdicts import BY_CONSTRUCTION, SHOWN
from normbench.studies import get_study, register
from normbench.studies.run import Selection
from normbench.studies.weightnorm_normprop import STUDY
from normbench.studies.weightnorm_normprop.claims import all_claims, cost_claim
from normbench.studies.weightnorm_normprop.points import CHANCE, LABEL, early_error
from tests.conftest import make_idx_dataset, study_cli, tiny_run

# (final error, early error, ms/step, status) of each setting where the papers hold; the mirror
# swaps what each claim compares.
PAPER = {
    "cp_none": (12.0, 30.0),
    "cp_batch": (10.5, 18.0),
    "cp_weight": (12.2, 20.0),
    "cp_weight_mobn": (9.0, 15.0),
    "cp_normprop": (10.6, 19.0),
    "cp_weight_noinit": (12.5, 28.0),
    "cp_weight_mobn_noinit": (9.5, 25.0),
    "cp_weight_log": (12.1, 20.0),
    "cp_weight_bound": (12.3, 20.0),
    "cp_weight_hilr": (20.0, 30.0),
    "cp_weight_log_hilr": (14.0, 22.0),
    "cp_weight_bound_hilr": (15.0, 23.0),
    "b1_none": (50.0, 70.0),
    "b1_batch": (math.nan, math.nan),  # refused
    "b1_weight": (45.0, 60.0),
    "b1_normprop": (40.0, 60.0),
    "rn_batch": (10.0, 20.0),
    "rn_weight": (30.0, 50.0),  # removing its zero-init or data init makes it diverge
    "rn_weight_lowlr": (20.0, 40.0),
    "rn_weight_warmup": (25.0, 45.0),
    "rn_weight_nozero": (CHANCE, CHANCE),
    "rn_weight_adam": (18.0, 40.0),
    "rn_weight_noinit": (CHANCE, CHANCE),
}
MIRROR = {
    **PAPER,
    "cp_none": (12.0, 15.0),  # WN slower early, and 5 points worse at the end
    "cp_weight": (17.0, 25.0),
    "cp_batch": (19.0, 18.0),  # BN worse than WN and mean-only BN
    "cp_weight_mobn": (21.0, 26.0),  # worse than both; its init hurts early (noinit faster)
    "cp_weight_mobn_noinit": (21.0, 20.0),
    "cp_normprop": (23.0, 19.0),  # far from BN
    "cp_weight_noinit": (17.0, 20.0),  # no init faster early
    "cp_weight_log": (22.0, 30.0),
    "cp_weight_bound": (22.0, 30.0),
    "cp_weight_log_hilr": (26.0, 32.0),  # worse than plain WN at lr x 10
    "cp_weight_bound_hilr": (26.0, 32.0),
    "b1_batch": (40.0, 60.0),  # BN trains at batch 1
    "b1_weight": (CHANCE, CHANCE),
    "b1_normprop": (CHANCE, CHANCE),
    "rn_batch": (30.0, 40.0),  # BN worse than every WN setting
    "rn_weight": (20.0, 40.0),  # and each remedy hurts
    "rn_weight_lowlr": (CHANCE, CHANCE),
    "rn_weight_warmup": (CHANCE, CHANCE),
    "rn_weight_nozero": (10.0, 30.0),
    "rn_weight_adam": (CHANCE, CHANCE),
    "rn_weight_noinit": (10.0, 30.0),
}


def fixture(table: dict, bn_ms: float, wn_ms: float) -> pd.DataFrame:
    rows = []
    for setting, (final, early) in table.items():
        for seed in range(3):
            refused = math.isnan(final)
            rows.append(
                {
                    "setting": setting,
                    "group": setting.split("_")[0],
                    "seed": seed,
                    "status": "failed" if refused else "complete",
                    "trained": not refused and final < CHANCE,
                    "test_error": final + 0.1 * seed,
                    "early_error": early + 0.1 * seed,
                    "images": 10000,
                    "ms_step": (bn_ms if setting == "cp_batch" else wn_ms) + 0.1 * seed,
                    "wall_s": 100.0,
                    "error": "ConfigError: norm=batch in training needs more than one value"
                    if refused
                    else "",
                }
            )
    return pd.DataFrame(rows)


def bench_csv(path, bn_ms: list[float], wn_ms: list[float]):
    """A bench train CSV with BN's and WN's per-repeat times in both modes, as the bench
    writes it (its own column list)."""
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        for mode in ("eager-fp32", "compiled-fp32"):
            for variant, ms in (("identity", wn_ms), ("batch", bn_ms), ("weight", wn_ms)):
                row = dict.fromkeys(COLUMNS, "")
                row.update(mode=mode, variant=variant, date="2026-12-07", command="bench x",
                           step_ms=statistics.median(ms), width=0.125, batch=100,
                           step_ms_repeats=" ".join(f"{m:.3f}" for m in ms))  # fmt: skip
                writer.writerow(row)
    return path


def test_every_claim_holds_on_the_paper_fixture_and_fails_on_its_mirror(tmp_path):
    slow = [100.0, 103.0, 101.0, 104.0, 102.0]
    fast = [90.0, 92.5, 91.0, 93.0, 91.5]
    paper = bench_csv(tmp_path / "paper.csv", slow, fast)
    good = {c.key: c.verdict for c in all_claims(fixture(PAPER, 12.0, 10.0), "fixture", paper)}
    assert len(good) == 22
    assert all(v.startswith((SHOWN, BY_CONSTRUCTION)) for v in good.values()), good
    mirror = bench_csv(tmp_path / "mirror.csv", fast, slow)
    bad = {c.key: c.verdict for c in all_claims(fixture(MIRROR, 10.0, 12.0), "fixture", mirror)}
    assert not [k for k, v in bad.items() if v.startswith((SHOWN, BY_CONSTRUCTION))], bad


def test_the_cost_claim_pairs_the_bench_repeats_and_says_when_it_has_none(tmp_path):
    # BN 2% slower in every repeat: under the 5% minimum ratio, so not shown
    near = bench_csv(tmp_path / "near.csv", [102.0, 104.0, 101.0], [100.0, 102.0, 99.0])
    claim = cost_claim(fixture(PAPER, 12.0, 10.0), "fixture", near)
    assert claim.verdict.startswith("not shown"), claim
    assert "n = 3 repeats" in claim.ours and "BN 102.0 ms, WN 100.0 ms" in claim.ours
    missing = cost_claim(fixture(PAPER, 12.0, 10.0), "fixture", tmp_path / "none.csv")
    assert missing.verdict.startswith("not measured") and "normbench bench train" in missing.verdict


def test_bn_at_batch_1_at_chance_is_shown_with_its_training_loss():
    table = {**PAPER, "b1_batch": (CHANCE, CHANCE)}
    pts = fixture(table, 12.0, 10.0)
    pts["train_loss"] = [2.3 if s == "b1_batch" else 0.5 for s in pts["setting"]]
    claim = {c.key: c for c in all_claims(pts, "fixture")}["bn_batch_1"]
    assert claim.verdict.startswith(SHOWN), claim
    assert "training loss over the last logged steps 2.3000" in claim.ours
    assert "ln 10 = 2.3026" in claim.ours
    trained = pts.copy()
    trained.loc[trained["setting"] == "b1_batch", "test_error"] = [30.0, 31.0, 32.0]
    claim = {c.key: c for c in all_claims(trained, "fixture")}["bn_batch_1"]
    assert not claim.verdict.startswith(SHOWN), claim


def test_early_error_is_the_first_evaluation_at_a_quarter_of_the_steps():
    metrics = pd.DataFrame(
        {"step": [0, 100, 250, 300, 1000], "val_error": [0.9, 0.5, 0.4, 0.3, 0.1]}
    )
    assert early_error(metrics, 1000) == pytest.approx(40.0)
    assert early_error(metrics, 1200) == pytest.approx(30.0)  # 300 is the first ≥ 300
    assert math.isnan(early_error(pd.DataFrame(columns=["step", "val_error"]), 1000))


def test_the_grid_is_every_setting_times_three_seeds():
    sel = Selection(get_study("weightnorm_normprop"), None, [])
    jobs = sel.grid.jobs()
    assert len(jobs) == 3 * len(LABEL) == 69
    assert {j["sweep/weightnorm_normprop_setting"] for j in jobs} == set(LABEL)


TINY = register(
    dataclasses.replace(
        STUDY,
        name="weightnorm_normprop_tiny",
        params={"seed": "0"},
        overrides=(
            *tiny_run(4, 2),
            "dataset.val_split=test",
            "probes.every=2",
            "probes.batch_size=32",
            "model.width=0.0625",
        ),
        results="results/weightnorm_normprop_tiny",
    )
)


@pytest.mark.slow
def test_every_setting_trains_and_reports(tmp_path):
    make_idx_dataset(tmp_path / "data" / "fashion_mnist", n_train=300, n_val=100)
    done = study_cli(
        tmp_path,
        "tests.test_weightnorm_normprop_study",
        "run",
        "weightnorm_normprop_tiny",
        "jobs=2",
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = tmp_path / "results" / "weightnorm_normprop_tiny"
    pts = pd.read_csv(out / "weightnorm_normprop_points.csv")
    assert sorted(pts["setting"]) == sorted(LABEL)
    # at this scale ResNet-50 with WN but without the zero-init may diverge: an outcome
    assert pts["status"].isin(["complete", "diverged"]).all(), pts[["setting", "status", "error"]]
    assert (pts[pts["status"] == "diverged"]["test_error"] == CHANCE).all()
    assert pts[pts["status"] == "complete"]["ms_step"].gt(0).all()
    curves = pd.read_csv(out / "weightnorm_normprop_curves.csv")
    assert set(curves["step"]) == {0, 2, 4} and curves["time_s"].notna().all()
    claims = pd.read_csv(out / "claims.csv")
    assert len(claims) == 22 and claims["verdict"].str.startswith("not enough").all()
    assert (out / "weightnorm_normprop.png").stat().st_size > 20_000
