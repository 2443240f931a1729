"""The GN paper's claims (docs/papers.md §2.6) judged per seed by the shared rule
(:mod:`normbench.report.verdicts`).

Every claim uses one number per run: the error (%) of the final weights on the 10,000 test
images (``test_error``, :mod:`normbench.studies.small_batch.points`). Differences are paired by
seed (the same initialization and data order); an effect must reach
:func:`~normbench.report.verdicts.min_effect` of the compared errors on the test images
(max(0.5 points, two binomial standard errors): about 0.9 points near 30% error, 0.6 near 10%).
"Flat" and "≈" are equivalence claims with that same minimum effect as their margin: the paper's
±0.2 is below what 10,000 test images resolve. In ghost mode GN, LN and IN use no other image,
so GN's flatness there holds by construction.

The keys are the same in every variant, so that the claims index sets the scales side by side.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from normbench.report.flags import not_enough
from normbench.report.papers import GN_PAPER
from normbench.report.verdicts import (
    BY_CONSTRUCTION,
    NOT_ENOUGH,
    NOT_SHOWN,
    OPPOSITE,
    SHOWN,
    SUGGESTIVE,
    Claim,
    Estimate,
    judge_difference,
    judge_equivalence,
    min_effect,
    paired,
)
from normbench.studies.small_batch.points import by_seed

TABLE2 = "Wu & He 2018, Table 2 / Fig. 1 (docs/papers.md §2.3)"
TABLE1 = "Wu & He 2018, Table 1 (docs/papers.md §2.2)"
BRN_SOURCE = "Wu & He 2018 §5.1 (docs/papers.md §2.4); Ioffe 2017 (§3)"
ERROR = "error on the 10,000 test images of the final weights"
Cell = tuple[str, int]  # (norm, images per device)


@dataclass(frozen=True)
class Setting:
    """What the claims need to know of the runs besides their errors."""

    scale: str  # one line: data, model, steps, seeds
    images: int | None  # test images behind each error (for the minimum effect)
    held_fixed: str  # what a comparison across N holds fixed, in words


def ns_of(pts: pd.DataFrame, norm: str) -> list[int]:
    """The N at which ``norm`` has a test error, largest first."""
    sel = pts[(pts["norm"] == norm) & pts["test_error"].notna()]
    return sorted({int(n) for n in sel["images"].dropna()}, reverse=True)


def difference(pts: pd.DataFrame, a: Cell, b: Cell) -> Estimate:
    """err(b) − err(a) on the test images, paired by seed."""
    return paired(by_seed(pts, *a), by_seed(pts, *b))


def effect(pts: pd.DataFrame, s: Setting, *cells: Cell) -> float:
    """The minimum effect for a difference between ``cells``: at their mean error."""
    values = [v for c in cells for v in by_seed(pts, *c).values()]
    mean = sum(values) / len(values) if values else math.nan
    return min_effect(mean if math.isfinite(mean) else None, s.images)


def combine(parts: list[tuple[str, str]]) -> str:
    """One verdict from several: shown when every part is; else the weakest outcome first."""
    detail = "; ".join(f"{label}: {verdict}" for label, verdict in parts)
    if all(v.startswith(SHOWN) for _, v in parts):
        return f"{SHOWN} ({detail})"
    for word in (OPPOSITE, NOT_ENOUGH, NOT_SHOWN, SUGGESTIVE):
        if any(v.startswith(word) for _, v in parts):
            return f"{word} — {detail}"
    return detail


def _claim(
    key: str, text: str, source: str, paper: str, ours: str, rule: str, verdict: str, s: Setting
) -> Claim:
    return Claim("small_batch", key, text, source, paper, ours, rule, verdict, s.scale)


def _paper_diff(norm_a: str, n_a: int, norm_b: str, n_b: int) -> float | None:
    t = GN_PAPER["table2"]
    if n_a in t.get(norm_a, {}) and n_b in t.get(norm_b, {}):
        return t[norm_b][n_b] - t[norm_a][n_a]
    return None


def _paper_rise(ns: list[int]) -> str:
    """The paper's BN(N) − BN(largest N) at our N."""
    parts = [
        f"N = {n}: {p:+.1f}"
        for n in ns[1:]
        if (p := _paper_diff("batch", ns[0], "batch", n)) is not None
    ]
    return f"BN(N) − BN({ns[0]}): " + ("; ".join(parts) or "–")


