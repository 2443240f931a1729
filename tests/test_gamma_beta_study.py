"""The gamma_beta declaration end to end through ``normbench study run`` on tiny runs (the
generated IDX data), the γ/β deviations against their formula, and the claims on fixtures that
must pass and fail."""

from __future__ import annotations

import dataclasses
import math

import pandas as pd
import pytest

from normbench.report.verdicts import OPPOSITE, SHOWN
from normbench.studies import register
from normbench.studies.gamma_beta import STUDY
from normbench.studies.gamma_beta.claims import all_claims
from normbench.studies.gamma_beta.points import deviations
from tests.conftest import make_idx_dataset, study_cli, tiny_run

TINY = register(
    dataclasses.replace(
        STUDY,
        name="gamma_beta_tiny",
        params={"sweep/gamma_beta_setting": "mlp_affine,mlp_plain", "seed": "0,1"},
        overrides=(
            *tiny_run(20, 10),
            "probes.every=10",
            "probes.batch_size=64",
            "dataset.val_split=test",
        ),
        results="results/gamma_beta_tiny",
    )
)


def test_deviations_are_the_rms_distance_from_one_and_zero_in_forward_order():
    rows = [
        {"step": 5, "param": "b.norm.weight", "module": "BatchNorm", "mean": 1.2, "std": 0.5},
        {"step": 5, "param": "b.norm.bias", "module": "BatchNorm", "mean": -0.3, "std": 0.4},
        {"step": 5, "param": "a.norm.weight", "module": "BatchNorm", "mean": 1.0, "std": 0.0},
        {"step": 5, "param": "a.norm.bias", "module": "BatchNorm", "mean": 0.0, "std": 0.1},
        {"step": 5, "param": "a.linear.weight", "module": "Linear", "mean": 3.0, "std": 1.0},
    ]
    dev = deviations(pd.DataFrame(rows))
    assert dev["layer"].tolist() == ["b.norm", "a.norm"]  # params.csv's (forward) order
    assert dev["gamma_dev"].tolist() == pytest.approx([math.sqrt(0.25 + 0.04), 0.0])
    assert dev["beta_dev"].tolist() == pytest.approx([math.sqrt(0.16 + 0.09), 0.1])


def fixture(sign: int) -> pd.DataFrame:
    rows = []
    for model in ("mlp", "resnet"):
        for seed in range(3):
            for affine in (True, False):
                worse = (not affine) == (sign > 0)
                moved = 0.5 + 0.01 * seed if sign > 0 else 0.01 + 0.001 * seed
                rows.append(
                    {
                        "model": model,
                        "affine": affine,
                        "seed": seed,
                        "test_error": (20.0 + seed) if worse else (15.0 + seed),
                        "images": 10000,
                        "gamma_dev": moved if affine else math.nan,
                        "beta_dev": moved if affine else math.nan,
                    }
                )
    return pd.DataFrame(rows)


def test_every_claim_holds_on_the_paper_fixture_and_fails_on_its_mirror():
    good = {c.key: c.verdict for c in all_claims(fixture(+1), "fixture")}
    assert len(good) == 6 and all(v.startswith(SHOWN) for v in good.values()), good
    bad = {c.key: c.verdict for c in all_claims(fixture(-1), "fixture")}
    # the mirror: without γ/β is better, and γ/β stayed within 0.012 of 1 and 0 (below 0.1)
    assert all(v == OPPOSITE for v in bad.values()), bad


@pytest.mark.slow
def test_the_declared_study_trains_and_reports(tmp_path):
    make_idx_dataset(tmp_path / "data" / "fashion_mnist", n_train=400, n_val=200)
    done = study_cli(tmp_path, "tests.test_gamma_beta_study", "run", "gamma_beta_tiny", "jobs=2")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = tmp_path / "results" / "gamma_beta_tiny"
    pts = pd.read_csv(out / "gamma_beta_points.csv")
    assert len(pts) == 4 and pts["test_error"].notna().all()
    affine = pts[pts["affine"]]
    assert (affine["gamma_dev"] > 0).all() and pts[~pts["affine"]]["gamma_dev"].isna().all()
    layers = pd.read_csv(out / "gamma_beta_layers.csv")
    assert layers["layer"].tolist()[:3] == ["hidden.0.norm", "hidden.1.norm", "hidden.2.norm"]
    assert "plain_worse_mlp" in (out / "claims.csv").read_text()
    assert (out / "gamma_beta.png").stat().st_size > 10_000
