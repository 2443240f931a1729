"""The jacobian declaration end to end through ``normbench study run`` on tiny runs (the
generated IDX data), and its claims on fixtures that must pass and fail."""

from __future__ import annotations

import dataclasses

import pandas as pd
import pytest

from normbench.report.verdicts import OPPOSITE, SHOWN
from normbench.studies import register
from normbench.studies.jacobian import STUDY
from normbench.studies.jacobian.claims import all_claims, per_run
from tests.conftest import make_idx_dataset, study_cli, tiny_run

TINY = register(
    dataclasses.replace(
        STUDY,
        name="jacobian_tiny",
        params={"norm": "none,batch", "seed": "0,1"},
        overrides=(
            *tiny_run(20, 10),
            "probes.every=10",
            "probes.jacobian=10",
            "probes.jacobian_examples=4",
            "probes.batch_size=32",
            "dataset.val_split=test",
        ),
        results="results/jacobian_tiny",
    )
)


def fixture(sign: int) -> pd.DataFrame:
    rows = []
    for seed in range(3):
        for norm in ("none", "batch"):
            far = (norm == "none") == (sign > 0)
            for step in (0, 500):
                for name in ("1→2", "2→3", "1→3"):
                    rows.append(
                        {
                            "norm": norm,
                            "seed": seed,
                            "map": name,
                            "step": step,
                            "log_dist": (2.0 if far else 0.5) + 0.01 * seed,
                            "p50": 0.1 if far else 0.8,
                        }
                    )
    return pd.DataFrame(rows)


def test_every_claim_holds_on_the_paper_fixture_and_fails_on_its_mirror():
    good = all_claims(per_run(fixture(+1)), "f")
    assert [c.key for c in good] == ["nearer_one_1_2", "nearer_one_2_3", "nearer_one_1_3"]
    assert [c.verdict for c in good] == [SHOWN] * 3
    assert [c.verdict for c in all_claims(per_run(fixture(-1)), "f")] == [OPPOSITE] * 3


@pytest.mark.slow
def test_the_declared_study_trains_and_reports(tmp_path):
    make_idx_dataset(tmp_path / "data" / "fashion_mnist", n_train=400, n_val=200)
    done = study_cli(tmp_path, "tests.test_jacobian_study", "run", "jacobian_tiny", "jobs=2")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = tmp_path / "results" / "jacobian_tiny"
    jac = pd.read_csv(out / "jacobian_all.csv")
    assert sorted(set(jac["step"])) == [0, 10, 20] and set(jac["map"]) == {"1→2", "2→3", "1→3"}
    assert len(jac) == 4 * 3 * 3 and (jac["p10"] <= jac["p90"]).all()
    assert "nearer_one_1_3" in (out / "claims.csv").read_text()
    assert (out / "jacobian.png").stat().st_size > 10_000