def bn_rise(pts: pd.DataFrame, s: Setting) -> Claim:
    """BN(N) − BN(top) > 0, judged at N ≤ 4 (the paper's sharp rise), else at the smallest N."""
    ns = ns_of(pts, "batch")
    text = GN_PAPER["claims"]["bn_rise"]
    if len(ns) < 2:
        needs = not_enough("BN runs at two or more N, each with its test-split evaluation")
        return _claim("bn_rise", text, TABLE2, _paper_rise([32, 2]), "–", "–", needs, s)
    top, judged = ns[0], [n for n in ns[1:] if n <= 4] or [ns[-1]]
    rows, parts = [], []
    for n in ns[1:]:
        d = difference(pts, ("batch", top), ("batch", n))
        v = judge_difference(d, +1, effect(pts, s, ("batch", top), ("batch", n)))
        rows.append(f"N = {n}: {d.text()}")
        if n in judged:
            parts.append((f"N = {n}", v))
    return _claim(
        "bn_rise",
        f"{text}; judged here at N = {', '.join(map(str, judged))} against N = {top}, holding "
        f"{s.held_fixed}",
        TABLE2,
        _paper_rise(ns),
        f"BN(N) − BN({top}), {ERROR}, paired by seed: " + "; ".join(rows),
        f"BN(N) − BN({top}) > 0 at each judged N, effect ≥ the minimum (max(0.5, 2 binomial se))",
        combine(parts),
        s,
    )


def gn_flat(pts: pd.DataFrame, s: Setting) -> Claim:
    """GN(N) ≈ GN(top): by construction in ghost mode; an equivalence test where measured."""
    gn = pts[pts["norm"] == "group"]
    measured = (
        sorted({int(n) for n in gn[gn["measured"]]["images"]}, reverse=True) if not gn.empty else []
    )
    text = GN_PAPER["claims"]["gn_flat"]
    paper = "24.1, 24.2, 24.0, 24.2, 24.1 at N = 32 … 2 (within ±0.2)"
    if not measured:
        return _claim(
            "gn_flat", text, TABLE2, paper, "GN not run", "–", not_enough("complete GN runs"), s
        )
    if gn["independent"].astype(bool).all():
        spread = _largest_spread(gn[gn["measured"]])
        ours = (
            f"run at N = {measured[0]} only: its numbers stand for every N"
            if len(measured) == 1
            else f"run at N = {', '.join(map(str, measured))}: largest difference between N for one "
            f"seed {spread:.3f} points"
        )
        verdict = (
            f"{BY_CONSTRUCTION}: in ghost mode GN uses no other image of the batch, and nothing "
            "else in the run changes with N"
            if spread == 0
            else f"{NOT_SHOWN}: GN's error differs between N by up to {spread:.3f} points although "
            "ghost mode makes it the same computation (a bug to find)"
        )
        return _claim(
            "gn_flat", text, TABLE2, paper, ours, "no test: the code makes it certain", verdict, s
        )
    ns = ns_of(pts, "group")
    if len(ns) < 2:
        needs = not_enough("GN runs at two or more N, each with its test-split evaluation")
        return _claim("gn_flat", text, TABLE2, paper, "–", "–", needs, s)
    top, rows, parts, margins = ns[0], [], [], []
    for n in ns[1:]:
        d = difference(pts, ("group", top), ("group", n))
        margin = effect(pts, s, ("group", top), ("group", n))
        margins.append(margin)
        rows.append(f"N = {n}: {d.text()}")
        parts.append((f"N = {n}", judge_equivalence(d, margin)))
    return _claim(
        "gn_flat",
        f"{text}; here holding {s.held_fixed}",
        TABLE2,
        paper,
        f"GN(N) − GN({top}), {ERROR}, paired by seed: " + "; ".join(rows),
        f"the 95% interval of GN(N) − GN({top}) inside ±{max(margins):.2f} (the minimum effect; "
        f"the paper's ±0.2 is below what {s.images or 0:,} test images resolve)",
        combine(parts),
        s,
    )


