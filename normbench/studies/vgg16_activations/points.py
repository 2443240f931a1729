"""The numbers of the VGG-16 feature-distribution study, per run and conv layer: how far the
typical unit's input percentiles (15th, 50th, 85th; ``unit_p*`` of activations.csv) move during
training, relative to the layer's spread at the first probe step.

Layers are numbered by the conv they follow, 1 to 13 (the k-th probed ReLU is the k-th conv's;
its module name differs with and without BN slots). For conv k of a run, with t0 its first probe
step::

    move_k = max over the percentiles p and steps t of |p(t) − p(t0)| / (p85(t0) − p15(t0))

a scale-free drift: BN's output is on its own scale (γ, β), a plain conv's on the weights'.
"""

from __future__ import annotations

import math

import pandas as pd

from normbench.report.collect import Run
from normbench.report.figures import PERCENTILES
from normbench.report.seeds import by_seed as seed_values

#: the intermediate conv layers the claims are on (of 13)
LAYERS = (4, 7, 10)


def numbered(run: Run) -> pd.DataFrame:
    """The run's activations.csv rows with ``conv``: the ordinal (1..) of the layer."""
    a = run.activations
    if a.empty:
        return a.assign(conv=pd.Series(dtype=int))
    order = {name: i + 1 for i, name in enumerate(a["layer"].drop_duplicates())}
    return a.assign(conv=a["layer"].map(order))


def move(a: pd.DataFrame) -> float:
    """``move_k`` of one layer's rows (see the module docstring); NaN without a spread."""
    a = a.sort_values("step")
    if a.empty:
        return math.nan
    first = a.iloc[0]
    spread = float(first["unit_p85"] - first["unit_p15"])
    if not spread > 0:
        return math.nan
    return max(float((a[c] - first[c]).abs().max()) for c in PERCENTILES) / spread


def curves(runs: list[Run]) -> pd.DataFrame:
    """Every complete run's percentiles against steps, per conv layer."""
    frames = [
        numbered(r)[["step", "conv", *PERCENTILES]].assign(norm=r.norm, seed=r.seed)
        for r in runs
        if r.status == "complete" and not r.activations.empty
    ]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def points(runs: list[Run]) -> pd.DataFrame:
    """One row per (complete run, conv layer): norm, seed, conv, move, final test error."""
    rows = []
    for r in runs:
        if r.status != "complete" or r.activations.empty:
            continue
        err = r.final_val_error
        for conv, a in numbered(r).groupby("conv"):
            rows.append(
                {
                    "norm": r.norm,
                    "seed": r.seed,
                    "conv": int(conv),
                    "move": move(a),
                    "test_error": 100 * err if err is not None else math.nan,
                }
            )
    return pd.DataFrame(rows)


def by_seed(pts: pd.DataFrame, norm: str, conv: int) -> dict[int, float]:
    return seed_values(pts, "move", norm=norm, conv=conv)
