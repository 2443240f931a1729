"""The recurrent declaration end to end through ``normbench study run`` on tiny runs of every
option (the generated IDX data), its per-run numbers against their definition, and its claims
on fixtures that must pass and fail."""

from __future__ import annotations

import dataclasses

import pandas as pd
import pytest

from normbench.report.verdicts import NOT_SHOWN, OPPOSITE, SHOWN
from normbench.studies import get_study, register
from normbench.studies.recurrent import STUDY
from normbench.studies.recurrent.claims import all_claims
from normbench.studies.recurrent.points import OPTIONS, steps_to
from tests.conftest import make_idx_dataset, study_cli, tiny_run

TINY = register(
    dataclasses.replace(
        STUDY,
        name="recurrent_tiny",
        params={"sweep/recurrent_option": ",".join(OPTIONS), "seed": "0,1"},
        overrides=(
            *tiny_run(8, 4),
            "model.hidden=8",
            "dataset.batch_size=16",
            "probes.every=4",
            "probes.hidden_grads=4",
            "probes.batch_size=32",
        ),
        results="results/recurrent_tiny",
    )
)


def test_the_study_is_registered_with_its_grid():
    assert get_study("recurrent") is STUDY
    assert STUDY.experiment == "recurrent" and "full" in STUDY.variants


def test_steps_to_target_is_the_first_evaluation_at_or_below_it():
    m = pd.DataFrame({"step": [0, 100, 200, 300], "val_error": [0.9, 0.3, 0.15, 0.1]})
    assert steps_to(m, 15.0) == (200.0, True)
    assert steps_to(m, 5.0) == (400.0, False)  # never: last step + one interval


def fixture(sign: int) -> pd.DataFrame:
    """Per-run points where every claim holds (sign +1) or its mirror does (−1)."""
    good = {  # option: (final error %, steps to target)
        "none": (14.0, 3000.0),
        "vertical": (13.5, 2000.0),
        "shared": (20.0, 2500.0),
        "per_step": (12.0, 1000.0),
        "layer": (12.2, 1000.0),
    }
    bad = {
        "none": (12.0, 1000.0),
        "vertical": (13.5, 2000.0),  # slower than no norm, faster than per-step BN
        "shared": (10.0, 2500.0),
        "per_step": (16.0, 3000.0),
        "layer": (12.0, 3000.0),
    }
    rows = []
    for option, (err, steps) in (good if sign > 0 else bad).items():
        for seed in range(3):
            rows.append(
                {
                    "option": option,
                    "seed": seed,
                    "final_error": err + 0.05 * seed,
                    "steps_to_target": steps + 10 * seed,
                    "reached": True,
                    "images": 10000,
                    "eval_every": 250,
                }
            )
    return pd.DataFrame(rows)


def test_every_claim_holds_on_the_paper_fixture_and_fails_on_its_mirror():
    good = all_claims(fixture(+1), "f")
    assert [c.key for c in good] == [
        "shared_worse",
        "per_step_as_good_as_ln",
        "ln_faster",
        "per_step_faster",
        "vertical_speeds",
        "vertical_less",
    ]
    assert [c.verdict for c in good] == [SHOWN] * 6
    assert [c.verdict for c in all_claims(fixture(-1), "f")] == [OPPOSITE] * 6


def test_noise_does_not_pass_a_claim():
    """Shared statistics scattered around per-step's error (+2, −2, +0.3): not shown."""
    pts = fixture(+1)
    shared, per_step = pts["option"] == "shared", pts["option"] == "per_step"
    pts.loc[shared, "final_error"] = pts.loc[per_step, "final_error"].to_numpy() + [2, -2, 0.3]
    claim = all_claims(pts, "f")[0]
    assert claim.key == "shared_worse" and claim.verdict.startswith(NOT_SHOWN)


def test_the_shared_claim_says_whether_shared_and_per_step_trained_alike():
    pts = fixture(+1)
    pts["train_loss_sum"] = [40.0 + s for s in pts["seed"]]
    ours = all_claims(pts, "f")[0].ours
    assert "equal at every logged step in 3 of 3 seeds" in ours
    pts.loc[(pts["option"] == "shared") & (pts["seed"] == 1), "train_loss_sum"] = 41.5
    assert "equal at every logged step in 2 of 3 seeds" in all_claims(pts, "f")[0].ours
    assert "logged step" not in all_claims(fixture(+1), "f")[0].ours  # no column: no statement


def test_two_seeds_are_only_suggestive():
    pts = fixture(+1)
    claims = all_claims(pts[pts["seed"] < 2], "f")
    assert all(c.verdict.startswith("suggestive") for c in claims)


@pytest.mark.slow
def test_the_declared_study_trains_every_option_and_reports(tmp_path):
    make_idx_dataset(tmp_path / "data" / "fashion_mnist", n_train=400, n_val=200)
    done = study_cli(tmp_path, "tests.test_recurrent_study", "run", "recurrent_tiny", "jobs=2")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = tmp_path / "results" / "recurrent_tiny"
    pts = pd.read_csv(out / "recurrent_points.csv")
    assert len(pts) == 10 and set(pts["option"]) == set(OPTIONS)
    assert (pts["grad_ratio"] > 0).all() and (pts["ms_per_step"] > 0).all()
    grads = pd.read_csv(out / "recurrent_hidden_grads.csv")
    assert sorted(set(grads["step"])) == [0, 4, 8] and sorted(set(grads["t"])) == list(range(1, 29))
    claims = pd.read_csv(out / "claims.csv")
    assert len(claims) == 6 and "per_step_as_good_as_ln" in set(claims["key"])
    readme = (out / "README.md").read_text()
    assert "recurrent.png" in readme and "How this was made" in readme
    assert (out / "recurrent.png").stat().st_size > 10_000
