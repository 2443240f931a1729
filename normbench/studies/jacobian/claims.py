"""The Jacobian claims (Ioffe & Szegedy 2015, §3.4; docs/papers.md §12), judged per seed by the
shared rule. For each map (s_1 → s_2, s_2 → s_3, s_1 → s_3) a run's distance from 1 is the mean
over its Jacobian probe steps (step 0 included) of jacobian.csv's ``log_dist``, the median
|ln σ| over the singular values of 32 examples:

- ``nearer_one_<map>``: distance without a norm − with BN > 0, paired by seed, by at least
  MIN_DIST (ln 1.1: singular values 10% nearer 1).
"""

from __future__ import annotations

import math

import pandas as pd

from normbench.report.flags import not_enough
from normbench.report.verdicts import Claim, judge_difference, paired

SOURCE = "Ioffe & Szegedy 2015, §3.4 (docs/papers.md §12)"
MIN_DIST = math.log(1.1)


def per_run(jac: pd.DataFrame) -> pd.DataFrame:
    """Per (norm, seed, map): the mean of log_dist over the probe steps, and the median σ."""
    if jac.empty:
        return pd.DataFrame(columns=["norm", "seed", "map", "log_dist", "p50"])
    return jac.groupby(["norm", "seed", "map"], as_index=False, sort=False)[
        ["log_dist", "p50"]
    ].mean()


def nearer_one(runs_table: pd.DataFrame, name: str, scale: str) -> Claim:
    sel = runs_table[runs_table["map"] == name]
    by = {n: dict(zip(g["seed"], g["log_dist"], strict=True)) for n, g in sel.groupby("norm")}
    text = f"The singular values of the Jacobian {name} (norm-slot outputs) stay nearer 1 with BN"
    paper = "conjecture: BN keeps layer Jacobians' singular values close to 1 (no number)"
    d = paired(by.get("batch", {}), by.get("none", {}))
    key = "nearer_one_" + name.replace("→", "_")
    if d.n < 2:
        return Claim(
            "jacobian",
            key,
            text,
            SOURCE,
            paper,
            "–",
            "–",
            not_enough("runs with and without BN"),
            scale,
        )
    mean = lambda v: sum(v.values()) / len(v)  # noqa: E731
    return Claim(
        "jacobian",
        key,
        text,
        SOURCE,
        paper,
        f"median |ln σ| over training, no norm − BN, paired by seed: {d.text(3)} "
        f"(no norm {mean(by['none']):.2f}, BN {mean(by['batch']):.2f})",
        f"> 0, at least ln 1.1 = {MIN_DIST:.3f}",
        judge_difference(d, +1, MIN_DIST),
        scale,
    )


def all_claims(runs_table: pd.DataFrame, scale: str) -> list[Claim]:
    maps = list(dict.fromkeys(runs_table["map"])) if not runs_table.empty else ["1→2", "2→3", "1→3"]
    return [nearer_one(runs_table, m, scale) for m in maps]
