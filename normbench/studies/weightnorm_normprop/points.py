"""The numbers of the weightnorm_normprop study, per run, from what each run recorded.

A run's setting is its override ``sweep/weightnorm_normprop_setting=<name>``
(configs/sweep/weightnorm_normprop_setting/): ``cp_*`` ConvPool-CNN-C at batch 100, ``b1_*`` the
same network at batch 1, ``rn_*`` ResNet-50. Per run (:func:`points`):

- ``test_error``: the final error on the 10,000 test images (%); a run that diverged (the
  trainer stops it at a non-finite loss) or ended at chance counts as **90%**, chance with ten
  classes, so that a failure to train stays in the paired comparison instead of dropping out
  (``trained`` says which runs really finished);
- ``early_error``: the test error at :data:`EARLY_FRACTION` of the run's steps (the first
  evaluation at or after it), the speed of early convergence;
- ``ms_step``: the run's mean time of one training step (forward, backward, update; its
  summary.json, measured by the run itself); ``wall_s``: its training time;
- ``status``, ``error``: how the run ended (complete, diverged, or failed: refused by an error
  of its configuration, counted as no result) and the message it recorded.
"""

from __future__ import annotations

import math

import pandas as pd

from normbench.report.collect import Run

AXIS = "sweep/weightnorm_normprop_setting"
CHANCE = 90.0  # % error of a ten-class guess
EARLY_FRACTION = 0.25

#: Every setting of the grid, in the order of the tables, with its label.
LABEL = {
    "cp_none": "no norm",
    "cp_batch": "BN",
    "cp_weight": "WN",
    "cp_weight_mobn": "WN + mean-only BN",
    "cp_normprop": "NormProp",
    "cp_weight_noinit": "WN, no data init",
    "cp_weight_mobn_noinit": "WN + mean-only BN, no data init",
    "cp_weight_log": "WN, log-scale gain",
    "cp_weight_bound": "WN, ‖v‖ ≤ 1",
    "cp_weight_hilr": "WN, lr × 10",
    "cp_weight_log_hilr": "WN, log-scale gain, lr × 10",
    "cp_weight_bound_hilr": "WN, ‖v‖ ≤ 1, lr × 10",
    "b1_none": "no norm, batch 1",
    "b1_batch": "BN, batch 1",
    "b1_weight": "WN (no data init), batch 1",
    "b1_normprop": "NormProp, batch 1",
    "rn_batch": "BN",
    "rn_weight": "WN (BN's recipe)",
    "rn_weight_lowlr": "WN, lr / 10",
    "rn_weight_warmup": "WN, warm-up",
    "rn_weight_nozero": "WN, no zero-init of the last gain",
    "rn_weight_adam": "WN, Adam",
    "rn_weight_noinit": "WN, no data init",
}
#: The groups of settings, as the report shows them.
GROUPS = {
    "cp": "ConvPool-CNN-C, batch 100",
    "b1": "ConvPool-CNN-C, batch 1",
    "rn": "ResNet-50 width 0.125, batch 64",
}


def setting_of(run: Run) -> str | None:
    """The run's setting name; None for a run of another study."""
    setting = run.override_values.get(AXIS, "")
    return setting if setting in LABEL else None


def early_error(metrics: pd.DataFrame, steps: int) -> float:
    """Test error (%) at the first evaluation at or after EARLY_FRACTION of ``steps``."""
    if metrics.empty or not steps:
        return math.nan
    rows = metrics[metrics["step"] >= EARLY_FRACTION * steps].dropna(subset=["val_error"])
    return 100.0 * float(rows["val_error"].iloc[0]) if len(rows) else math.nan


def final_train_loss(metrics: pd.DataFrame) -> float:
    """The training loss of the last logged interval (mean over its steps); NaN if none."""
    if metrics.empty or "train_loss" not in metrics:
        return math.nan
    losses = metrics["train_loss"].dropna()
    return float(losses.iloc[-1]) if len(losses) else math.nan


def points(runs: list[Run]) -> pd.DataFrame:
    """One row per run of the study that ended (complete, diverged or failed)."""
    rows = []
    for r in runs:
        setting = setting_of(r)
        if setting is None or r.status not in ("complete", "diverged", "failed"):
            continue
        steps = int(r.summary.get("steps") or r.config.get("trainer", {}).get("steps", 0))
        err, message = r.final_val_error, str(r.summary.get("error", ""))
        status = r.status
        if status == "failed" and message.startswith("DivergedError"):
            status = "diverged"  # recorded as failed by runs before 2026-12-07
        trained = status == "complete" and err is not None and not r.at_chance
        error = 100.0 * err if trained else CHANCE
        rows.append(
            {
                "setting": setting,
                "group": setting.split("_")[0],
                "seed": r.seed,
                "status": status,
                "trained": trained,
                "test_error": error if status != "failed" else math.nan,
                "early_error": early_error(r.metrics, steps) if trained else CHANCE,
                "train_loss": final_train_loss(r.metrics),
                "images": r.val_images,
                "ms_step": float(
                    (r.summary.get("ms_per_step") or {}).get("train_step") or math.nan
                ),
                "wall_s": float(r.summary.get("wall_time_s") or math.nan),
                "error": message if status != "complete" else "",
                "run": str(r.path),
            }
        )
    return pd.DataFrame(rows)


def curves(runs: list[Run]) -> pd.DataFrame:
    """Test error against step and against the run's own training time, per run."""
    frames = []
    for r in runs:
        setting = setting_of(r)
        if setting is None or r.metrics.empty:
            continue
        m = r.metrics.dropna(subset=["val_error"])
        frames.append(
            pd.DataFrame(
                {
                    "setting": setting,
                    "seed": r.seed,
                    "step": m["step"],
                    "time_s": m["time"] if "time" in m else math.nan,
                    "test_error": 100.0 * m["val_error"],
                }
            )
        )
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
