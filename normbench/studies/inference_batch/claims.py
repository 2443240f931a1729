"""The inference-batch study's claims (docs/papers.md §11), judged by the shared rule
(:mod:`normbench.report.verdicts`).

Every number is one run's error (%) on the evaluated images at one evaluation batch size b
(:mod:`.points`). A difference between two b is paired by seed: the same trained model on the
same images, only the batching differs. The reference is the largest b evaluated (256).

- ``eval_flat``: eval-mode BN and BRN (running statistics) against b: an equivalence claim per
  (norm, b), err(b) − err(256) inside ±the minimum effect (max(0.5 points, two binomial
  standard errors of the error on the evaluated images)); shown when every one is.
- ``batch_degrades``: BN with each test batch's own statistics: err(small b) − err(256) > 0 at
  the smallest b where it is defined (b = 1 in a CNN; b = 2 in an MLP, where b = 1 is
  undefined: one value per channel), with the minimum effect.
- ``batch_free_flat``: the norms whose summary.json says they use no batch statistics (GN, LN,
  FRN), in eval mode against b: the same equivalence test as ``eval_flat``.
- ``folded_free``: from ``normbench bench inference``'s CSV (results/bench/inference-cpu.csv),
  never from the study's runs: "by construction" when folding leaves no BN layer (the folded
  network runs the no-norm network's operations plus a bias) and the measured time at b = 1 is
  within 10% of the no-norm network's in the same fx-graph form (``none+fx``); "not measured"
  without the CSV or that row.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from normbench.bench.train_report import read_rows
from normbench.report.flags import not_enough
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
from normbench.studies.inference_batch.points import batches_of, by_seed, cell, label, ordered

SOURCE = "docs/papers.md §11"
BENCH_CSV = Path("results/bench/inference-cpu.csv")
FOLDED_TOLERANCE = 0.10  # folded BN within 10% of no norm at b = 1: "costs nothing"
NOT_MEASURED = "not measured"
Cell = tuple[str, str, int]  # (norm, mode, b)


@dataclass(frozen=True)
class Setting:
    """What the claims need to know besides the errors."""

    scale: str  # one line: data, model, steps, seeds
    images: int | None  # images behind each error (for the minimum effect)


def _claim(
    key: str, text: str, paper: str, ours: str, rule: str, verdict: str, s: Setting
) -> Claim:
    return Claim("inference_batch", key, text, SOURCE, paper, ours, rule, verdict, s.scale)


def effect(pts: pd.DataFrame, s: Setting, *cells: Cell) -> float:
    """The minimum effect of a difference between ``cells``: at their mean error."""
    values = [v for c in cells for v in by_seed(pts, *c).values()]
    mean = sum(values) / len(values) if values else math.nan
    return min_effect(mean if math.isfinite(mean) else None, s.images)


def combine(parts: list[tuple[str, str]]) -> str:
    """One verdict from several: shown when every part is; else the weakest outcome, with the
    parts that have it (at most four named) and a count of the others."""
    if len(parts) == 1:
        return parts[0][1]
    if all(v.startswith(SHOWN) for _, v in parts):
        return f"{SHOWN} (all {len(parts)} comparisons)"
    worst = next(
        w
        for w in (OPPOSITE, NOT_ENOUGH, NOT_SHOWN, SUGGESTIVE, "")
        if any(v.startswith(w) for _, v in parts)
    )
    weak = [(p, v) for p, v in parts if v.startswith(worst)]
    named = "; ".join(f"{p}: {v}" for p, v in weak[:4])
    more = f"; and {len(weak) - 4} more" if len(weak) > 4 else ""
    others = len(parts) - len(weak)
    shown = sum(v.startswith(SHOWN) for _, v in parts)
    tail = f" (of the other {others}: {shown} shown)" if others else ""
    return f"{worst} in {len(weak)} of {len(parts)} comparisons — {named}{more}{tail}"


def identical_across_b(pts: pd.DataFrame, norm: str, mode: str) -> bool:
    """Whether every seed's error is exactly the same at every b evaluated."""
    sel = pts[(pts["norm"] == norm) & (pts["mode"] == mode) & (pts["status"] == "ok")]
    if sel.empty or sel["b"].nunique() < 2:
        return False
    return bool((sel.groupby("seed")["error"].nunique() == 1).all())


