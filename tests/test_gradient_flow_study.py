"""The gradient_flow declaration end to end through ``normbench study run`` on tiny runs (the
generated IDX data), the first/last gradient ratio against a hand computation, and its claims
on fixtures that must pass and fail."""

from __future__ import annotations

import dataclasses
import math

import pandas as pd
import pytest

from normbench.report.verdicts import OPPOSITE, SHOWN
from normbench.studies import register
from normbench.studies.gradient_flow import STUDY
from normbench.studies.gradient_flow.claims import init_claims, main_claims
from normbench.studies.gradient_flow.points import ratio_curve
from tests.conftest import make_idx_dataset, study_cli, tiny_run

TINY = register(
    dataclasses.replace(
        STUDY,
        name="gradient_flow_tiny",
        params={
            "sweep/gradient_flow_depth": "d3,d6",
            "sweep/gradient_flow_norm": "none,batch",
            "seed": "0,1",
        },
        overrides=(
            *tiny_run(20, 10),
            "probes.every=10",
            "probes.batch_size=64",
            "dataset.val_split=test",
        ),
        variants={},
        results="results/gradient_flow_tiny",
    )
)


def test_the_ratio_is_the_first_over_the_last_hidden_layer_weight_gradient():
    rows = [
        {"step": s, "param": f"hidden.{i}.linear.weight", "grad_norm": g}
        for s, grads in ((0, [math.nan] * 3), (10, [1e-3, 0.5, 2.0]), (20, [4.0, 1.0, 0.5]))
        for i, g in enumerate(grads)
    ] + [{"step": 10, "param": "hidden.0.norm.weight", "grad_norm": 9.0}]
    c = ratio_curve(pd.DataFrame(rows))
    assert c["step"].tolist() == [10, 20]  # step 0 has no gradient yet
    assert c["ln_ratio"].tolist() == pytest.approx([math.log(1e-3 / 2.0), math.log(4.0 / 0.5)])


def fixture(sign: int, init: bool = False) -> pd.DataFrame:
    """Runs whose ratios do what the papers say (sign=+1) or the opposite (-1)."""
    rows = []
    for depth in (3, 20):
        for seed in range(3):
            for norm in ("none", "batch"):
                deep = depth == 20
                if init:
                    ln = (8.0 if deep else 0.5) * sign + 0.1 * seed if norm == "batch" else 0.0
                elif norm == "none":
                    ln = (-20.0 if deep else -1.0) * sign + 0.1 * seed
                else:
                    ln = (
                        (-0.5 if deep else -1.0)
                        if sign > 0
                        else (-30.0 if deep else -1.0) + 0.1 * seed
                    )
                fast = (norm == "batch") == (sign > 0)
                for act in ("relu", "tanh") if init else ("sigmoid",):
                    rows.append(
                        {
                            "norm": norm,
                            "depth": depth,
                            "activation": act,
                            "seed": seed,
                            "steps": 3000,
                            "ln_ratio": ln,
                            "steps_to_target": (300.0 + 10 * seed) if fast else math.nan,
                            "test_error": 20.0,
                        }
                    )
    return pd.DataFrame(rows)


def test_every_claim_holds_on_the_paper_fixture_and_fails_on_its_mirror():
    good = main_claims(fixture(+1), "fixture", 100) + init_claims(fixture(+1, True), "fixture")
    assert len(good) == 5 and all(c.verdict.startswith(SHOWN) for c in good), [
        c.verdict for c in good
    ]
    bad = main_claims(fixture(-1), "fixture", 100) + init_claims(fixture(-1, True), "fixture")
    verdicts = {c.key: c.verdict for c in bad}
    assert verdicts["vanishing_without_bn"] == OPPOSITE
    assert verdicts["bn_keeps_gradient"] == OPPOSITE  # BN lost a factor e^29 here
    assert verdicts["bn_fewer_steps_deep"] == OPPOSITE
    assert (
        verdicts["explodes_at_init_relu"] == OPPOSITE
        and verdicts["explodes_at_init_tanh"] == OPPOSITE
    )


@pytest.mark.slow
def test_the_declared_study_trains_and_reports(tmp_path):
    make_idx_dataset(tmp_path / "data" / "fashion_mnist", n_train=400, n_val=200)
    done = study_cli(
        tmp_path, "tests.test_gradient_flow_study", "run", "gradient_flow_tiny", "jobs=2"
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = tmp_path / "results" / "gradient_flow_tiny"
    pts = pd.read_csv(out / "gradient_flow_points.csv")
    assert len(pts) == 8 and sorted(set(pts["depth"])) == [3, 6] and pts["ln_ratio"].notna().all()
    cur = pd.read_csv(out / "gradient_flow_curves.csv")
    assert sorted(set(cur["step"])) == [10, 20]
    claims = (out / "claims.csv").read_text()
    assert "vanishing_without_bn" in claims and "bn_fewer_steps_deep" in claims
    for png in ("gradient_flow_depth.png", "gradient_flow_steps.png"):
        assert (out / png).stat().st_size > 10_000
