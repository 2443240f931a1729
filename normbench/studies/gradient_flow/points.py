"""The numbers of the gradient-flow study, per run: the ratio of the first to the last hidden
layer's weight-gradient norm (from params.csv, ``probes.params``) and the steps to a test
accuracy.

``ratio(t) = ‖∂L/∂W_0‖ / ‖∂L/∂W_{D-1}‖`` at probe step t, where W_0 is the first hidden layer's
weight (784 → 100) and W_{D-1} the last hidden layer's (100 → 100), the gradient of that step's
training batch. ``ln_ratio`` summarizes a run: the median of ln ratio(t) over its probe steps
after step 0 (the training runs), or ln ratio(1), the gradient at the initial weights (the
``init`` variant, one step). The first layer's ratio at depth D against depth 3 cancels what
differs between a 784-input layer and a 100-input one.
"""

from __future__ import annotations

import math
import re

import pandas as pd

from normbench.report.collect import Run
from normbench.report.seeds import by_seed as seed_values
from normbench.studies.bn_fig1.claims import first_step
from normbench.studies.study import recorded

TARGET = 0.80  # the test accuracy whose first evaluated step is the "steps to target"
LAYER = re.compile(r"hidden\.(\d+)\.linear\.(?:weight|parametrizations\.weight\.original1)$")


def depth_of(run: Run) -> int:
    return len(recorded(run, "model.hidden", []) or [])


def activation_of(run: Run) -> str:
    return str(recorded(run, "model.activation", "sigmoid"))


def ratio_curve(params: pd.DataFrame) -> pd.DataFrame:
    """Per probe step with gradients: the first and last hidden layers' gradient norms and
    ln(first / last)."""
    if params.empty:
        return pd.DataFrame(columns=["step", "first", "last", "ln_ratio"])
    index = params["param"].str.extract(LAYER)[0]
    layers = params[index.notna()].assign(layer=index.dropna().astype(int))
    if layers.empty:
        return pd.DataFrame(columns=["step", "first", "last", "ln_ratio"])
    last = int(layers["layer"].max())
    table = layers.pivot_table(index="step", columns="layer", values="grad_norm").dropna()
    out = pd.DataFrame({"first": table[0], "last": table[last]}).reset_index()
    ok = (out["first"] > 0) & (out["last"] > 0)
    out["ln_ratio"] = [
        math.log(f / la) if good else math.nan
        for f, la, good in zip(out["first"], out["last"], ok, strict=True)
    ]
    return out


def curves(runs: list[Run]) -> pd.DataFrame:
    """Every run's ratio against steps, with its norm, depth, activation and seed."""
    frames = []
    for r in runs:
        path = r.path / "params.csv"
        params = pd.read_csv(path) if path.is_file() else pd.DataFrame()
        c = ratio_curve(params)
        if c.empty:
            continue
        frames.append(
            c.assign(
                norm=r.norm,
                depth=depth_of(r),
                activation=activation_of(r),
                seed=r.seed,
                run=str(r.path),
            )
        )
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def points(runs: list[Run], cur: pd.DataFrame) -> pd.DataFrame:
    """One row per complete run: ln_ratio (see the module docstring), the steps to TARGET test
    accuracy (NaN: never within the run) and the final test error (%)."""
    rows = []
    for r in runs:
        if r.status != "complete":
            continue
        c = cur[cur["run"] == str(r.path)] if not cur.empty else cur
        ln = float(c["ln_ratio"].median()) if len(c) else math.nan
        err = r.final_val_error
        rows.append(
            {
                "norm": r.norm,
                "depth": depth_of(r),
                "activation": activation_of(r),
                "seed": r.seed,
                "steps": int(r.summary.get("step") or 0),
                "ln_ratio": ln,
                "steps_to_target": first_step(r, TARGET) if not r.metrics.empty else math.nan,
                "test_error": 100 * err if err is not None else math.nan,
                "run": str(r.path),
            }
        )
    return pd.DataFrame(rows)


def by_seed(
    pts: pd.DataFrame, norm: str, depth: int, column: str, activation: str | None = None
) -> dict[int, float]:
    """``column`` of one (norm, depth[, activation]) by seed, finite values only."""
    extra = {} if activation is None else {"activation": activation}
    return seed_values(pts, column, norm=norm, depth=depth, **extra)
