"""The online study's claims, judged per seed by the shared rule (:mod:`normbench.report.verdicts`).

Every claim uses one number per run: the error (%) of the final weights on the 10,000 test
images (``test_error``, :mod:`normbench.studies.online.points`). A difference is a norm's error
under an online setting minus its error under the fixed batch (the reference), paired by seed:
the same initialization and the same order of images (the batch sizes only cut the epoch's
shuffle differently), and, in this study, the same number of images. An effect must reach
:func:`~normbench.report.verdicts.min_effect` of the compared errors on the test images
(max(0.5 points, two binomial standard errors): about 0.65 near 12% error); the equivalence
claims use that same number as their margin.

No paper ran online or varying-size batches: the claims carry the GN paper's fixed small
batches per device (docs/papers.md §2.3) and the facts of §11 over to batches that arrive one
at a time or in groups of changing size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from normbench.report.flags import not_enough
from normbench.report.papers import GN_PAPER
from normbench.report.verdicts import (
    BY_CONSTRUCTION,
    NOT_SHOWN,
    Claim,
    Estimate,
    judge_difference,
    judge_equivalence,
    min_effect,
    paired,
)
from normbench.studies.online.points import (
    NORM_LABEL,
    by_seed,
    label,
    reference,
    setting_key,
    settings,
)
from normbench.studies.small_batch.claims import combine

Sizes = tuple[int, int]
TABLE2 = "Wu & He 2018, Table 2 (docs/papers.md §2.3)"
BN_SOURCE = f"{TABLE2}; batch-dependence: §11"
FLAT_SOURCE = f"docs/papers.md §11 (batch-independent norms); {TABLE2}"
BRN_SOURCE = "Ioffe 2017 (docs/papers.md §3.2, §3.3); Wu & He 2018 §5.1 (§2.4)"
ONE_SOURCE = "docs/papers.md §11 (train-mode BN at batch 1)"
INDEPENDENT = ("group", "layer", "frn")
SMALL = 8  # settings whose largest batch is at most this are "small" (Batch Renorm's claim)


@dataclass(frozen=True)
class Setting:
    """What the claims need to know of the runs besides their errors."""

    scale: str  # one line: data, model, images, lr rule, seeds
    images: int | None  # test images behind each error (for the minimum effect)
    fully_connected: bool  # an MLP: a batch of one image leaves BN one value per unit
    lr_scaling: str = "linear"  # batching.lr_scaling of the runs

    @property
    def error(self) -> str:
        """What the compared number is, in words."""
        return f"test error ({self.images or '?':,} images, final weights)"


def describe(sizes: Sizes) -> str:
    """How a claim names a setting."""
    low, high = sizes
    if low == high:
        return f"a fixed batch of {low}"
    if high <= SMALL:
        return f"a stream of small batches of {low}..{high} images"
    return f"batches of {low}..{high} images (the size drawn anew every step)"


def difference(pts: pd.DataFrame, a: tuple[str, Sizes], b: tuple[str, Sizes]) -> Estimate:
    """err(b) − err(a) on the test images, paired by seed."""
    return paired(by_seed(pts, *a), by_seed(pts, *b))


def effect(pts: pd.DataFrame, s: Setting, *cells: tuple[str, Sizes]) -> float:
    """The minimum effect for a difference between ``cells``: at their mean error (rounded to
    0.01 point, as the verdicts print it)."""
    values = [v for c in cells for v in by_seed(pts, *c).values()]
    mean = sum(values) / len(values) if values else math.nan
    return round(min_effect(mean if math.isfinite(mean) else None, s.images), 2)


def _claim(
    key: str, text: str, source: str, paper: str, ours: str, rule: str, verdict: str, s: Setting
) -> Claim:
    return Claim("online", key, text, source, paper, ours, rule, verdict, s.scale)


def _online(pts: pd.DataFrame) -> list[Sizes]:
    return [p for p in settings(pts) if p[0] != p[1]]


def bn_paper() -> str:
    bn = GN_PAPER["table2"]["batch"]
    return (
        "BN, fixed batches per GPU (ImageNet): "
        + ", ".join(f"{n}: {bn[n]}" for n in (32, 8, 4, 2))
        + "; no online or varying-size setting in the paper"
    )


def bn_rise(pts: pd.DataFrame, s: Setting, sizes: Sizes) -> Claim:
    """BN(setting) − BN(reference) > 0 (with GN's own change beside it, for comparison)."""
    ref = reference(pts)
    key = f"bn_{setting_key(*sizes)}"
    text = (
        f"BN's error rises when batches arrive as {describe(sizes)} instead of "
        f"{describe(ref) if ref else 'a fixed batch'} (BN rises at small batches per device)"
    )
    if ref is None:
        needs = not_enough("BN runs on a fixed batch (batching.sizes=[b, b]) as the reference")
        return _claim(key, text, BN_SOURCE, bn_paper(), "–", "–", needs, s)
    d = difference(pts, ("batch", ref), ("batch", sizes))
    gn = difference(pts, ("group", ref), ("group", sizes))
    beside = f"; GN's own change beside it: {gn.text()}" if gn.n else ""
    return _claim(
        key,
        text,
        BN_SOURCE,
        bn_paper(),
        f"BN({label(*sizes)}) − BN({label(*ref)}), {s.error}, paired by seed: {d.text()}{beside}",
        "the difference > 0, effect ≥ the minimum (max(0.5, 2 binomial se))",
        judge_difference(d, +1, effect(pts, s, ("batch", ref), ("batch", sizes))),
        s,
    )


def flat(pts: pd.DataFrame, s: Setting, norm: str) -> Claim:
    """X(setting) ≈ X(reference) at every online setting: an equivalence test each."""
    name = NORM_LABEL.get(norm, norm)
    key = f"{name.lower()}_flat"
    text = (
        f"{name} does not suffer from online batches: its error under each online setting equals "
        "its error on the fixed batch (a batch-independent norm)"
    )
    paper = (
        "GN: "
        + ", ".join(str(v) for v in GN_PAPER["table2"]["group"].values())
        + " at 32 … 2 images per GPU (within ±0.2); batch-independent norms compute the same at "
        "any batch size (§11)"
    )
    ref, online = reference(pts), _online(pts)
    if ref is None or not online or not by_seed(pts, norm, ref):
        needs = not_enough(f"{name} runs on the fixed batch and under an online setting")
        return _claim(key, text, FLAT_SOURCE, paper, "–", "–", needs, s)
    rows, parts, margins = [], [], []
    for sizes in online:
        d = difference(pts, (norm, ref), (norm, sizes))
        margin = effect(pts, s, (norm, ref), (norm, sizes))
        margins.append(margin)
        rows.append(f"{label(*sizes)}: {d.text()}")
        parts.append((label(*sizes), judge_equivalence(d, margin)))
    held = (
        "the same images, lr scaled with each batch's size"
        if s.lr_scaling == "linear"
        else f"the same images, lr_scaling={s.lr_scaling}"
    )
    return _claim(
        key,
        f"{text}; here with {held}",
        FLAT_SOURCE,
        paper,
        f"{name}(setting) − {name}({label(*ref)}), {s.error}, paired by seed: " + "; ".join(rows),
        f"at every online setting the 95% interval inside ±{max(margins):.2f} (the minimum "
        "effect; the paper's ±0.2 is below what the test images resolve)",
        combine(parts),
        s,
    )


def brn_small(pts: pd.DataFrame, s: Setting) -> Claim:
    """At each small setting: BN − BRN > 0 (recovers some) and BRN − BN(ref) > 0 (not all)."""
    ref = reference(pts)
    small = [p for p in _online(pts) if p[1] <= SMALL and by_seed(pts, "batch_renorm", p)]
    text = (
        "Batch Renorm wins back part, not all, of BN's loss in a stream of small batches "
        "(as at microbatches of 2–4)"
    )
    paper = (
        "microbatches of 4: BN 74.2%, BRN 76.5% top-1 vs 78.3% at 32 (Ioffe 2017); 4 per GPU: "
        f"BRN {GN_PAPER['batch_renorm'][4]}, BN {GN_PAPER['table2']['batch'][4]}, error (GN paper)"
    )
    if ref is None or not small:
        needs = not_enough(
            "BRN and BN runs in a small stream (sizes ≤ 8) and BN on the fixed batch"
        )
        return _claim("brn_small", text, BRN_SOURCE, paper, "–", "–", needs, s)
    rows, parts = [], []
    for sizes in small:
        gain = difference(pts, ("batch_renorm", sizes), ("batch", sizes))
        left = difference(pts, ("batch", ref), ("batch_renorm", sizes))
        loss = difference(pts, ("batch", ref), ("batch", sizes))
        share = (
            f" ({100 * gain.mean / loss.mean:.0f}% of BN's loss {loss.text()})"
            if loss.n and loss.mean > 0
            else ""
        )
        rows.append(
            f"{label(*sizes)}: BN − BRN {gain.text()}{share}; BRN − BN({label(*ref)}) {left.text()}"
        )
        m_gain = effect(pts, s, ("batch_renorm", sizes), ("batch", sizes))
        m_left = effect(pts, s, ("batch", ref), ("batch_renorm", sizes))
        parts.append((f"{label(*sizes)} BN − BRN", judge_difference(gain, +1, m_gain)))
        parts.append((f"{label(*sizes)} BRN − BN(ref)", judge_difference(left, +1, m_left)))
    return _claim(
        "brn_small",
        text,
        BRN_SOURCE,
        paper,
        f"{s.error}, paired by seed: " + " | ".join(rows),
        "at each small setting: BN − BRN > 0 (recovers some) and BRN − BN(fixed) > 0 (not all), "
        "each with effect ≥ the minimum",
        combine(parts),
        s,
    )


def batch_one(pts: pd.DataFrame, s: Setting) -> Claim | None:
    """Batches of one image: skipped for the norms using batch statistics, never for the others
    (None: no setting draws batches of one, or the model is not fully connected)."""
    ones = [p for p in settings(pts) if p[0] == 1]
    if not ones or not s.fully_connected:
        return None
    sel = pts[pts["low"] == 1]
    dep, free = sel[sel["dependent"].astype(bool)], sel[~sel["dependent"].astype(bool)]

    def counts(df: pd.DataFrame) -> str:
        parts = []
        for norm, g in df.groupby("norm", sort=False):
            steps = pd.to_numeric(g["steps"], errors="coerce").sum()
            parts.append(
                f"{NORM_LABEL.get(norm, norm)} {int(g['skipped'].sum()):,} of {steps:,.0f}"
            )
        return ", ".join(parts) or "no runs"

    fraction = ", ".join(f"{label(*p)}: 1 in {p[1] - p[0] + 1}" for p in ones)
    ours = f"skipped batches over seeds, of the steps ({fraction} expected): {counts(sel)}"
    if dep.empty:
        verdict = not_enough("runs of BN or BRN in a setting drawing batches of one")
    elif (dep["skipped"] > 0).all() and (free["skipped"] == 0).all():
        verdict = (
            f"{BY_CONSTRUCTION}: a fully connected layer gives BN one value per unit at batch 1; "
            "the trainer skips such a batch (no update, statistics restored) and counts it"
        )
    else:
        verdict = (
            f"{NOT_SHOWN}: some BN-type run skipped nothing, or a batch-independent run skipped "
            "a batch (a bug to find)"
        )
    return _claim(
        "batch_one",
        "BN cannot train on a batch of one image in a fully connected layer (the variance is "
        "undefined); batch-independent norms can",
        ONE_SOURCE,
        "PyTorch raises 'Expected more than 1 value per channel when training' (§11)",
        ours,
        "no test: the code makes it certain; the counts are checked",
        verdict,
        s,
    )


def all_claims(pts: pd.DataFrame, s: Setting) -> list[Claim]:
    """The study's claims in the README's order; a norm not run gives 'not enough runs'."""
    online = _online(pts)
    claims = [bn_rise(pts, s, sizes) for sizes in online] or [bn_rise(pts, s, (2, 8))]
    claims += [flat(pts, s, norm) for norm in INDEPENDENT]
    claims.append(brn_small(pts, s))
    one = batch_one(pts, s)
    return claims + ([one] if one else [])
