"""The γ/β claims (Ioffe & Szegedy 2015, §3; docs/papers.md §12), judged per seed by the shared
rule (:mod:`normbench.report.verdicts`), for each model (mlp, resnet):

- ``plain_worse_<model>``: BN without γ and β ends with a higher test error than with them
  (paired by seed; minimum effect on the 10,000 test images). "Not shown" with an interval
  around 0 means they do not matter at this scale.
- ``gamma_moves_<model>`` / ``beta_moves_<model>``: the learned γ and β end away from their
  initial 1 and 0: the mean over layers of rms(γ − 1) (rms(β)) exceeds MOVED, i.e. the
  interval of (deviation − MOVED) over seeds lies above 0.
"""

from __future__ import annotations

import dataclasses

import pandas as pd

from normbench.report.flags import not_enough
from normbench.report.verdicts import Claim, estimate, judge_difference, min_effect, paired
from normbench.studies.gamma_beta.points import MODEL_LABEL, MODELS, by_seed

SOURCE = "Ioffe & Szegedy 2015, §3 (docs/papers.md §12)"
MOVED = 0.1  # rms deviation from 1 (γ) or 0 (β) that counts as "moved": a tenth of γ's init


def _claim(key, text, paper, ours, rule, verdict, scale) -> Claim:
    return Claim("gamma_beta", key, text, SOURCE, paper, ours, rule, verdict, scale)


def plain_worse(pts: pd.DataFrame, model: str, scale: str) -> Claim:
    key = f"plain_worse_{model}"
    text = f"{MODEL_LABEL[model]}: BN without its learned scale and shift (γ, β) trains to a higher test error"
    paper = "γ and β restore the representation power the normalization takes away (no number)"
    affine, plain = (
        by_seed(pts, model, True, "test_error"),
        by_seed(pts, model, False, "test_error"),
    )
    d = paired(affine, plain)
    if d.n < 2:
        return _claim(key, text, paper, "–", "–", not_enough("runs with and without γ/β"), scale)
    images = pts["images"].dropna()
    mean = sum([*affine.values(), *plain.values()]) / (len(affine) + len(plain))
    effect = min_effect(mean, int(images.iloc[0]) if len(images) else None)
    return _claim(
        key,
        text,
        paper,
        f"test error without − with γ/β, paired by seed: {d.text()} points "
        f"(with: {sum(affine.values()) / len(affine):.2f}%)",
        f"> 0, effect ≥ {effect:.2f} points",
        judge_difference(d, +1, effect),
        scale,
    )


def moves(pts: pd.DataFrame, model: str, which: str, scale: str) -> Claim:
    name, start = ("γ", "1") if which == "gamma" else ("β", "0")
    key = f"{which}_moves_{model}"
    text = f"{MODEL_LABEL[model]}: the learned {name} move away from their initial {start}"
    paper = f"{name} is learned, so that BN can represent the identity (no number)"
    dev = by_seed(pts, model, True, f"{which}_dev")
    if len(dev) < 2:
        return _claim(key, text, paper, "–", "–", not_enough("runs with γ/β"), scale)
    e = estimate(dev.values())
    shifted = dataclasses.replace(e, mean=e.mean - MOVED, low=e.low - MOVED, high=e.high - MOVED)
    return _claim(
        key,
        text,
        paper,
        f"rms({name} − {start}) at the end, mean over layers: {e.text(3)}",
        f"above {MOVED} (the interval)",
        judge_difference(shifted, +1, 0.0),
        scale,
    )


def all_claims(pts: pd.DataFrame, scale: str) -> list[Claim]:
    out = []
    for model in MODELS:
        out += [
            plain_worse(pts, model, scale),
            moves(pts, model, "gamma", scale),
            moves(pts, model, "beta", scale),
        ]
    return out