def span_text(diffs: dict[int, Estimate], ref: int) -> str:
    """``err(b) − err(256) from −0.10 to +0.20 over b = 1…128, widest interval …``."""
    measured = {b: d for b, d in diffs.items() if d.n}
    if not measured:
        return "not measured"
    means = [d.mean for d in measured.values()]
    bs = sorted(measured)
    n = min(d.n for d in measured.values())
    lows = [d.low for d in measured.values() if math.isfinite(d.low)]
    highs = [d.high for d in measured.values() if math.isfinite(d.high)]
    widest = f", all 95% intervals within {min(lows):+.2f} … {max(highs):+.2f}" if lows else ""
    return (
        f"err(b) − err({ref}) from {min(means):+.2f} to {max(means):+.2f} over b = {bs[0]}…"
        f"{bs[-1]}{widest} (n = {n})"
    )


def flat(
    pts: pd.DataFrame, s: Setting, norms: list[str], mode: str
) -> tuple[list[str], list[tuple[str, str]], list[float]]:
    """Per norm: its line, the equivalence verdict at each b against the largest, the margins."""
    lines, parts, margins = [], [], []
    for norm in norms:
        bs = [b for b in batches_of(pts, norm, mode) if by_seed(pts, norm, mode, b)]
        if len(bs) < 2:
            continue
        ref = bs[-1]
        diffs = {}
        for b in bs[:-1]:
            d = paired(by_seed(pts, norm, mode, ref), by_seed(pts, norm, mode, b))
            margin = effect(pts, s, (norm, mode, ref), (norm, mode, b))
            diffs[b] = d
            margins.append(margin)
            parts.append((f"{label(norm)} b = {b}", judge_equivalence(d, margin)))
        same = (
            "; the same error at every b in every seed"
            if identical_across_b(pts, norm, mode)
            else ""
        )
        lines.append(f"{label(norm)}: {span_text(diffs, ref)}{same}")
    return lines, parts, margins


def eval_flat(pts: pd.DataFrame, s: Setting) -> Claim:
    """Eval-mode BN and BRN: err(b) ≈ err(256) at every b (equivalence)."""
    norms = [n for n in ("batch", "batch_renorm") if n in set(pts["norm"])]
    text = (
        "Eval-mode BN normalizes with its running (population) statistics, so its error does not "
        "depend on the evaluation batch size b, down to b = 1 (BRN's eval map is BN's)"
    )
    paper = "independent of the batch by construction of eval mode [READ]; no error numbers"
    lines, parts, margins = flat(pts, s, norms, "running")
    if not parts:
        needs = not_enough("BN runs evaluated with mode=running at two or more batch sizes")
        return _claim("eval_flat", text, paper, "–", "–", needs, s)
    return _claim(
        "eval_flat",
        text,
        paper,
        "eval mode, paired by seed: " + " | ".join(lines),
        f"each 95% interval of err(b) − err(largest b) inside ±the minimum effect "
        f"({min(margins):.2f}–{max(margins):.2f} points)",
        combine(parts),
        s,
    )


def batch_free_flat(pts: pd.DataFrame, s: Setting) -> Claim:
    """GN, LN, FRN (no batch statistics, as their runs record): err(b) ≈ err(256) (equivalence)."""
    free = pts[~pts["dependent"].astype(bool)]
    norms = ordered(set(free["norm"]))
    names = ", ".join(label(n) for n in norms) or "GN, LN, FRN"
    text = f"Batch-independent norms ({names}) are unaffected by the evaluation batch size"
    paper = "GN, LN, IN, FRN … compute the same thing at any batch size, in training and at test time [READ]"
    lines, parts, margins = flat(pts, s, norms, "running")
    if not parts:
        needs = not_enough("runs of a norm without batch statistics evaluated at two or more b")
        return _claim("batch_free_flat", text, paper, "–", "–", needs, s)
    return _claim(
        "batch_free_flat",
        text,
        paper,
        "paired by seed: " + " | ".join(lines),
        f"each 95% interval of err(b) − err(largest b) inside ±the minimum effect "
        f"({min(margins):.2f}–{max(margins):.2f} points)",
        combine(parts),
        s,
    )


def undefined_text(pts: pd.DataFrame, norm: str, mode: str, b: int) -> str:
    """``b = 1: undefined in 3 of 3 seeds (…)`` or ''."""
    c = cell(pts, norm, mode, b)
    bad = c[c["status"] == "undefined"]
    if bad.empty:
        return ""
    why = str(bad["note"].iloc[0])
    return f"b = {b}: undefined in {len(bad)} of {len(c)} seeds ({why})"


