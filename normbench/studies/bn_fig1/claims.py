"""BN paper Figure 1's claims, judged per seed by the shared rule (normbench/report/verdicts.py).

- **fewer steps**: at each accuracy level, the steps no BN needs minus the steps BN needs, paired
  by seed; an effect must be at least one evaluation interval (the resolution of "first
  evaluation at or above the level").
- **higher throughout**: at each evaluation after step 0, BN's accuracy minus no BN's (points),
  paired by seed; an effect must clear twice the binomial noise of the evaluated images.
- **stabler percentiles**: per seed, the largest move of the typical unit's 15/50/85th
  percentile from step 0 (no BN minus BN).
- **higher learning rate** (the lr variant): at each learning rate, no BN's final error minus
  BN's (points), paired by seed; BN "allows a higher learning rate" when at the highest rate BN's
  error is lower.
"""

from __future__ import annotations

import math

import pandas as pd

from normbench.report.collect import Run
from normbench.report.figures import PERCENTILES, last_hidden_layer
from normbench.report.papers import BN_FIG1
from normbench.report.verdicts import (
    NOT_SHOWN,
    SHOWN,
    SUGGESTIVE,
    Claim,
    estimate,
    judge_difference,
    min_effect,
    paired,
)

SOURCE = "Ioffe & Szegedy 2015, Fig. 1 (docs/papers.md §1.1)"
LEVELS = (0.70, 0.75, 0.80, 0.82, 0.84, 0.85, 0.86, 0.87, 0.88, 0.90)


def _by_seed(runs: list[Run], norm: str) -> dict[int, Run]:
    return {r.seed: r for r in runs if r.norm == norm and not r.metrics.empty}


def first_step(run: Run, level: float) -> float:
    """The first evaluated step at which the run's accuracy is at least ``level`` (nan: never)."""
    hit = run.metrics[1.0 - run.metrics["val_error"] >= level]["step"]
    return float(hit.iloc[0]) if len(hit) else math.nan


def steps_per_seed(runs: list[Run]) -> pd.DataFrame:
    """One row per (level, seed): steps to the level without and with BN, and the saving."""
    none, bn = _by_seed(runs, "none"), _by_seed(runs, "batch")
    rows = []
    for level in LEVELS:
        for seed in sorted(set(none) & set(bn)):
            a, b = first_step(none[seed], level), first_step(bn[seed], level)
            rows.append(
                {"level": level, "seed": seed, "steps_no_bn": a, "steps_bn": b, "saved": a - b}
            )
    return pd.DataFrame(rows, columns=["level", "seed", "steps_no_bn", "steps_bn", "saved"])


def _eval_every(runs: list[Run]) -> int:
    return int((runs[0].config.get("trainer") or {}).get("eval_every", 1)) if runs else 1


def _val_images(runs: list[Run]) -> int | None:
    return runs[0].val_images if runs else None


def fewer_steps_claim(runs: list[Run], scale: str) -> tuple[Claim, pd.DataFrame]:
    table = steps_per_seed(runs)
    effect = _eval_every(runs)
    parts: list[str] = []
    by_verdict: dict[str, list[str]] = {}
    for level, g in table.groupby("level"):
        both = g.dropna(subset=["steps_no_bn", "steps_bn"])
        if both.empty:
            continue
        d = estimate(both["saved"])
        by_verdict.setdefault(judge_difference(d, +1, effect), []).append(f"{level:.2f}")
        parts.append(f"{level:.2f}: {d.text(0)}")
    if not parts:
        verdict = "not enough runs (no accuracy level reached by both norms in the same seed)"
    elif set(by_verdict) == {SHOWN}:
        verdict = f"{SHOWN} at every level both reach ({len(by_verdict[SHOWN])})"
    else:
        shown = by_verdict.pop(SHOWN, [])
        head = f"{NOT_SHOWN} at all levels" + (f": {SHOWN} at {', '.join(shown)}" if shown else "")
        verdict = "; ".join([head, *(f"{v} at {', '.join(lv)}" for v, lv in by_verdict.items())])
    claim = Claim(
        "bn_fig1",
        "fewer_steps",
        "BN reaches a given test accuracy in fewer steps",
        SOURCE,
        "read off Fig. 1(a) (no number)",
        "steps saved by BN, per level, paired by seed: " + "; ".join(parts),
        f"per level: paired by seed, effect ≥ one evaluation interval ({effect} steps)",
        verdict,
        scale,
    )
    return claim, table


