"""The recurrent-network claims (docs/papers.md §13), judged per seed by the shared rule
(:mod:`normbench.report.verdicts`):

- ``shared_worse``: horizontal BN with statistics shared across time ends with a higher test error
  than with per-step statistics (same slots, same γ init 0.1: the statistics are the only
  difference); minimum effect :func:`~normbench.report.verdicts.min_effect`. The spread over
  seeds of both is given beside it (stability).
- ``per_step_as_good_as_ln``: per-step BN trains at least as well as LN: the final test error
  of per-step BN − LN, paired by seed, has its whole 95% interval below the margin
  (non-inferiority, the margin being the minimum effect); "opposite" when the interval lies above
  it (per-step BN clearly worse).
- ``ln_faster`` / ``per_step_faster``: LN, and recurrent (per-step) BN, reach the target error
  in fewer steps than no norm: no norm − option > 0 in steps to :data:`.points.TARGET_ERROR`,
  minimum effect one evaluation interval (the resolution of the measure).
- ``vertical_speeds``: vertical-only BN reaches the target in fewer steps than no norm (Laurent
  et al.: it speeds training); ``vertical_less``: ... but in more steps than per-step BN (it
  helps less).
"""

from __future__ import annotations

import dataclasses
import math

import pandas as pd

from normbench.report.flags import not_enough
from normbench.report.verdicts import Claim, judge_difference, min_effect, paired
from normbench.studies.recurrent.points import LABEL, TARGET_ERROR, by_seed

SOURCE_COOIJMANS = "Cooijmans et al. 2017 (docs/papers.md §13)"
SOURCE_LAURENT = "Laurent et al. 2016 (docs/papers.md §13)"
SOURCE_BA = "Ba et al. 2016; Cooijmans et al. 2017 (docs/papers.md §13)"


def _claim(key, text, source, paper, ours, rule, verdict, scale) -> Claim:
    return Claim("recurrent", key, text, source, paper, ours, rule, verdict, scale)


def _mean(values: dict[int, float]) -> float:
    return sum(values.values()) / len(values) if values else math.nan


def _sd(values: dict[int, float]) -> float:
    xs = list(values.values())
    if len(xs) < 2:
        return math.nan
    m = sum(xs) / len(xs)
    return math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))


def _effect(pts: pd.DataFrame, *errors: dict[int, float]) -> float:
    images = pts["images"].dropna() if "images" in pts else pd.Series()
    values = [v for e in errors for v in e.values()]
    mean = sum(values) / len(values) if values else None
    return min_effect(mean, int(images.iloc[0]) if len(images) else None)


def _same_training(pts: pd.DataFrame) -> str:
    """How many seeds' shared and per-step runs logged the same training losses (each time step
    normalizes with its own batch's statistics in both: they differ in the running statistics
    that evaluation uses)."""
    if "train_loss_sum" not in pts:
        return ""
    a, b = by_seed(pts, "shared", "train_loss_sum"), by_seed(pts, "per_step", "train_loss_sum")
    seeds = [s for s in a if s in b]
    same = [s for s in seeds if abs(a[s] - b[s]) <= 1e-9 * max(abs(a[s]), 1.0)]
    if not seeds:
        return ""
    return (
        f"; the training losses of the two are equal at every logged step in {len(same)} of "
        f"{len(seeds)} seeds: trained alike (each step normalized by its batch's statistics), "
        "they differ in the running statistics evaluation uses, one set for all steps or one "
        "per step"
    )


def shared_worse(pts: pd.DataFrame, scale: str) -> Claim:
    key = "shared_worse"
    text = (
        "Horizontal BN with statistics shared across time steps ends at a higher test error "
        "than with separate statistics per step"
    )
    paper = (
        "the best recurrent BN keeps separate statistics per time step (Cooijmans et al., as Ba "
        "et al. cite it) [READ-3P]; shared statistics hurt (Laurent et al.) [MEM]; no number"
    )
    shared, per_step = (
        by_seed(pts, "shared", "final_error"),
        by_seed(pts, "per_step", "final_error"),
    )
    d = paired(per_step, shared)
    if d.n < 2:
        return _claim(
            key, text, SOURCE_COOIJMANS, paper, "–", "–", not_enough("paired seeds"), scale
        )
    effect = _effect(pts, shared, per_step)
    return _claim(
        key,
        text,
        SOURCE_COOIJMANS,
        paper,
        f"test error, shared − per-step, paired by seed: {d.text()} points (shared "
        f"{_mean(shared):.2f}% sd {_sd(shared):.2f}, per-step {_mean(per_step):.2f}% sd "
        f"{_sd(per_step):.2f} over seeds){_same_training(pts)}",
        f"> 0, effect ≥ {effect:.2f} points",
        judge_difference(d, +1, effect),
        scale,
    )


