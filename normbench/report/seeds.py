"""Per-seed values of a study's points table: what the paired verdicts (:mod:`.verdicts`) take."""

from __future__ import annotations

import math

import pandas as pd


def by_seed(pts: pd.DataFrame, column: str, **where: object) -> dict[int, float]:
    """``column`` of the rows of ``pts`` whose columns equal ``where``'s values, keyed by the
    ``seed`` column; missing and non-finite values are left out.

    ``by_seed(pts, "test_error", model="mlp", norm="batch")``.
    """
    if pts.empty:
        return {}
    sel = pts
    for key, value in where.items():
        sel = sel[sel[key] == value]
    out: dict[int, float] = {}
    for seed, value in zip(sel["seed"], sel[column], strict=True):
        if value is not None and math.isfinite(float(value)):
            out[int(seed)] = float(value)
    return out