def higher_throughout_claim(runs: list[Run], scale: str) -> Claim:
    none, bn = _by_seed(runs, "none"), _by_seed(runs, "batch")
    images = _val_images(runs)
    steps = sorted(
        set.intersection(*(set(r.metrics["step"]) for r in [*none.values(), *bn.values()]))
        if none and bn
        else set()
    )
    shown, suggested, judged, worst = 0, 0, 0, None
    for step in (s for s in steps if s > 0):
        acc = {
            k: {
                s: 100 * (1 - float(r.metrics.set_index("step").loc[step, "val_error"]))
                for s, r in runs_.items()
            }
            for k, runs_ in (("none", none), ("bn", bn))
        }
        d = paired(acc["none"], acc["bn"])
        err = 100 - sum(acc["bn"].values()) / len(acc["bn"])
        judged += 1
        said = judge_difference(d, +1, min_effect(err, images or 0))
        shown += said == SHOWN
        suggested += said.startswith(SUGGESTIVE + " (")
        if said != SHOWN and (worst is None or d.mean < worst[1].mean):
            worst = (step, d)
    if not judged:
        verdict = "not enough runs (no evaluation of both norms at one step after step 0)"
    elif shown == judged:
        verdict = f"{SHOWN} at all {judged} evaluations"
    elif shown + suggested == judged:
        verdict = f"{SUGGESTIVE} (n = {d.n}): BN ahead at all {judged} evaluations"
    else:
        verdict = f"{NOT_SHOWN}: BN ahead beyond the noise at {shown} of {judged} evaluations"
    ours = (
        f"BN − no BN accuracy, paired by seed: ahead beyond noise at {shown}/{judged} evaluations"
    )
    if worst:
        ours += f"; weakest at step {worst[0]:,}: {worst[1].text()} points"
    return Claim(
        "bn_fig1",
        "higher_throughout",
        "BN has higher test accuracy throughout training",
        SOURCE,
        "BN ≈ 0.98+ vs ≈ 0.96–0.97 late in training (read off Fig. 1(a))",
        ours,
        f"at each evaluation: paired by seed, effect ≥ 2 binomial se on {images or '?'} images",
        verdict,
        scale,
    )


def largest_move(run: Run, layer: str) -> float:
    """The largest move of the typical unit's percentiles from the first probe step."""
    a = run.activations[run.activations["layer"] == layer].sort_values("step")
    if a.empty:
        return math.nan
    return max(float((a[c] - a[c].iloc[0]).abs().max()) for c in PERCENTILES)


def stabler_claim(runs: list[Run], scale: str) -> Claim:
    layer = last_hidden_layer(runs)
    moves = (
        {
            norm: {r.seed: largest_move(r, layer) for r in runs if r.norm == norm}
            for norm in ("none", "batch")
        }
        if layer
        else {"none": {}, "batch": {}}
    )
    d = paired(moves["batch"], moves["none"])  # no BN's move − BN's: > 0 when BN is stabler
    return Claim(
        "bn_fig1",
        "stabler",
        BN_FIG1["claims"][1],
        SOURCE,
        "read off Fig. 1(b, c) (no number)",
        f"largest percentile move from step 0, no BN − BN: {d.text()} "
        f"(no BN {_mean(moves['none'])}, BN {_mean(moves['batch'])})",
        "paired by seed, effect ≥ 0.5 (sigmoid-input units)",
        judge_difference(d, +1, 0.5),
        scale,
    )


def _mean(values: dict[int, float]) -> str:
    xs = [v for v in values.values() if math.isfinite(v)]
    return f"{sum(xs) / len(xs):.2f}" if xs else "–"


def higher_lr_claim(runs: list[Run], scale: str) -> tuple[Claim, pd.DataFrame]:
    """BN − no BN final error at each learning rate (the lr variant's grid)."""
    rows = []
    for r in runs:
        if r.final_val_error is not None:
            lr = float((r.config.get("optim") or {}).get("lr"))
            rows.append(
                {"lr": lr, "norm": r.norm, "seed": r.seed, "error": 100 * r.final_val_error}
            )
    table = pd.DataFrame(rows, columns=["lr", "norm", "seed", "error"])
    parts, top = [], None
    for lr, g in table.groupby("lr"):
        d = paired(
            *(g[g.norm == n].set_index("seed")["error"].to_dict() for n in ("batch", "none"))
        )
        parts.append(f"lr {lr:g}: {d.text()}")
        top = (lr, d)
    if top is None:
        return Claim(
            "bn_fig1_lr",
            "higher_lr",
            "BN allows a higher learning rate",
            SOURCE,
            "–",
            "no runs",
            "",
            "not enough runs",
            scale,
        ), table
    verdict = judge_difference(top[1], +1)
    return Claim(
        "bn_fig1_lr",
        "higher_lr",
        "BN allows a higher learning rate: at the highest rate tried, BN's final error is lower",
        "Ioffe & Szegedy 2015 §4.2 (docs/papers.md §1.2)",
        "qualitative (no number for this network)",
        "no BN − BN final error (points), paired by seed: " + "; ".join(parts),
        f"at the highest lr ({top[0]:g}): paired by seed, effect ≥ 0.5 points",
        verdict,
        scale,
    ), table