def _largest_spread(gn: pd.DataFrame) -> float:
    """The largest difference between N of one seed's errors (val and test), in points."""
    spreads = [
        float(g[col].max() - g[col].min())
        for _, g in gn.groupby("seed")
        for col in ("error", "test_error")
        if g[col].notna().all() and len(g) > 1
    ]
    return max(spreads, default=0.0)


def bn_beats_gn(pts: pd.DataFrame, s: Setting) -> Claim:
    """GN(top) − BN(top) > 0."""
    top = max(ns_of(pts, "batch") or [32])
    d = difference(pts, ("batch", top), ("group", top))
    return _claim(
        "bn_beats_gn",
        GN_PAPER["claims"]["bn_beats_gn"],
        TABLE2,
        f"GN − BN at {top}: {_paper_diff('batch', top, 'group', top) or 0:+.1f} (ImageNet); about "
        "+1 on CIFAR-scale data in the authors' reproduction (§2.5)",
        f"GN − BN at N = {top}, {ERROR}, paired by seed: {d.text()}",
        "GN − BN > 0, effect ≥ the minimum",
        judge_difference(d, +1, effect(pts, s, ("batch", top), ("group", top))),
        s,
    )


def ln_in(pts: pd.DataFrame, s: Setting) -> Claim:
    """LN − GN > 0 and IN − GN > 0 at the largest N."""
    t1 = GN_PAPER["table1"]
    top = max(ns_of(pts, "group") or [32])
    parts, rows = [], []
    for norm, label in (("layer", "LN"), ("instance", "IN")):
        d = difference(pts, ("group", top), (norm, top))
        rows.append(f"{label} − GN: {d.text()}")
        parts.append(
            (f"{label} − GN", judge_difference(d, +1, effect(pts, s, ("group", top), (norm, top))))
        )
    return _claim(
        "ln_in",
        GN_PAPER["claims"]["ln_in"],
        TABLE1,
        "; ".join(
            f"{label} − GN {t1[norm] - t1['group']:+.1f}"
            for norm, label in (("layer", "LN"), ("instance", "IN"))
        )
        + " (32 images per GPU)",
        f"at N = {top}, {ERROR}, paired by seed: " + "; ".join(rows),
        "each difference > 0, effect ≥ the minimum",
        combine(parts),
        s,
    )


def gn_wins_small(pts: pd.DataFrame, s: Setting) -> Claim:
    """GN(small) − BN(small) < 0 at the smallest N both have."""
    common = sorted(set(ns_of(pts, "batch")) & set(ns_of(pts, "group")))
    text = GN_PAPER["claims"]["gn_wins_small"]
    if not common or common[0] == max(ns_of(pts, "batch")):
        needs = not_enough("BN and GN runs at a small N (below the largest), same seeds")
        return _claim("gn_wins_small", text, TABLE2, "GN − BN at 2: −10.6", "–", "–", needs, s)
    small, top = common[0], max(ns_of(pts, "batch"))
    d = difference(pts, ("batch", small), ("group", small))
    paper = _paper_diff("batch", small, "group", small)
    gn = pts[(pts["norm"] == "group") & pts["measured"]]
    own = difference(pts, ("group", top), ("group", small))
    gn_moved = (
        f"; GN's own change GN({small}) − GN({top}): {own.text()}"
        if own.n and small in set(gn["images"]) and not gn["independent"].astype(bool).all()
        else ""
    )
    return _claim(
        "gn_wins_small",
        f"{text}; here at N = {small}, holding {s.held_fixed}",
        TABLE2,
        f"GN − BN at {small}: {paper:+.1f}" if paper is not None else "–",
        f"GN − BN at N = {small}, {ERROR}, paired by seed: {d.text()}{gn_moved}",
        "GN − BN < 0, effect ≥ the minimum",
        judge_difference(d, -1, effect(pts, s, ("batch", small), ("group", small))),
        s,
    )


