"""The numbers of the covariate_shift study, per run and per probe step, from smoothness.csv and
shift.csv (``probes.smoothness``, normbench/probes/smoothness.py).

A run's model is its override ``sweep/covariate_shift_model=<mlp|vgg>``, its norm ``norm``. At
each smoothness probe step, over the step sizes η_k (and η = 0 for the loss)::

    grad_change  max_k ‖∇L(w − η_k g) − g‖₂           (Santurkar et al.'s gradient predictiveness:
    rel_change   max_k ‖∇L(w − η_k g) − g‖₂ / ‖g‖₂      smaller is more predictive)
    loss_range   max − min of L(w), L(w − η_k g)        (the loss variation along the step)
    beta         max_k ‖∇L(w − η_k g) − g‖₂ / ‖η_k g‖₂  (effective β-smoothness)
    shift_mean, shift_scale, shift_shape: the mean over the model's nonlinearities of
    shift.csv's columns (the per-step change of each channel's mean, scale and standardized
    shape)

and a run's value of each is the mean over its probe steps.
"""

from __future__ import annotations

import math

import pandas as pd

from normbench.report.collect import Run
from normbench.report.seeds import by_seed as seed_values

AXIS = "sweep/covariate_shift_model"
MODELS = ("mlp", "vgg")
NORMS = ("none", "batch", "noisy_batch")
MODEL_LABEL = {"mlp": "sigmoid MLP 784-100-100-100-10", "vgg": "VGG-16 width 0.125"}
NORM_LABEL = {"none": "no norm", "batch": "BN", "noisy_batch": "noisy BN"}
SHIFTS = ("shift_mean", "shift_scale", "shift_shape")
MEASURES = ("grad_change", "rel_change", "loss_range", "beta", *SHIFTS)


def setting_of(run: Run) -> tuple[str, str] | None:
    """(model, norm) of the run; None for another run."""
    model = run.override_values.get(AXIS, "")
    if model not in MODELS or run.norm not in NORMS:
        return None
    return model, run.norm


def per_step(smooth: pd.DataFrame, shift: pd.DataFrame) -> pd.DataFrame:
    """One row per probe step: the measures of the module docstring."""
    if smooth.empty:
        return pd.DataFrame(columns=["step", *MEASURES])
    g = smooth.groupby("step", sort=True)
    lows = g["loss"].min().combine(g["loss0"].min(), min)
    highs = g["loss"].max().combine(g["loss0"].max(), max)
    out = pd.DataFrame(
        {
            "grad_change": g["grad_change"].max(),
            "rel_change": g["rel_change"].max(),
            "loss_range": highs - lows,
            "beta": g["beta"].max(),
        }
    )
    for col in SHIFTS:
        known = not shift.empty and col in shift
        out[col] = shift.groupby("step")[col].mean() if known else math.nan
    return out.reset_index()


def _read(path) -> pd.DataFrame:
    return pd.read_csv(path) if path.is_file() and path.stat().st_size else pd.DataFrame()


def points(runs: list[Run]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(per complete run: model, norm, seed, test error and each measure's mean over the probe
    steps; per run and probe step: the measures, for the figure)."""
    rows, curves = [], []
    for r in runs:
        s = setting_of(r)
        if s is None or r.status != "complete":
            continue
        steps = per_step(_read(r.path / "smoothness.csv"), _read(r.path / "shift.csv"))
        err = r.final_val_error
        rows.append(
            {
                "model": s[0],
                "norm": s[1],
                "seed": r.seed,
                "test_error": 100 * err if err is not None else math.nan,
                "images": r.val_images,
                "probes": len(steps),
                **{m: float(steps[m].mean()) if len(steps) else math.nan for m in MEASURES},
                "run": str(r.path),
            }
        )
        curves.append(steps.assign(model=s[0], norm=s[1], seed=r.seed))
    curve = pd.concat(curves, ignore_index=True) if curves else pd.DataFrame()
    return pd.DataFrame(rows), curve


def by_seed(pts: pd.DataFrame, model: str, norm: str, column: str) -> dict[int, float]:
    return seed_values(pts, column, model=model, norm=norm)
