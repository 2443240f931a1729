"""Batch Renormalization's non-i.i.d. claims (Ioffe 2017; docs/papers.md §3.2, §11), judged per
seed by the shared rule (:mod:`normbench.report.verdicts`).

Every number is one run's error (%) of its final weights on the evaluated images (the 10,000
test images): with the running statistics (``running``), or with each test batch's own
statistics at the training batch size, the test batches i.i.d. (``test_batch``). A comparison
between two trainings (i.i.d. against non-i.i.d. batches, BN against BRN) is paired by seed
(the same initialization; the data order differs only by the batching). An effect must reach
:func:`~normbench.report.verdicts.min_effect` of the compared errors on the evaluated images.

- ``bn_degrades``: BN non-i.i.d. − BN i.i.d., running statistics, > 0.
- ``test_batch_recovers`` ("part of it"): BN non-i.i.d. running − test-batch > 0 (it recovers
  some) and test-batch − BN i.i.d. running > 0 (not all); shown when both are.
- ``brn_recovers_most``: BN's loss is shown, and BRN non-i.i.d. lies below the midpoint of BN
  i.i.d. and BN non-i.i.d. (paired per seed: (BN_iid + BN_non) / 2 − BRN_non > 0), i.e. BRN
  recovers more than half of BN's loss.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from normbench.report.flags import not_enough
from normbench.report.verdicts import (
    NOT_SHOWN,
    OPPOSITE,
    SHOWN,
    Claim,
    Estimate,
    judge_difference,
    min_effect,
    paired,
)
from normbench.studies.inference_batch.claims import combine
from normbench.studies.non_iid.points import by_seed

SOURCE = "Ioffe 2017 (docs/papers.md §3.2, §11)"
#: docs/papers.md §3.2: ImageNet top-1 accuracy (%), Inception-v3, batches of 32
PAPER = {"bn_iid": 78.3, "bn_non_iid": 67.0, "bn_non_iid_test_batch": 76.5, "brn_non_iid": 78.5}
PAPER_SETTING = "ImageNet, Inception-v3, batches of 32 = 16 labels x 2 images"
Values = dict[int, float]


@dataclass(frozen=True)
class Setting:
    """What the claims need to know besides the errors."""

    scale: str  # one line: data, model, steps, seeds, batching
    images: int | None  # images behind each error (for the minimum effect)
    batching: str  # the non-i.i.d. batching in words (2 classes x 16 images per batch of 32)


def _claim(
    key: str, text: str, paper: str, ours: str, rule: str, verdict: str, s: Setting
) -> Claim:
    return Claim("non_iid", key, text, SOURCE, paper, ours, rule, verdict, s.scale)


def effect(s: Setting, *groups: Values) -> float:
    """The minimum effect of a difference between ``groups`` of errors: at their mean."""
    values = [v for g in groups for v in g.values()]
    mean = sum(values) / len(values) if values else math.nan
    return min_effect(mean if math.isfinite(mean) else None, s.images)


def bn_values(pts: pd.DataFrame) -> tuple[Values, Values, Values]:
    """BN's i.i.d. running, non-i.i.d. running and non-i.i.d. test-batch errors by seed."""
    return (
        by_seed(pts, "batch", True),
        by_seed(pts, "batch", False),
        by_seed(pts, "batch", False, "test_batch"),
    )


def bn_loss(pts: pd.DataFrame, s: Setting) -> tuple[Estimate, str]:
    """BN non-i.i.d. − BN i.i.d. (running statistics) and its verdict."""
    iid, non, _ = bn_values(pts)
    d = paired(iid, non)
    return d, judge_difference(d, +1, effect(s, iid, non))


def bn_degrades(pts: pd.DataFrame, s: Setting) -> Claim:
    text = (
        f"BN trained on non-i.i.d. batches ({s.batching}) and evaluated with its moving "
        "averages is worse than BN trained on i.i.d. batches of the same size"
    )
    paper = (
        f"{PAPER['bn_iid']}% → about {PAPER['bn_non_iid']:g}% [MEM] top-1 "
        f"({PAPER_SETTING}): about {PAPER['bn_iid'] - PAPER['bn_non_iid']:.1f} points lost [MEM]"
    )
    iid, non, _ = bn_values(pts)
    if not iid or not non:
        needs = not_enough("BN runs trained i.i.d. and non-i.i.d. with their test evaluations")
        return _claim("bn_degrades", text, paper, "–", "–", needs, s)
    d, verdict = bn_loss(pts, s)
    return _claim(
        "bn_degrades",
        text,
        paper,
        f"BN non-i.i.d. − BN i.i.d., running statistics, paired by seed: {d.text()} points of "
        "error",
        f"non-i.i.d. − i.i.d. > 0, effect ≥ the minimum ({effect(s, iid, non):.2f} points)",
        verdict,
        s,
    )