def per_step_as_good_as_ln(pts: pd.DataFrame, scale: str) -> Claim:
    key = "per_step_as_good_as_ln"
    text = "Recurrent BN with per-step statistics (Cooijmans) trains at least as well as LN"
    paper = (
        "sequential MNIST: LSTM 98.9% → BN-LSTM 99.0%, permuted 90.2% → 95.4% test accuracy "
        "(Cooijmans et al.) [MEM]; LN is the usual answer for RNNs (Ba et al.), no common table"
    )
    per_step, ln = by_seed(pts, "per_step", "final_error"), by_seed(pts, "layer", "final_error")
    d = paired(ln, per_step)
    if d.n < 2:
        return _claim(key, text, SOURCE_BA, paper, "–", "–", not_enough("paired seeds"), scale)
    margin = _effect(pts, per_step, ln)
    shifted = dataclasses.replace(d, mean=d.mean - margin, low=d.low - margin, high=d.high - margin)
    verdict = judge_difference(shifted, -1, 0.0)
    return _claim(
        key,
        text,
        SOURCE_BA,
        paper,
        f"test error, per-step BN − LN, paired by seed: {d.text()} points (per-step "
        f"{_mean(per_step):.2f}%, LN {_mean(ln):.2f}%)",
        f"the interval below +{margin:.2f} points (non-inferiority margin: the minimum effect)",
        verdict,
        scale,
    )


def faster(
    pts: pd.DataFrame,
    option: str,
    than: str,
    key: str,
    text: str,
    paper: str,
    source: str,
    scale: str,
) -> Claim:
    """``than`` − ``option`` in steps to the target error > 0, by one evaluation interval."""
    a, b = by_seed(pts, option, "steps_to_target"), by_seed(pts, than, "steps_to_target")
    d = paired(a, b)
    if d.n < 2:
        return _claim(key, text, source, paper, "–", "–", not_enough("paired seeds"), scale)
    interval = float(pts["eval_every"].dropna().max()) if "eval_every" in pts else 0.0
    missed = {
        o: int((~pts.loc[pts["option"] == o, "reached"].astype(bool)).sum()) for o in (option, than)
    }
    note = "; ".join(
        f"{LABEL[o]} did not reach it in {n} run(s) (counted as last step + one interval)"
        for o, n in missed.items()
        if n
    )
    return _claim(
        key,
        text,
        source,
        paper,
        f"steps to {TARGET_ERROR:g}% test error, {LABEL[than]} − {LABEL[option]}, paired by seed: "
        f"{d.text(0)} steps ({LABEL[option]} {_mean(a):.0f}, {LABEL[than]} {_mean(b):.0f})"
        + (f"; {note}" if note else ""),
        f"> 0, effect ≥ {interval:.0f} steps (one evaluation interval)",
        judge_difference(d, +1, interval),
        scale,
    )


def all_claims(pts: pd.DataFrame, scale: str) -> list[Claim]:
    return [
        shared_worse(pts, scale),
        per_step_as_good_as_ln(pts, scale),
        faster(
            pts,
            "layer",
            "none",
            "ln_faster",
            f"LN reaches {TARGET_ERROR:g}% test error in fewer steps than no norm",
            "LN speeds up the training of LSTMs (Ba et al., abstract) [READ abstract]",
            SOURCE_BA,
            scale,
        ),
        faster(
            pts,
            "per_step",
            "none",
            "per_step_faster",
            f"Recurrent BN (per-step statistics) reaches {TARGET_ERROR:g}% test error in fewer "
            "steps than no norm",
            "BN-LSTM converges faster (Cooijmans et al., abstract) [READ abstract]",
            SOURCE_COOIJMANS,
            scale,
        ),
        faster(
            pts,
            "vertical",
            "none",
            "vertical_speeds",
            f"Vertical-only BN reaches {TARGET_ERROR:g}% test error in fewer steps than no norm",
            "BN on the input-to-hidden transitions can speed up convergence, not generalization "
            "(Laurent et al.) [READ abstract]",
            SOURCE_LAURENT,
            scale,
        ),
        faster(
            pts,
            "per_step",
            "vertical",
            "vertical_less",
            "Vertical-only BN helps less: it needs more steps to "
            f"{TARGET_ERROR:g}% test error than recurrent BN with per-step statistics",
            "BN of the hidden-to-hidden transition too gives faster convergence than of the input "
            "alone (Cooijmans et al., abstract) [READ abstract]; no number",
            SOURCE_COOIJMANS,
            scale,
        ),
    ]
