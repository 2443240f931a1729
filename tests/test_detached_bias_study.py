"""The detached_bias declaration end to end through ``normbench study run`` on tiny runs (the
generated IDX data, 30 steps), and its claims on fixtures that must pass and fail."""

from __future__ import annotations

import dataclasses
import math

import pandas as pd
import pytest

from normbench.report.verdicts import NOT_SHOWN, OPPOSITE, SHOWN
from normbench.studies import register
from normbench.studies.detached_bias import STUDY
from normbench.studies.detached_bias.claims import all_claims
from tests.conftest import make_idx_dataset, study_cli, tiny_run

TINY = register(
    dataclasses.replace(
        STUDY,
        name="detached_bias_tiny",
        params={
            "sweep/detached_bias_setting": "literal_attached,literal_detached",
            "seed": "0,1",
        },
        overrides=(
            *tiny_run(30, 10),
            "probes.every=10",
            "probes.batch_size=64",
            "dataset.val_split=test",
        ),
        variants={},
        results="results/detached_bias_tiny",
    )
)


def fixture(sign: int) -> pd.DataFrame:
    """Three seeds of every setting: with ``sign=+1`` as the paper says, with -1 its mirror (the
    detached bias shrinks, the attached one moves, detached training is better)."""
    rows = []
    for part in ("literal", "mlp", "cnn"):
        for seed in range(3):
            jitter = 0.01 * seed
            for detached in (False, True):
                grows = detached if sign > 0 else not detached
                rows.append(
                    {
                        "part": part,
                        "detached": detached,
                        "seed": seed,
                        "steps": 100,
                        "bias_0": 0.0,
                        "bias_half": 5.0 if grows else 1.0,
                        "bias_end": (10.0 + jitter) if grows else (1.0 - 0.1 - jitter),
                        "bias_growth": math.log(2 + jitter) if grows else -math.log(1.1 + jitter),
                        "bias_change": (10.0 + jitter) if grows else 1e-9 * seed,
                        "weight_0": 30.0,
                        "weight_end": (60.0 + seed) if grows else 31.0,
                        "weight_growth": math.log((60.0 + seed) / 30)
                        if grows
                        else math.log(31 / 30),
                        "test_error": (30.0 + seed) if (detached == (sign > 0)) else (20.0 + seed),
                        "images": 10000,
                    }
                )
    return pd.DataFrame(rows)


def test_every_claim_holds_on_the_paper_fixture_and_fails_on_its_mirror():
    good = {c.key: c.verdict for c in all_claims(fixture(+1), "fixture")}
    bad = {c.key: c.verdict for c in all_claims(fixture(-1), "fixture")}
    assert len(good) == 10 and all(v.startswith(SHOWN) for v in good.values()), good
    for key, verdict in bad.items():
        if key.startswith("bias_bounded"):  # the attached bias moved by 10: far outside ±1%
            assert verdict.startswith(NOT_SHOWN) or "not enough" in verdict, (key, verdict)
        else:
            assert verdict == OPPOSITE, (key, verdict)


def test_missing_runs_give_not_enough_runs():
    claims = all_claims(fixture(+1).query("part != 'cnn'"), "fixture")
    cnn = [c for c in claims if c.key.endswith("cnn")]
    assert cnn and all(c.verdict.startswith("not enough runs") for c in cnn)


@pytest.mark.slow
def test_the_declared_study_trains_and_reports(tmp_path):
    make_idx_dataset(tmp_path / "data" / "fashion_mnist", n_train=400, n_val=200)
    done = study_cli(
        tmp_path, "tests.test_detached_bias_study", "run", "detached_bias_tiny", "jobs=2"
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = tmp_path / "results" / "detached_bias_tiny"
    pts = pd.read_csv(out / "detached_bias_points.csv")
    assert len(pts) == 4 and set(pts["part"]) == {"literal"}
    det, att = pts[pts["detached"]], pts[~pts["detached"]]
    # the paper's mechanism already on 30 tiny steps: the detached bias moves, the attached not
    assert (det["bias_end"] > 1e-3).all() and (att["bias_end"].abs() < 1e-4).all()
    assert (det["bias_end"] > det["bias_half"]).all()
    cur = pd.read_csv(out / "detached_bias_curves.csv")
    assert sorted(cur["step"].dropna().unique()) == [0, 10, 20, 30]
    readme = (out / "README.md").read_text()
    assert (
        "detached_bias.png" in readme and "bias_grows_literal" in (out / "claims.csv").read_text()
    )
    assert (out / "detached_bias.png").stat().st_size > 10_000
