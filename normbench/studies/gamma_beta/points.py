"""The numbers of the γ/β study, per run: the final test error, and how far the learned γ and β
moved from their initial 1 and 0 (from params.csv, ``probes.params``).

A run's setting is its override ``sweep/gamma_beta_setting=<model>_<affine|plain>``. Per norm
layer at a probe step, from the recorded mean and (population) std of its γ (or β)::

    rms(γ − 1) = sqrt(std² + (mean − 1)²)          rms(β) = sqrt(std² + mean²)

and a run's ``gamma_dev`` / ``beta_dev`` is the mean of these over its norm layers at the last
probe step. A ResNet block's last γ starts at 1 here (``zero_init_last_norm=false``).
"""

from __future__ import annotations

import math

import pandas as pd

from normbench.report.collect import Run
from normbench.report.seeds import by_seed as seed_values

AXIS = "sweep/gamma_beta_setting"
MODELS = ("mlp", "resnet")
MODEL_LABEL = {"mlp": "sigmoid MLP 784-100-100-100-10", "resnet": "ResNet-50 width 0.125"}
NORM_MODULES = ("BatchNorm",)


def setting_of(run: Run) -> tuple[str, bool] | None:
    """(model, affine) of the run; None for another run."""
    model, _, kind = run.override_values.get(AXIS, "").rpartition("_")
    if model not in MODELS or kind not in ("affine", "plain"):
        return None
    return model, kind == "affine"


def deviations(params: pd.DataFrame) -> pd.DataFrame:
    """Per probe step and norm layer: rms(γ − 1) and rms(β) (see the module docstring)."""
    norms = params[params["module"].isin(NORM_MODULES)]
    if norms.empty:
        return pd.DataFrame(columns=["step", "layer", "gamma_dev", "beta_dev"])
    kind = norms["param"].str.rsplit(".", n=1).str[-1]
    layer = norms["param"].str.rsplit(".", n=1).str[0]
    target = kind.map({"weight": 1.0, "bias": 0.0})
    dev = ((norms["std"] ** 2 + (norms["mean"] - target) ** 2) ** 0.5).rename("dev")
    frame = pd.DataFrame({"step": norms["step"], "layer": layer, "kind": kind, "dev": dev})
    table = frame.pivot_table(index=["step", "layer"], columns="kind", values="dev").reset_index()
    forward = {name: i for i, name in enumerate(dict.fromkeys(layer))}  # params.csv's order
    table = table.assign(order=table["layer"].map(forward)).sort_values(["step", "order"])
    return table.drop(columns="order").rename(columns={"weight": "gamma_dev", "bias": "beta_dev"})


def points(runs: list[Run]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per complete run (model, affine, seed, test error, γ/β deviations at the end), and the
    last probe step's per-layer deviations of the affine runs."""
    rows, layers = [], []
    for r in runs:
        s = setting_of(r)
        if s is None or r.status != "complete":
            continue
        path = r.path / "params.csv"
        params = pd.read_csv(path) if path.is_file() else pd.DataFrame(columns=["module"])
        dev = deviations(params)
        last = dev[dev["step"] == dev["step"].max()] if not dev.empty else dev
        err = r.final_val_error
        row = {
            "model": s[0],
            "affine": s[1],
            "seed": r.seed,
            "test_error": 100 * err if err is not None else math.nan,
            "images": r.val_images,
            "gamma_dev": float(last["gamma_dev"].mean()) if "gamma_dev" in last else math.nan,
            "beta_dev": float(last["beta_dev"].mean()) if "beta_dev" in last else math.nan,
            "run": str(r.path),
        }
        rows.append(row)
        if s[1] and not last.empty:
            layers.append(last.assign(model=s[0], seed=r.seed))
    per_layer = pd.concat(layers, ignore_index=True) if layers else pd.DataFrame()
    return pd.DataFrame(rows), per_layer


def by_seed(pts: pd.DataFrame, model: str, affine: bool, column: str) -> dict[int, float]:
    return seed_values(pts, column, model=model, affine=affine)