def _share(gain: Estimate, loss: Estimate, loss_verdict: str, what: str) -> str:
    """``, 85% of BN's loss`` when that loss is shown, else why no share is given."""
    if loss_verdict == SHOWN and loss.mean:
        return f", {100 * gain.mean / loss.mean:.0f}% of BN's loss {loss.text()} ({what})"
    return f" (BN's loss {loss.text()} is {loss_verdict}: no share of it is given)"


def batch_stats_recover(pts: pd.DataFrame, s: Setting) -> Claim:
    text = (
        "Evaluating the non-i.i.d.-trained BN with each test batch's own statistics (i.i.d. test "
        "batches of the training size) recovers part of its loss: some of it, not all"
    )
    lost = PAPER["bn_iid"] - PAPER["bn_non_iid"]
    back = PAPER["bn_non_iid_test_batch"] - PAPER["bn_non_iid"]
    paper = (
        f"{PAPER['bn_non_iid_test_batch']}% with test-batch statistics, against about "
        f"{PAPER['bn_non_iid']:g}% [MEM] with moving averages and {PAPER['bn_iid']}% i.i.d.: "
        f"about {back:.1f} of {lost:.1f} points back [MEM], "
        f"{PAPER['bn_iid'] - PAPER['bn_non_iid_test_batch']:.1f} short"
    )
    iid, non, tb = bn_values(pts)
    if not tb or not non or not iid:
        needs = not_enough(
            "BN runs trained i.i.d. and non-i.i.d., the latter also evaluated with mode=batch"
        )
        return _claim("test_batch_recovers", text, paper, "–", "–", needs, s)
    gain, rest = paired(tb, non), paired(iid, tb)
    loss, loss_verdict = bn_loss(pts, s)
    m_gain, m_rest = effect(s, tb, non), effect(s, iid, tb)
    parts = [
        ("recovers some", judge_difference(gain, +1, m_gain)),
        ("not all", judge_difference(rest, +1, m_rest)),
    ]
    return _claim(
        "test_batch_recovers",
        text,
        paper,
        f"BN non-i.i.d., running − test-batch statistics, paired by seed: {gain.text()}"
        + _share(gain, loss, loss_verdict, "recovered")
        + f"; test-batch − BN i.i.d. running: {rest.text()}",
        f"running − test-batch > 0 (effect ≥ {m_gain:.2f}) and test-batch − BN i.i.d. > 0 "
        f"(effect ≥ {m_rest:.2f})",
        combine(parts),
        s,
    )


def brn_recovers_most(pts: pd.DataFrame, s: Setting) -> Claim:
    text = (
        "Batch Renorm trained on the same non-i.i.d. batches recovers most of BN's loss (more "
        "than half: its error below the midpoint of BN i.i.d. and BN non-i.i.d.)"
    )
    paper = (
        f"BRN {PAPER['brn_non_iid']}% non-i.i.d., against BN {PAPER['bn_iid']}% i.i.d. and about "
        f"{PAPER['bn_non_iid']:g}% [MEM] non-i.i.d.: all of the loss"
    )
    iid, non, _ = bn_values(pts)
    brn = by_seed(pts, "batch_renorm", False)
    if not brn or not iid or not non:
        needs = not_enough("BN runs trained i.i.d. and non-i.i.d. and BRN runs trained non-i.i.d.")
        return _claim("brn_recovers_most", text, paper, "–", "–", needs, s)
    mid = {k: (iid[k] + non[k]) / 2 for k in iid if k in non}
    d = paired(brn, mid)  # midpoint − BRN
    gain = paired(brn, non)  # BN non-i.i.d. − BRN non-i.i.d.
    loss, loss_verdict = bn_loss(pts, s)
    own = paired(by_seed(pts, "batch_renorm", True), brn)
    m = effect(s, iid, non, brn)
    parts = [
        ("BN's loss", loss_verdict),
        ("BRN below the midpoint", judge_difference(d, +1, m)),
    ]
    verdict = combine(parts)
    if loss_verdict.startswith(NOT_SHOWN) or OPPOSITE in loss_verdict:
        verdict = (
            f"{NOT_SHOWN} — BN's non-i.i.d. loss is {loss_verdict}: there is no loss to recover"
        )
    return _claim(
        "brn_recovers_most",
        text,
        paper,
        f"midpoint − BRN non-i.i.d., paired by seed: {d.text()}; BN non-i.i.d. − BRN non-i.i.d.: "
        f"{gain.text()}"
        + _share(gain, loss, loss_verdict, "recovered")
        + f"; BRN's own non-i.i.d. − i.i.d.: {own.text()}",
        f"BN's loss shown, and (BN i.i.d. + BN non-i.i.d.) / 2 − BRN non-i.i.d. > 0, effect ≥ "
        f"the minimum ({m:.2f} points)",
        verdict,
        s,
    )


def all_claims(pts: pd.DataFrame, s: Setting) -> list[Claim]:
    """The study's claims in the README's order."""
    return [bn_degrades(pts, s), batch_stats_recover(pts, s), brn_recovers_most(pts, s)]