def batch_degrades(pts: pd.DataFrame, s: Setting) -> Claim:
    """BN with test-batch statistics: err(smallest defined b) − err(largest b) > 0."""
    text = "BN evaluated with each test batch's own statistics (prediction-time BN) gets worse as b → 1"
    paper = (
        "train-mode BN at b = 1: undefined with one value per channel (fully connected layers), "
        "Instance Normalization with spatial extent [READ-3P]; no error numbers in our notes"
    )
    bs = batches_of(pts, "batch", "batch")
    undefined = [t for b in bs if (t := undefined_text(pts, "batch", "batch", b))]
    defined = [
        b
        for b in bs
        if by_seed(pts, "batch", "batch", b)
        and not (cell(pts, "batch", "batch", b)["status"] == "undefined").any()
    ]
    if len(defined) < 2:
        needs = not_enough("BN runs evaluated with mode=batch at two or more batch sizes")
        return _claim("batch_degrades", text, paper, "; ".join(undefined) or "–", "–", needs, s)
    small, large = defined[0], defined[-1]
    ref = by_seed(pts, "batch", "batch", large)
    rows = [
        f"b = {b}: {paired(ref, by_seed(pts, 'batch', 'batch', b)).text()}" for b in defined[:-1]
    ]
    d = paired(ref, by_seed(pts, "batch", "batch", small))
    m = effect(pts, s, ("batch", "batch", small), ("batch", "batch", large))
    return _claim(
        "batch_degrades",
        text,
        paper,
        f"test-batch statistics, err(b) − err({large}), paired by seed: "
        + "; ".join(rows + undefined),
        f"err({small}) − err({large}) > 0 (the smallest b where BN's batch statistics are "
        f"defined), effect ≥ the minimum ({m:.2f} points)",
        judge_difference(d, +1, m),
        s,
    )


def folded_free(s: Setting, path: Path = BENCH_CSV) -> Claim:
    """BN folded at b = 1: by construction when no BN layer is left and it times like no norm."""
    text = "Eval-mode BN folded into the convolution before it costs nothing at b = 1"
    paper = "can be folded into the convolution or linear layer before it at no cost [READ]"
    rule = (
        f"by construction when folding leaves no BN layer (the folded network runs the no-norm "
        f"network's convolutions plus a bias) and the measured time per image at b = 1 is within "
        f"{FOLDED_TOLERANCE:.0%} of the no-norm network's in the same fx-graph form (none+fx); "
        "one bench run, medians over repeats, no statistical test"
    )
    rows = [r for r in (read_rows(path) if path.is_file() else []) if r.get("batch") == "1"]
    case = {r.get("case"): r for r in rows}
    missing = [c for c in ("batch+folded", "none+fx") if c not in case]
    if missing:
        why = (
            f"{path} not found"
            if not path.is_file()
            else f"{path} has no {missing[0]} row at b = 1"
        )
        verdict = f"{NOT_MEASURED}: {why} (make it with `normbench bench inference`)"
        return _claim("folded_free", text, paper, NOT_MEASURED, rule, verdict, s)
    folded, floor, plain = case["batch+folded"], case["none+fx"], case.get("batch", {})
    ratio = float(folded["ms_per_image"]) / float(floor["ms_per_image"])
    left = int(float(folded.get("norm_layers_left") or 0))
    ours = (
        f"b = 1, {folded.get('model', '')}: BN folded {float(folded['ms_per_image']):.3f} ms/image,"
        f" x{ratio:.3f} of no norm as an fx graph (x{float(folded['ratio_to_none']):.3f} of the "
        "nested no-norm model)"
        + (
            f", BN not folded x{float(plain['ratio_to_none']):.3f} of the nested no-norm model"
            if plain.get("ratio_to_none")
            else ""
        )
        + f" ({path}, {folded.get('date', '')}, {folded.get('device_name', '')}, load average "
        f"{folded.get('load_average', '?')})"
    )
    if left:
        verdict = f"{NOT_SHOWN}: {left} BN layer(s) left unfolded"
    elif not ratio <= 1.0 + FOLDED_TOLERANCE:
        verdict = (
            f"{NOT_SHOWN}: no BN layer is left, but the folded network measured x{ratio:.3f} of "
            "the no-norm fx graph's time"
        )
    else:
        verdict = (
            f"{BY_CONSTRUCTION}: folding leaves no BN layer (its outputs checked equal to the "
            f"model's), and it measured x{ratio:.3f} of the no-norm fx graph's time"
        )
    return _claim("folded_free", text, paper, ours, rule, verdict, s)


def all_claims(pts: pd.DataFrame, s: Setting, bench: Path = BENCH_CSV) -> list[Claim]:
    """The study's claims in the README's order."""
    return [
        eval_flat(pts, s),
        batch_degrades(pts, s),
        batch_free_flat(pts, s),
        folded_free(s, bench),
    ]
