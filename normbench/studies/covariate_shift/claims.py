"""The covariate-shift claims (Santurkar et al. 2018; Ioffe & Szegedy 2015; docs/papers.md §12),
judged per seed by the shared rule (:mod:`normbench.report.verdicts`), for each model (mlp, vgg):

Training with injected shift (final error on the 10,000 test images, minimum effect of
:func:`~normbench.report.verdicts.min_effect`):

- ``noisy_beats_none_<model>``: no norm − noisy BN > 0;
- ``noisy_nearer_bn_<model>``: (no norm + BN)/2 − noisy BN > 0, i.e. noisy BN's error is nearer
  BN's than no norm's: it keeps most of BN's gain despite the shift.

Shift and landscape (:mod:`.points`; each a ratio of run means, judged as ln(a/b) > 0 paired by
seed, by at least ln 1.1):

- ``noise_shifts_<model>``: noisy BN's layer inputs move more per step than BN's (the channel
  means, in stds: the noise does inject covariate shift, or the two claims above test nothing);
  ``noisy_more_than_none_<model>``: ... and more than without a norm;
- ``bn_less_shift_<model>``: BN's layer-input means move less per step than without a norm (the
  BN paper's premise): *by construction*, as BN pins each channel's mean and variance on the
  batch to β and γ (what moves is their one-step change); the numbers are given;
  ``bn_less_shape_shift_<model>``: the standardized shape of the layer inputs' distribution, which
  BN does not pin, moves less per step with BN;
- ``predictive_<model>``: the gradient changes less along the step with BN (ℓ2, Santurkar's
  gradient predictiveness); ``predictive_rel_<model>``: the same relative to ‖g‖ (so that a
  smaller gradient alone does not pass it);
- ``smoother_loss_<model>``: the loss varies less along the step with BN;
- ``beta_smooth_<model>``: the effective β-smoothness along the step is smaller with BN.
"""

from __future__ import annotations

import math

import pandas as pd

from normbench.report.flags import not_enough
from normbench.report.verdicts import (
    BY_CONSTRUCTION,
    Claim,
    judge_difference,
    min_effect,
    paired,
)
from normbench.studies.covariate_shift.points import MODEL_LABEL, MODELS, NORM_LABEL, by_seed

SOURCE = "Santurkar et al. 2018, §2-3 (docs/papers.md §12)"
SOURCE_ICS = "Ioffe & Szegedy 2015, §1-2 (docs/papers.md §12)"
MIN_LOG_RATIO = math.log(1.1)


def _claim(key, text, source, paper, ours, rule, verdict, scale) -> Claim:
    return Claim("covariate_shift", key, text, source, paper, ours, rule, verdict, scale)


def _mean(values: dict[int, float]) -> float:
    return sum(values.values()) / len(values) if values else math.nan


def error_claim(pts: pd.DataFrame, model: str, kind: str, scale: str) -> Claim:
    err = {n: by_seed(pts, model, n, "test_error") for n in ("none", "batch", "noisy_batch")}
    if kind == "beats_none":
        key, other = f"noisy_beats_none_{model}", err["none"]
        text = f"{MODEL_LABEL[model]}: noisy BN trains to a lower test error than no norm"
        paper = (
            "noisy BN trains far better than no BN (VGG on CIFAR-10, §2; no number in our notes)"
        )
        what = "no norm − noisy BN"
    else:
        key = f"noisy_nearer_bn_{model}"
        seeds = set(err["none"]) & set(err["batch"])
        other = {s: (err["none"][s] + err["batch"][s]) / 2 for s in seeds}
        text = (
            f"{MODEL_LABEL[model]}: despite the injected shift, noisy BN's test error is nearer "
            "BN's than no norm's"
        )
        paper = "noisy BN trains about as well as BN (§2; no number in our notes)"
        what = "(no norm + BN)/2 − noisy BN"
    d = paired(err["noisy_batch"], other)
    if d.n < 2:
        return _claim(key, text, SOURCE, paper, "–", "–", not_enough("paired seeds"), scale)
    images = pts["images"].dropna()
    effect = min_effect(_mean(err["noisy_batch"]), int(images.iloc[0]) if len(images) else None)
    means = ", ".join(f"{NORM_LABEL[n]} {_mean(v):.2f}%" for n, v in err.items() if v)
    return _claim(
        key,
        text,
        SOURCE,
        paper,
        f"test error, {what}, paired by seed: {d.text()} points ({means})",
        f"> 0, effect ≥ {effect:.2f} points",
        judge_difference(d, +1, effect),
        scale,
    )


