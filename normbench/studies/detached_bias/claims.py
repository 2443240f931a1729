"""The section-2 claims (Ioffe & Szegedy 2015, §2; docs/papers.md §12), judged per seed by the
shared rule (:mod:`normbench.report.verdicts`), for each part (literal, mlp, cnn):

- ``bias_grows_<part>``: with the statistics detached, ‖b‖ keeps growing: over the second half
  of training ln(‖b‖(T) / ‖b‖(T/2)) > 0, by at least ln 1.1 (10% more in the second half).
- ``bias_bounded_<part>``: with them in the gradient, ‖b‖ stays where it started: ‖b‖(T) − ‖b‖(0)
  lies within ±1% of what the detached runs of the part grew to (equivalence).
- ``detached_worse_<part>``: training with the detached update ends with a higher test error
  than with the statistics in the gradient (paired by seed, minimum effect on 10,000 images):
  the paper's "the normalization must be inside the gradient". The paper's own wording is that
  b grows "while the loss does not change"; the network's other weights still learn, so what can
  be measured is whether the detached update trains worse.
- ``weights_grow_cnn``: with mean and variance detached (full BN), the weights feeding the norms
  grow more than with BN: ln(‖W‖(T)/‖W‖(0)) detached − attached > ln 1.1 (the paper: "the model
  blows up" the same way).
"""

from __future__ import annotations

import math

import pandas as pd

from normbench.report.flags import not_enough
from normbench.report.verdicts import (
    Claim,
    estimate,
    judge_difference,
    judge_equivalence,
    min_effect,
    paired,
)
from normbench.studies.detached_bias.points import PART_LABEL, PARTS, by_seed

SOURCE = "Ioffe & Szegedy 2015, §2 (docs/papers.md §12)"
GROWTH = math.log(1.1)  # the smallest growth (of ‖b‖ over the second half, of ‖W‖) called one
BOUND = 0.01  # bias_bounded's margin: 1% of the detached runs' ‖b‖ at the end


def _claim(key: str, text: str, paper: str, ours: str, rule: str, verdict: str, scale: str):
    return Claim("detached_bias", key, text, SOURCE, paper, ours, rule, verdict, scale)


def bias_grows(pts: pd.DataFrame, part: str, scale: str) -> Claim:
    key = f"bias_grows_{part}"
    text = (
        f"{PART_LABEL[part]}: with the batch statistics treated as constants in the gradient "
        "step, the bias b in front of the norm grows without bound"
    )
    paper = "b grows indefinitely (a thought experiment; no number)"
    g = by_seed(pts, part, True, "bias_growth")
    if len(g) < 2:
        return _claim(key, text, paper, "–", "–", not_enough("2 or more detached runs"), scale)
    d = estimate(g.values())
    end = by_seed(pts, part, True, "bias_end")
    return _claim(
        key,
        text,
        paper,
        f"ln(‖b‖(T) / ‖b‖(T/2)), detached: {d.text(3)}; ‖b‖ at the end "
        f"{min(end.values()):.3g}–{max(end.values()):.3g} (from 0)",
        f"ln ratio > 0, at least ln 1.1 = {GROWTH:.3f} (10% more in the second half)",
        judge_difference(d, +1, GROWTH),
        scale,
    )


def bias_bounded(pts: pd.DataFrame, part: str, scale: str) -> Claim:
    key = f"bias_bounded_{part}"
    text = f"{PART_LABEL[part]}: with the statistics inside the gradient, b stays bounded"
    paper = "∂ℓ/∂b = 0 when E[x] depends on b: b does not move"
    change = by_seed(pts, part, False, "bias_change")
    grown = by_seed(pts, part, True, "bias_end")
    if len(change) < 2:
        return _claim(key, text, paper, "–", "–", not_enough("2 or more attached runs"), scale)
    margin = float(f"{BOUND * sum(grown.values()) / len(grown):.2g}") if grown else math.nan
    d = estimate(change.values())
    if not math.isfinite(margin) or margin <= 0:
        verdict = not_enough("detached runs to set the margin (1% of their ‖b‖ at the end)")
    else:
        verdict = judge_equivalence(d, margin)
    return _claim(
        key,
        text,
        paper,
        f"‖b‖(T) − ‖b‖(0), attached: {d.text(3)}",
        f"the interval inside ±1% of the detached runs' ‖b‖ at the end (±{margin:.3g})",
        verdict,
        scale,
    )


def detached_worse(pts: pd.DataFrame, part: str, scale: str) -> Claim:
    key = f"detached_worse_{part}"
    text = (
        f"{PART_LABEL[part]}: training with the statistics detached ends with a higher test "
        "error than with them in the gradient"
    )
    paper = "the normalization must be inside the gradient step (the loss does not improve)"
    att, det = by_seed(pts, part, False, "test_error"), by_seed(pts, part, True, "test_error")
    d = paired(att, det)
    if d.n < 2:
        return _claim(key, text, paper, "–", "–", not_enough("attached and detached runs"), scale)
    images = pts["images"].dropna()
    mean = sum([*att.values(), *det.values()]) / (len(att) + len(det))
    effect = min_effect(mean, int(images.iloc[0]) if len(images) else None)
    return _claim(
        key,
        text,
        paper,
        f"test error detached − attached, paired by seed: {d.text()} points",
        f"> 0, effect ≥ {effect:.2f} points",
        judge_difference(d, +1, effect),
        scale,
    )


def weights_grow(pts: pd.DataFrame, scale: str) -> Claim:
    text = (
        f"{PART_LABEL['cnn']}: with the variance detached too, the weights feeding the norms "
        "grow more than with BN"
    )
    paper = "the model blows up (the variance version of the §2 argument; no number)"
    att, det = (
        by_seed(pts, "cnn", False, "weight_growth"),
        by_seed(pts, "cnn", True, "weight_growth"),
    )
    d = paired(att, det)
    if d.n < 2:
        return _claim("weights_grow_cnn", text, paper, "–", "–", not_enough("cnn runs"), scale)
    return _claim(
        "weights_grow_cnn",
        text,
        paper,
        f"ln(‖W‖(T)/‖W‖(0)) detached − attached, paired by seed: {d.text(3)}",
        f"> 0, at least ln 1.1 = {GROWTH:.3f}",
        judge_difference(d, +1, GROWTH),
        scale,
    )


def all_claims(pts: pd.DataFrame, scale: str) -> list[Claim]:
    claims = []
    for part in PARTS:
        claims += [
            bias_grows(pts, part, scale),
            bias_bounded(pts, part, scale),
            detached_worse(pts, part, scale),
        ]
    return [*claims, weights_grow(pts, scale)]
