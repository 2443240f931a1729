"""The gradient-flow claims (issue 20 §2; docs/papers.md §12), judged per seed by the shared rule
(:mod:`normbench.report.verdicts`). ``ln r`` is a run's ln(‖∂L/∂W_first‖ / ‖∂L/∂W_last‖)
(:mod:`.points`); depth D against the shallowest depth d of the grid, paired by seed:

- ``vanishing_without_bn``: without a norm, ln r(D) − ln r(d) < 0 by at least ln 10 (the first
  layer loses a factor 10 or more of its gradient, relative to the last, from d to D layers).
- ``bn_keeps_gradient``: with BN the same difference lies above −ln 10 (the interval does).
- ``bn_fewer_steps_deep``: at depth D, steps to 80% test accuracy without a norm minus with BN
  > 0, effect ≥ one evaluation interval; a run that never gets there counts as its length (so
  the difference is a lower bound).
- ``explodes_at_init_<act>`` (variant init): with BN, ReLU / tanh, at the initial weights:
  ln r(D) − ln r(d) > ln 10 (Yang et al. 2019: gradients explode with depth without skips).
"""

from __future__ import annotations

import dataclasses
import math

import pandas as pd

from normbench.report.flags import not_enough
from normbench.report.verdicts import Claim, Estimate, judge_difference, paired
from normbench.studies.gradient_flow.points import TARGET, by_seed

SOURCE_BN = "Ioffe & Szegedy 2015, §1 and §3.3 (docs/papers.md §12)"
SOURCE_MF = "Yang et al. 2019, mean field theory of BN (docs/papers.md §12)"
FACTOR = math.log(10)


def _claim(key, text, source, paper, ours, rule, verdict, scale) -> Claim:
    return Claim("gradient_flow", key, text, source, paper, ours, rule, verdict, scale)


def _missing(key: str, text: str, source: str, paper: str, needs: str, scale: str) -> Claim:
    """The claim without the runs it needs: no numbers, the verdict says what is missing."""
    return _claim(key, text, source, paper, "–", "–", not_enough(needs), scale)


def depths(pts: pd.DataFrame) -> tuple[int, int] | None:
    """The shallowest and the deepest depth of the grid (None with fewer than two)."""
    ds = sorted(set(pts["depth"])) if not pts.empty else []
    return (ds[0], ds[-1]) if len(ds) > 1 else None


def depth_change(pts: pd.DataFrame, norm: str, activation: str | None = None) -> Estimate | None:
    """ln r(D) − ln r(d), paired by seed (None without two depths)."""
    dd = depths(pts)
    if dd is None:
        return None
    d, deep = dd
    return paired(
        by_seed(pts, norm, d, "ln_ratio", activation),
        by_seed(pts, norm, deep, "ln_ratio", activation),
    )


def _shift(e: Estimate, by: float) -> Estimate:
    return dataclasses.replace(e, mean=e.mean + by, low=e.low + by, high=e.high + by)


def vanishing_without_bn(pts: pd.DataFrame, scale: str) -> Claim:
    dd = depths(pts)
    text = "Without BN, the first layer's gradient vanishes (relative to the last) as depth grows"
    paper = "sigmoid networks saturate and lose their gradient; BN prevents it (no number)"
    change = depth_change(pts, "none")
    if change is None or change.n < 2:
        return _missing(
            "vanishing_without_bn", text, SOURCE_BN, paper, "norm=none at two depths", scale
        )
    return _claim(
        "vanishing_without_bn",
        text,
        SOURCE_BN,
        paper,
        f"no norm, ln r({dd[1]}) − ln r({dd[0]}), paired by seed: {change.text()} "
        f"(a factor {math.exp(change.mean):.2g})",
        f"< 0, by at least ln 10 = {FACTOR:.2f}",
        judge_difference(change, -1, FACTOR),
        scale,
    )