def brn_recovers(pts: pd.DataFrame, s: Setting) -> Claim:
    """At each N ≤ 4: BN − BRN > 0 (it recovers some) and BRN − BN(top) > 0 (not all)."""
    top = max(ns_of(pts, "batch") or [32])
    small = [n for n in ns_of(pts, "batch_renorm") if n <= 4 and n in ns_of(pts, "batch")]
    text = GN_PAPER["claims"]["brn"]
    t2, brn = GN_PAPER["table2"], GN_PAPER["batch_renorm"][4]
    paper = (
        f"N = 4: BRN {brn}, BN {t2['batch'][4]}, GN {t2['group'][4]} (recovers "
        f"{t2['batch'][4] - brn:.1f} of BN's {t2['batch'][4] - t2['batch'][32]:.1f}-point loss)"
    )
    if not small:
        needs = not_enough(f"BRN and BN runs at an N ≤ 4 and BN at N = {top}, same seeds")
        return _claim("brn", text, BRN_SOURCE, paper, "–", "–", needs, s)
    rows, parts = [], []
    for n in small:
        gain = difference(pts, ("batch_renorm", n), ("batch", n))
        left = difference(pts, ("batch", top), ("batch_renorm", n))
        loss = difference(pts, ("batch", top), ("batch", n))
        m_gain = effect(pts, s, ("batch_renorm", n), ("batch", n))
        m_left = effect(pts, s, ("batch", top), ("batch_renorm", n))
        loss_shown = judge_difference(loss, +1, effect(pts, s, ("batch", top), ("batch", n)))
        share = (
            f", {100 * gain.mean / loss.mean:.0f}% of BN's loss {loss.text()}"
            if loss_shown == SHOWN
            else f" (BN's own loss {loss.text()} is {loss_shown}: no share of it is given)"
        )
        rows.append(f"N = {n}: BN − BRN {gain.text()}{share}; BRN − BN({top}) {left.text()}")
        parts.append((f"N = {n} BN − BRN", judge_difference(gain, +1, m_gain)))
        parts.append((f"N = {n} BRN − BN({top})", judge_difference(left, +1, m_left)))
    return _claim(
        "brn",
        text,
        BRN_SOURCE,
        paper,
        f"{ERROR}, paired by seed: " + " | ".join(rows),
        "at each N ≤ 4: BN − BRN > 0 (recovers some) and BRN − BN(32) > 0 (not all), each "
        "with effect ≥ the minimum",
        combine(parts),
        s,
    )


def brn_normal(pts: pd.DataFrame, s: Setting) -> Claim:
    """BRN ≈ BN at the largest N: an equivalence test."""
    top = max(ns_of(pts, "batch") or [32])
    d = difference(pts, ("batch", top), ("batch_renorm", top))
    margin = effect(pts, s, ("batch", top), ("batch_renorm", top))
    return _claim(
        "brn_normal",
        GN_PAPER["claims"]["brn_normal"],
        "Ioffe 2017 (docs/papers.md §3.2)",
        "about the same as BN at minibatches of 32 (no number in our notes)",
        f"BRN − BN at N = {top}, {ERROR}, paired by seed: {d.text()}",
        f"the 95% interval inside ±{margin:.2f} (the minimum effect)",
        judge_equivalence(d, margin),
        s,
    )


def all_claims(pts: pd.DataFrame, s: Setting) -> list[Claim]:
    """The study's claims in the README's order; a norm not run gives 'not enough runs'."""
    builders = (bn_rise, gn_flat, bn_beats_gn, ln_in, gn_wins_small, brn_recovers, brn_normal)
    return [build(pts, s) for build in builders]
