"""The numbers of the recurrent study, per run, from metrics.csv, hidden_grads.csv
(``probes.hidden_grads``) and summary.json.

A run's option is its override ``sweep/recurrent_option=<option>``. Per complete run:

- ``final_error``: the validation (test) error at the last step, %; ``best_error`` the lowest of
  its evaluations; ``mean_error`` the mean over its evaluations after step 0 (the area under the
  error curve: how fast *and* how far it trained);
- ``steps_to_target``: the first evaluated step whose error is at most :data:`TARGET_ERROR`; a
  run that never gets there counts as its last step + one evaluation interval (``reached``
  false), which can only make a claim of "faster" harder to pass for it;
- ``ms_per_step``: training-step wall time (summary.json), and ``diverged``: a non-finite loss;
- ``grad_first`` / ``grad_last`` and ``grad_ratio``: ‖∂L/∂h_1‖ / ‖∂L/∂h_T‖ of the top layer at
  step 0 (ratio > 1: the gradient grows back through time; < 1: it vanishes), and the same at the
  last probe step (``*_end``).
"""

from __future__ import annotations

import math

import pandas as pd

from normbench.report.collect import Run
from normbench.report.seeds import by_seed as seed_values
from normbench.studies.study import recorded

AXIS = "sweep/recurrent_option"
OPTIONS = ("none", "vertical", "shared", "per_step", "layer")
LABEL = {
    "none": "no norm (torch.nn.LSTM)",
    "vertical": "BN vertical only",
    "shared": "BN horizontal, shared statistics",
    "per_step": "BN horizontal, per-step statistics (Cooijmans)",
    "layer": "LN (Ba et al.)",
}
#: The validation error (%) that "steps to a target error" counts up to.
TARGET_ERROR = 15.0


def option_of(run: Run) -> str | None:
    """The run's option; None for another run."""
    option = run.override_values.get(AXIS, "")
    return option if option in OPTIONS else None


def _read(path) -> pd.DataFrame:
    return pd.read_csv(path) if path.is_file() and path.stat().st_size else pd.DataFrame()


def steps_to(metrics: pd.DataFrame, target: float) -> tuple[float, bool]:
    """(first evaluated step with error ≤ ``target`` %, reached); not reached: the last step plus
    one evaluation interval."""
    m = metrics[metrics["step"] > 0].dropna(subset=["val_error"])
    if m.empty:
        return math.nan, False
    hit = m[100 * m["val_error"] <= target]
    if not hit.empty:
        return float(hit["step"].iloc[0]), True
    steps = m["step"].to_numpy()
    interval = float(steps[-1] - steps[-2]) if len(steps) > 1 else float(steps[-1])
    return float(steps[-1]) + interval, False


def grad_profile(grads: pd.DataFrame) -> pd.DataFrame:
    """The top layer's ‖∂L/∂h_t‖ against t at every probe step (step, t, grad_norm)."""
    if grads.empty:
        return pd.DataFrame(columns=["step", "t", "grad_norm"])
    top = grads[grads["layer"] == grads["layer"].max()]
    return top[["step", "t", "grad_norm"]].sort_values(["step", "t"])


def _ratio(profile: pd.DataFrame, step: float) -> tuple[float, float, float]:
    at = profile[profile["step"] == step].sort_values("t")
    if at.empty:
        return math.nan, math.nan, math.nan
    first, last = float(at["grad_norm"].iloc[0]), float(at["grad_norm"].iloc[-1])
    return first, last, first / last if last > 0 else math.nan


def points(runs: list[Run]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(per complete run: the numbers of the module docstring; per run, probe step and t: the
    top layer's ‖∂L/∂h_t‖, for the figure)."""
    rows, curves = [], []
    for r in runs:
        option = option_of(r)
        if option is None or r.status != "complete":
            continue
        m = r.metrics
        errors = 100 * m.loc[m["step"] > 0, "val_error"] if not m.empty else pd.Series()
        reached_at, reached = steps_to(m, TARGET_ERROR) if not m.empty else (math.nan, False)
        profile = grad_profile(_read(r.path / "hidden_grads.csv"))
        probe_steps = sorted(profile["step"].unique()) if not profile.empty else []
        g0 = _ratio(profile, 0) if probe_steps else (math.nan,) * 3
        g1 = _ratio(profile, probe_steps[-1]) if probe_steps else (math.nan,) * 3
        err = r.final_val_error
        loss = m["train_loss"].dropna() if "train_loss" in m else pd.Series()
        rows.append(
            {
                "option": option,
                "seed": r.seed,
                "final_error": 100 * err if err is not None else math.nan,
                "best_error": float(errors.min()) if len(errors) else math.nan,
                "mean_error": float(errors.mean()) if len(errors) else math.nan,
                "steps_to_target": reached_at,
                "reached": reached,
                "images": r.val_images,
                "eval_every": recorded(r, "trainer.eval_every", math.nan),
                "ms_per_step": (r.summary.get("ms_per_step") or {}).get("train_step", math.nan),
                "diverged": bool(len(loss) and not all(math.isfinite(v) for v in loss)),
                # the logged training losses, summed: two runs that trained alike (shared and
                # per-step BN of one seed: the same training forward) have the same sum
                "train_loss_sum": float(loss.sum()) if len(loss) else math.nan,
                "grad_first": g0[0],
                "grad_last": g0[1],
                "grad_ratio": g0[2],
                "grad_first_end": g1[0],
                "grad_last_end": g1[1],
                "grad_ratio_end": g1[2],
                "run": str(r.path),
            }
        )
        if not profile.empty:
            curves.append(profile.assign(option=option, seed=r.seed))
    curve = pd.concat(curves, ignore_index=True) if curves else pd.DataFrame()
    return pd.DataFrame(rows), curve


def by_seed(pts: pd.DataFrame, option: str, column: str) -> dict[int, float]:
    """``column`` of ``option``'s runs, by seed (finite values only)."""
    return seed_values(pts, column, option=option)
