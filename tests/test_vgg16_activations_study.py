"""The vgg16_activations declaration end to end through ``normbench study run`` on tiny runs (the
generated IDX data, VGG-16 width 1/16), the relative move against a hand computation, and the
claims on fixtures that must pass and fail."""

from __future__ import annotations

import dataclasses

import pandas as pd
import pytest

from normbench.report.verdicts import OPPOSITE, SHOWN
from normbench.studies import register
from normbench.studies.vgg16_activations import STUDY
from normbench.studies.vgg16_activations.claims import all_claims
from normbench.studies.vgg16_activations.points import move
from tests.conftest import make_idx_dataset, study_cli, tiny_run

TINY = register(
    dataclasses.replace(
        STUDY,
        name="vgg16_activations_tiny",
        params={"norm": "none,batch", "seed": "0,1"},
        overrides=(
            *tiny_run(20, 10),
            "model.width=0.0625",
            "probes.every=10",
            "probes.batch_size=32",
            "probes.hist_every=0",
            "dataset.val_split=test",
        ),
        results="results/vgg16_activations_tiny",
    )
)


def test_the_move_is_the_largest_percentile_drift_over_the_first_spread():
    a = pd.DataFrame(
        {
            "step": [10, 0, 20],
            "unit_p15": [-1.5, -1.0, -1.0],
            "unit_p50": [0.0, 0.0, 0.6],
            "unit_p85": [1.0, 1.0, 1.0],
        }
    )
    assert move(a) == pytest.approx(0.6 / 2.0)  # p50's 0.6 at step 20 over the spread 2 at step 0


def fixture(sign: int) -> pd.DataFrame:
    rows = []
    for seed in range(3):
        for conv in range(1, 14):
            for norm in ("none", "batch"):
                big = (norm == "none") == (sign > 0)
                rows.append(
                    {
                        "norm": norm,
                        "seed": seed,
                        "conv": conv,
                        "move": (1.0 if big else 0.2) + 0.01 * seed,
                    }
                )
    return pd.DataFrame(rows)


def test_every_claim_holds_on_the_paper_fixture_and_fails_on_its_mirror():
    assert [c.verdict for c in all_claims(fixture(+1), "f")] == [SHOWN] * 3
    assert [c.verdict for c in all_claims(fixture(-1), "f")] == [OPPOSITE] * 3


@pytest.mark.slow
def test_the_declared_study_trains_and_reports(tmp_path):
    make_idx_dataset(tmp_path / "data" / "fashion_mnist", n_train=400, n_val=200)
    done = study_cli(
        tmp_path, "tests.test_vgg16_activations_study", "run", "vgg16_activations_tiny", "jobs=2"
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = tmp_path / "results" / "vgg16_activations_tiny"
    pts = pd.read_csv(out / "vgg16_activations_points.csv")
    assert len(pts) == 4 * 13 and sorted(set(pts["conv"])) == list(range(1, 14))
    assert pts["move"].notna().all() and (pts["move"] >= 0).all()
    assert "stabler_conv7" in (out / "claims.csv").read_text()
    assert (out / "vgg16_activations.png").stat().st_size > 10_000
