"""The numbers of the section-2 counter-example, per run: the norms of the biases and weights of
the weight layers in front of the norm slots (from params.csv, ``probes.params``), and the error.

A run's setting is its override ``sweep/detached_bias_setting=<part>_<grad>``: part ``literal``
(one normalized layer), ``mlp`` (three) or ``cnn`` (VGG-16), grad ``attached`` (the statistics
inside the gradient) or ``detached`` (constants in the gradient step).

Per probe step t: ``bias(t) = sqrt(Σ_l ‖b_l‖²)`` and ``weight(t) = sqrt(Σ_l ‖W_l‖²)`` over the
Linear / Conv2d layers that feed a norm slot: every one but the classifier (``head.*`` of the
MLP, ``classifier.*`` of VGG-16).
"""

from __future__ import annotations

import math

import pandas as pd

from normbench.report.collect import Run
from normbench.report.seeds import by_seed as seed_values

AXIS = "sweep/detached_bias_setting"
PARTS = ("literal", "mlp", "cnn")
PART_LABEL = {
    "literal": "one normalized layer (MLP 784-100-10)",
    "mlp": "sigmoid MLP 784-100-100-100-10",
    "cnn": "VGG-16 width 0.125, full BN",
}
WEIGHT_LAYERS = ("Linear", "Conv2d")
CLASSIFIERS = ("head.", "classifier.")


def setting_of(run: Run) -> tuple[str, bool] | None:
    """(part, detached) of the run, from its setting override; None for another run."""
    value = run.override_values.get(AXIS, "")
    part, _, grad = value.rpartition("_")
    if part not in PARTS or grad not in ("attached", "detached"):
        return None
    return part, grad == "detached"


def norm_curves(params: pd.DataFrame) -> pd.DataFrame:
    """Per probe step: ``bias`` and ``weight``, the norms over the layers feeding norm slots."""
    feeding = params[
        params["module"].isin(WEIGHT_LAYERS) & ~params["param"].str.startswith(CLASSIFIERS)
    ]
    kind = feeding["param"].str.rsplit(".", n=1).str[-1]
    out = {}
    for name in ("bias", "weight"):
        part = feeding[kind == name]
        out[name] = part.groupby("step")["norm"].apply(lambda s: math.sqrt((s**2).sum()))
    return pd.DataFrame(out).reset_index()


def read_params(run: Run) -> pd.DataFrame:
    """The run's params.csv (empty without one)."""
    path = run.path / "params.csv"
    if not path.is_file():
        return pd.DataFrame(columns=["step", "param", "module", "norm"])
    return pd.read_csv(path)


def curves(runs: list[Run]) -> pd.DataFrame:
    """Every run's norms and errors against steps: part, detached, seed, step, bias, weight,
    val_error (%), train_loss (the evaluations' rows; NaN between them)."""
    frames = []
    for r in runs:
        s = setting_of(r)
        if s is None:
            continue
        norms = norm_curves(read_params(r))
        metrics = r.metrics[["step", "val_error", "train_loss"]] if not r.metrics.empty else None
        if metrics is not None:
            metrics = metrics.assign(val_error=100 * metrics["val_error"])
            norms = norms.merge(metrics, on="step", how="outer")
        frames.append(norms.assign(part=s[0], detached=s[1], seed=r.seed, run=str(r.path)))
    if not frames:
        return pd.DataFrame()
    return pd.concat(frames, ignore_index=True).sort_values(["part", "detached", "seed", "step"])


def _at(c: pd.DataFrame, column: str, step: float) -> float:
    """``column`` at the last probe step at or before ``step`` (NaN when none)."""
    rows = c[(c["step"] <= step) & c[column].notna()]
    return float(rows[column].iloc[-1]) if len(rows) else math.nan


def points(runs: list[Run], cur: pd.DataFrame) -> pd.DataFrame:
    """One row per complete run: the norms at step 0, half-way and the end, and the final error.

    ``bias_growth`` = ln(bias(T) / bias(T/2)): how much |b| still grows in the second half;
    ``weight_growth`` = ln(weight(T) / weight(0)).
    """
    rows = []
    for r in runs:
        s = setting_of(r)
        if s is None or r.status != "complete" or cur.empty:
            continue
        c = cur[cur["run"] == str(r.path)]
        if c.empty:
            continue
        end = float(c["step"].max())
        b0, bh, bt = (_at(c, "bias", t) for t in (0, end / 2, end))
        w0, wt = _at(c, "weight", 0), _at(c, "weight", end)
        err = r.final_val_error
        rows.append(
            {
                "part": s[0],
                "detached": s[1],
                "seed": r.seed,
                "steps": int(end),
                "bias_0": b0,
                "bias_half": bh,
                "bias_end": bt,
                "bias_growth": math.log(bt / bh) if bh > 0 and bt > 0 else math.nan,
                "bias_change": bt - b0,
                "weight_0": w0,
                "weight_end": wt,
                "weight_growth": math.log(wt / w0) if w0 > 0 and wt > 0 else math.nan,
                "test_error": 100 * err if err is not None else math.nan,
                "images": r.val_images,
                "run": str(r.path),
            }
        )
    return pd.DataFrame(rows)


def by_seed(pts: pd.DataFrame, part: str, detached: bool, column: str) -> dict[int, float]:
    """``column`` of one setting's runs, by seed (finite values only)."""
    return seed_values(pts, column, part=part, detached=detached)
