"""The covariate_shift declaration end to end through ``normbench study run`` on tiny runs (the
generated IDX data), its per-step measures against their definition, and its claims on fixtures
that must pass and fail."""

from __future__ import annotations

import dataclasses

import pandas as pd
import pytest

from normbench.report.verdicts import BY_CONSTRUCTION, NOT_SHOWN, OPPOSITE, SHOWN
from normbench.studies import register
from normbench.studies.covariate_shift import STUDY
from normbench.studies.covariate_shift.claims import RATIO_CLAIMS, all_claims
from normbench.studies.covariate_shift.points import per_step
from tests.conftest import make_idx_dataset, study_cli, tiny_run

TINY = register(
    dataclasses.replace(
        STUDY,
        name="covariate_shift_tiny",
        params={
            "sweep/covariate_shift_model": "mlp",
            "norm": "none,batch,noisy_batch",
            "seed": "0,1",
        },
        overrides=(
            *tiny_run(20, 10),
            "probes.every=10",
            "probes.smoothness=10",
            "probes.batch_size=32",
        ),
        results="results/covariate_shift_tiny",
    )
)


def test_per_step_measures_follow_their_definition():
    smooth = pd.DataFrame(
        {
            "step": [10, 10, 20, 20],
            "multiple": [1, 2, 1, 2],
            "loss0": [2.0, 2.0, 1.0, 1.0],
            "loss": [1.5, 2.5, 0.8, 0.9],
            "grad_change": [0.1, 0.3, 0.2, 0.05],
            "rel_change": [0.01, 0.03, 0.02, 0.005],
            "beta": [5.0, 4.0, 1.0, 2.0],
        }
    )
    shift = pd.DataFrame(
        {
            "step": [10, 10, 20, 20],
            "layer": ["a", "b"] * 2,
            "shift_mean": [0.1, 0.3, 0.2, 0.4],
            "shift_scale": [0.0, 0.2, 0.1, 0.1],
            "shift_shape": [0.5, 0.1, 0.0, 0.0],
        }
    )
    out = per_step(smooth, shift).set_index("step")
    assert out.loc[10, "grad_change"] == 0.3 and out.loc[20, "grad_change"] == 0.2
    assert out.loc[10, "loss_range"] == pytest.approx(1.0)  # 2.5 − 1.5
    assert out.loc[20, "loss_range"] == pytest.approx(0.2)  # loss0 1.0 is the max
    assert out.loc[10, "beta"] == 5.0 and out.loc[20, "rel_change"] == 0.02
    assert out.loc[10, "shift_mean"] == pytest.approx(0.2)
    assert out.loc[20, "shift_scale"] == pytest.approx(0.1)
    assert out.loc[10, "shift_shape"] == pytest.approx(0.3)


def fixture(sign: int) -> pd.DataFrame:
    """Per-run points where every claim holds (sign +1) or its mirror does (−1)."""
    rows = []
    for model in ("mlp", "vgg"):
        for seed in range(3):
            for norm, err in (("none", 40.0), ("batch", 10.0), ("noisy_batch", 12.0)):
                if sign < 0:
                    err = {"none": 10.0, "batch": 40.0, "noisy_batch": 45.0}[norm]
                rough = (norm == "none") == (sign > 0)
                shift = {"none": 1.0, "batch": 0.2, "noisy_batch": 2.0}[norm]
                if sign < 0:
                    shift = {"none": 0.2, "batch": 1.0, "noisy_batch": 0.1}[norm]
                big = (3.0 if rough else 1.0) + 0.01 * seed
                rows.append(
                    {
                        "model": model,
                        "norm": norm,
                        "seed": seed,
                        "test_error": err + 0.1 * seed,
                        "images": 10000,
                        **dict.fromkeys(("grad_change", "rel_change", "loss_range", "beta"), big),
                        "shift_mean": shift * (1 + 0.01 * seed),
                        "shift_scale": 0.1,
                        "shift_shape": big,
                    }
                )
    return pd.DataFrame(rows)


def test_every_claim_holds_on_the_paper_fixture_and_fails_on_its_mirror():
    good = all_claims(fixture(+1), "f")
    per_model = 2 + len(RATIO_CLAIMS)
    assert len(good) == 2 * per_model
    assert [c.key for c in good[:3]] == [
        "noisy_beats_none_mlp",
        "noisy_nearer_bn_mlp",
        "noise_shifts_mlp",
    ]
    judged = [c for c in good if not c.key.startswith("bn_less_shift_")]
    assert [c.verdict for c in judged] == [SHOWN] * len(judged) and len(judged) == len(good) - 2
    bad = all_claims(fixture(-1), "f")
    judged = [c for c in bad if not c.key.startswith("bn_less_shift_")]
    assert [c.verdict for c in judged] == [OPPOSITE] * len(judged)
    for c in good + bad:  # BN pins the means it normalizes: said so, with the judged outcome
        if c.key.startswith("bn_less_shift_"):
            assert c.verdict.startswith(BY_CONSTRUCTION)
            assert ("it is shown" if c in good else "it is opposite") in c.verdict


def test_noise_does_not_pass_a_claim():
    """No norm's error scattered around noisy BN's (+2, −2, +0.3 points): not shown."""
    pts = fixture(+1)
    none = (pts["norm"] == "none") & (pts["model"] == "mlp")
    noisy = (pts["norm"] == "noisy_batch") & (pts["model"] == "mlp")
    pts.loc[none, "test_error"] = pts.loc[noisy, "test_error"].to_numpy() + [2.0, -2.0, 0.3]
    claim = all_claims(pts, "f")[0]
    assert claim.key == "noisy_beats_none_mlp" and claim.verdict.startswith(NOT_SHOWN)


@pytest.mark.slow
def test_the_declared_study_trains_and_reports(tmp_path):
    make_idx_dataset(tmp_path / "data" / "fashion_mnist", n_train=400, n_val=200)
    done = study_cli(
        tmp_path, "tests.test_covariate_shift_study", "run", "covariate_shift_tiny", "jobs=2"
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = tmp_path / "results" / "covariate_shift_tiny"
    pts = pd.read_csv(out / "covariate_shift_points.csv")
    assert len(pts) == 6 and set(pts["norm"]) == {"none", "batch", "noisy_batch"}
    assert (pts["probes"] == 2).all() and (pts["grad_change"] > 0).all()
    steps = pd.read_csv(out / "covariate_shift_steps.csv")
    assert sorted(set(steps["step"])) == [10, 20]
    claims = (out / "claims.csv").read_text()
    assert "predictive_mlp" in claims and "noisy_nearer_bn_mlp" in claims
    assert (out / "covariate_shift.png").stat().st_size > 10_000