def bn_keeps_gradient(pts: pd.DataFrame, scale: str) -> Claim:
    dd = depths(pts)
    text = "With BN, the first layer's gradient does not vanish as depth grows"
    paper = "BN keeps the inputs of the sigmoids out of the saturated regime (no number)"
    change = depth_change(pts, "batch")
    if change is None or change.n < 2:
        return _missing(
            "bn_keeps_gradient", text, SOURCE_BN, paper, "norm=batch at two depths", scale
        )
    return _claim(
        "bn_keeps_gradient",
        text,
        SOURCE_BN,
        paper,
        f"BN, ln r({dd[1]}) − ln r({dd[0]}), paired by seed: {change.text()} "
        f"(a factor {math.exp(change.mean):.2g})",
        f"the interval above −ln 10 = {-FACTOR:.2f} (less than a factor 10 lost)",
        judge_difference(_shift(change, FACTOR), +1, 0.0),
        scale,
    )


def bn_fewer_steps_deep(pts: pd.DataFrame, scale: str, eval_every: int) -> Claim:
    dd = depths(pts)
    text = f"In the deepest network, BN reaches {100 * TARGET:.0f}% test accuracy in fewer steps"
    paper = "BN trains deep sigmoid networks faster (Fig. 1, 3 layers; no number at depth)"
    if dd is None:
        return _missing("bn_fewer_steps_deep", text, SOURCE_BN, paper, "two depths", scale)
    deep = dd[1]

    def capped(norm: str) -> dict[int, float]:
        sel = pts[(pts["norm"] == norm) & (pts["depth"] == deep)]
        return {
            int(s): (float(v) if math.isfinite(v) else float(n))
            for s, v, n in zip(sel["seed"], sel["steps_to_target"], sel["steps"], strict=True)
        }

    none, bn = capped("none"), capped("batch")
    d = paired(bn, none)  # none − BN
    if d.n < 2:
        return _missing(
            "bn_fewer_steps_deep", text, SOURCE_BN, paper, "none and BN at the deepest depth", scale
        )
    never = sum(
        1
        for _, r in pts[(pts["norm"] == "none") & (pts["depth"] == deep)].iterrows()
        if not math.isfinite(r["steps_to_target"])
    )
    return _claim(
        "bn_fewer_steps_deep",
        text,
        SOURCE_BN,
        paper,
        f"depth {deep}: steps without a norm − with BN, paired by seed: {d.text(0)}"
        + (
            f" ({never} run(s) without a norm never got there: counted as their length)"
            if never
            else ""
        ),
        f"> 0, effect ≥ one evaluation interval ({eval_every} steps)",
        judge_difference(d, +1, eval_every),
        scale,
    )


def explodes_at_init(pts: pd.DataFrame, activation: str, scale: str) -> Claim:
    dd = depths(pts)
    key = f"explodes_at_init_{activation}"
    text = (
        f"At initialisation, a deep {activation} network with BN and no skip connections has a "
        "first-layer gradient that grows with depth (relative to the last layer's)"
    )
    paper = "gradients explode with depth at initialisation, for any nonlinearity [MEM]"
    change = depth_change(pts, "batch", activation)
    if change is None or change.n < 2:
        return _missing(key, text, SOURCE_MF, paper, f"{activation} BN runs at two depths", scale)
    none = depth_change(pts, "none", activation)
    return _claim(
        key,
        text,
        SOURCE_MF,
        paper,
        f"BN, ln r({dd[1]}) − ln r({dd[0]}) at the initial weights, paired by seed: "
        f"{change.text()} (a factor {math.exp(change.mean):.2g})"
        + (f"; without a norm: {none.text()}" if none is not None and none.n else ""),
        f"> 0, by at least ln 10 = {FACTOR:.2f}",
        judge_difference(change, +1, FACTOR),
        scale,
    )


def main_claims(pts: pd.DataFrame, scale: str, eval_every: int) -> list[Claim]:
    return [
        vanishing_without_bn(pts, scale),
        bn_keeps_gradient(pts, scale),
        bn_fewer_steps_deep(pts, scale, eval_every),
    ]


def init_claims(pts: pd.DataFrame, scale: str) -> list[Claim]:
    return [explodes_at_init(pts, act, scale) for act in ("relu", "tanh")]