RATIO_CLAIMS = {
    # key: (measure, larger norm, smaller norm, claim, paper, source)
    "noise_shifts": (
        "shift_mean",
        "noisy_batch",
        "batch",
        "noisy BN's layer inputs move more per step than BN's (the noise injects shift)",
        "noisy BN has visibly more distribution shift than BN (§2, its histograms)",
        SOURCE,
    ),
    "noisy_more_than_none": (
        "shift_mean",
        "noisy_batch",
        "none",
        "noisy BN's layer inputs move more per step than those of the network without a norm",
        "(ours: noisy BN has more shift than no BN, yet trains better, the paper's argument)",
        SOURCE,
    ),
    "bn_less_shift": (
        "shift_mean",
        "none",
        "batch",
        "BN's layer-input means move less per step than without a norm",
        "BN reduces internal covariate shift (the BN paper's motivation; no number)",
        SOURCE_ICS,
    ),
    "bn_less_shape_shift": (
        "shift_shape",
        "none",
        "batch",
        "the standardized shape of the layer inputs' distribution (not pinned by BN) moves less "
        "per step with BN",
        "BN reduces internal covariate shift (the BN paper's motivation; no number)",
        SOURCE_ICS,
    ),
    "predictive": (
        "grad_change",
        "none",
        "batch",
        "the gradient changes less along the step with BN (ℓ2 gradient predictiveness)",
        "BN makes the gradient more predictive (§3, VGG on CIFAR-10)",
        SOURCE,
    ),
    "predictive_rel": (
        "rel_change",
        "none",
        "batch",
        "the gradient changes less along the step with BN, relative to its norm",
        "(ours: Santurkar et al. report the ℓ2 change, not relative)",
        SOURCE,
    ),
    "smoother_loss": (
        "loss_range",
        "none",
        "batch",
        "the loss varies less along the step with BN",
        "BN reduces the loss variation along the gradient (§3)",
        SOURCE,
    ),
    "beta_smooth": (
        "beta",
        "none",
        "batch",
        "the effective β-smoothness along the step is smaller with BN",
        "BN lowers the effective β-smoothness (§3)",
        SOURCE,
    ),
}
WHAT = {
    "shift_mean": "per-step shift of the layer inputs' channel means (in stds), mean over layers",
    "shift_shape": "per-step change of the layer inputs' standardized 15/50/85th percentiles, "
    "mean over layers",
    "grad_change": "max over step sizes of ‖Δg‖₂",
    "rel_change": "max over step sizes of ‖Δg‖₂/‖g‖₂",
    "loss_range": "range of the loss along the step",
    "beta": "max over step sizes of ‖Δg‖₂/‖ηg‖₂",
}


def ratio_claim(pts: pd.DataFrame, model: str, name: str, scale: str) -> Claim:
    measure, big, small, text, paper, source = RATIO_CLAIMS[name]
    key, text = f"{name}_{model}", f"{MODEL_LABEL[model]}: {text}"
    a, b = by_seed(pts, model, small, measure), by_seed(pts, model, big, measure)
    logs = lambda v: {s: math.log(x) for s, x in v.items() if x > 0}  # noqa: E731
    d = paired(logs(a), logs(b))
    if d.n < 2:
        return _claim(key, text, source, paper, "–", "–", not_enough("paired seeds"), scale)
    verdict = judge_difference(d, +1, MIN_LOG_RATIO)
    if name == "bn_less_shift":
        verdict = (
            f"{BY_CONSTRUCTION}: BN sets each channel's mean and std on the batch to β and γ, so "
            f"only their one-step change is left (judged as a difference it is {verdict})"
        )
    return _claim(
        key,
        text,
        source,
        paper,
        f"{WHAT[measure]}, mean over probe steps: {NORM_LABEL[big]} {_mean(b):.3g}, "
        f"{NORM_LABEL[small]} {_mean(a):.3g}; ln({NORM_LABEL[big]}/{NORM_LABEL[small]}), "
        f"paired by seed: {d.text(3)}",
        f"> 0, at least ln 1.1 = {MIN_LOG_RATIO:.3f}",
        verdict,
        scale,
    )


def all_claims(pts: pd.DataFrame, scale: str) -> list[Claim]:
    out = []
    for model in MODELS:
        out += [error_claim(pts, model, k, scale) for k in ("beats_none", "nearer_bn")]
        out += [ratio_claim(pts, model, name, scale) for name in RATIO_CLAIMS]
    return out
