"""The weightnorm_normprop claims, judged per seed by the shared rule
(:mod:`normbench.report.verdicts`) on the numbers of :mod:`.points`.

Errors are test errors in % on the 10,000 test images; a run that diverged counts as chance
(90%). Differences are paired by seed; the minimum effect is
:func:`~normbench.report.verdicts.min_effect` at the errors compared, equivalences use a
margin of :data:`MARGIN` points. Who says what (docs/papers.md §5, §5.1, §5.2):

- Salimans & Kingma 2016 (WN, CIFAR-10, ConvPool-CNN-C): WN speeds early convergence over the
  plain network; WN 8.46 ≈ plain 8.43; BN 8.05; WN + mean-only BN 7.31 (best); BN about 16%
  slower per step than WN; the data-dependent init;
- the write-up's extensions (log-scale gain, bound on ‖v‖) as stabilizers;
- Arpit et al. 2016 (NormProp): 9.11 against BN's 9.41, and training at batch size 1, where BN
  "cannot be used";
- Gitman & Ginsburg 2017: on ResNet-50/ImageNet WN trails BN by about 6 points and trains less
  stably; the remedies tried here have no number in the papers.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from normbench.bench.train_report import read_rows
from normbench.report.flags import not_enough
from normbench.report.seeds import by_seed
from normbench.report.verdicts import (
    Claim,
    Estimate,
    estimate,
    judge_difference,
    judge_equivalence,
    min_effect,
    paired,
)
from normbench.studies.weightnorm_normprop.points import LABEL

WN = "Salimans & Kingma 2016, §5 (docs/papers.md §5)"
NP = "Arpit et al. 2016, abstract and Table 1 (docs/papers.md §5.1)"
GG = "Gitman & Ginsburg 2017, abstract (docs/papers.md §5.2)"
EXT = "the write-up's WN extensions (docs/papers.md §5)"
MARGIN = 1.0  # points: "about the same" / "roughly matches"
TRAINED_BELOW = 70.0  # % test error: 20 points under chance counts as training
MIN_COST_RATIO = 1.05


def _claim(
    key: str, text: str, source: str, paper: str, ours: str, rule: str, verdict: str, scale: str
) -> Claim:
    return Claim("weightnorm_normprop", key, text, source, paper, ours, rule, verdict, scale)


def _vals(pts: pd.DataFrame, setting: str, column: str = "test_error") -> dict[int, float]:
    return by_seed(pts, column, setting=setting)


def _mean(values: dict[int, float]) -> float:
    return sum(values.values()) / len(values) if values else math.nan


def _effect(pts: pd.DataFrame, *settings: str) -> float:
    errs = [v for s in settings for v in _vals(pts, s).values()]
    images = pts["images"].dropna() if "images" in pts else pd.Series(dtype=float)
    mean = sum(errs) / len(errs) if errs else None
    return min_effect(mean, int(images.median()) if len(images) else None)


def _ours(d: Estimate, what: str, a: str, b: str, pts: pd.DataFrame, column: str) -> str:
    ma, mb = _mean(_vals(pts, a, column)), _mean(_vals(pts, b, column))
    return (
        f"{what}, {LABEL[b]} − {LABEL[a]}, paired by seed: {d.text()} points "
        f"({LABEL[a]} {ma:.2f}%, {LABEL[b]} {mb:.2f}%)"
    )


def difference(
    pts: pd.DataFrame,
    key: str,
    text: str,
    source: str,
    paper: str,
    low: str,
    high: str,
    scale: str,
    column: str = "test_error",
) -> Claim:
    """Claim: setting ``high`` has the higher ``column`` (error) than ``low``: high − low > 0."""
    d = paired(_vals(pts, low, column), _vals(pts, high, column))
    what = "final test error" if column == "test_error" else "test error at ¼ of the steps"
    if d.n < 2:
        return _claim(
            key, text, source, paper, "–", "–", not_enough("two or more paired seeds"), scale
        )
    effect = _effect(pts, low, high)
    rule = f"> 0, effect ≥ {effect:.2f} points"
    return _claim(
        key, text, source, paper, _ours(d, what, low, high, pts, column), rule,
        judge_difference(d, +1, effect), scale,
    )  # fmt: skip


def equivalence(
    pts: pd.DataFrame, key: str, text: str, source: str, paper: str, a: str, b: str, scale: str
) -> Claim:
    """Claim: the final errors of ``a`` and ``b`` differ by less than MARGIN points."""
    d = paired(_vals(pts, a), _vals(pts, b))
    if d.n < 2:
        return _claim(
            key, text, source, paper, "–", "–", not_enough("two or more paired seeds"), scale
        )
    rule = f"the 95% interval inside ±{MARGIN:g} points"
    ours = _ours(d, "final test error", a, b, pts, "test_error")
    return _claim(key, text, source, paper, ours, rule, judge_equivalence(d, MARGIN), scale)


def trains_at_batch_1(pts: pd.DataFrame, setting: str, key: str, scale: str) -> Claim:
    """Claim: ``setting`` at batch 1 ends under TRAINED_BELOW % error (chance: 90%)."""
    errs = _vals(pts, setting)
    text = f"{LABEL[setting].replace(', batch 1', '')} trains at batch size 1"
    paper = (
        "NormProp works at batch size 1 (abstract); WN's reparametrization has no batch statistics"
    )
    if len(errs) < 2:
        return _claim(key, text, NP, paper, "–", "–", not_enough("two or more seeds"), scale)
    d = estimate(TRAINED_BELOW - e for e in errs.values())
    ours = f"final test error {_mean(errs):.2f}% (n = {len(errs)}); {TRAINED_BELOW:g} − error: {d.text()} points"
    rule = f"error below {TRAINED_BELOW:g}% (the interval of {TRAINED_BELOW:g} − error above 0)"
    return _claim(key, text, NP, paper, ours, rule, judge_difference(d, +1), scale)


def bn_at_batch_1(pts: pd.DataFrame, scale: str) -> Claim:
    """Claim: BN cannot train at batch 1: its runs refuse, or end at or above TRAINED_BELOW %."""
    key, text = "bn_batch_1", "BN cannot be trained at batch size 1"
    paper = "BN cannot be used with batch size 1 in training (NormProp abstract)"
    rows = pts[pts["setting"] == "b1_batch"] if not pts.empty else pts
    refused = rows[rows["status"] == "failed"] if not rows.empty else rows
    if len(refused) and len(refused) == len(rows):
        message = str(refused["error"].iloc[0])
        ours = f"all {len(rows)} runs refused at the first step: {message}"
        return _claim(key, text, NP, paper, ours, "the norm's own error", "by construction", scale)
    errs = _vals(pts, "b1_batch")
    if len(errs) < 2:
        return _claim(key, text, NP, paper, "–", "–", not_enough("two or more seeds"), scale)
    d = estimate(e - TRAINED_BELOW for e in errs.values())
    loss = _vals(pts, "b1_batch", "train_loss") if "train_loss" in pts else {}
    ours = (
        f"no refusal (each BN layer of ConvPool-CNN-C sees ≥ 25 positions per channel of one "
        f"image); final test error {_mean(errs):.2f}% (n = {len(errs)}); error − "
        f"{TRAINED_BELOW:g}: {d.text()} points"
        + (
            f"; training loss over the last logged steps {_mean(loss):.4f} (a ten-class guess: "
            f"ln 10 = {math.log(10):.4f}), so the training forward, with each image's own "
            f"statistics, does not learn either"
            if loss
            else ""
        )
    )
    rule = f"error at or above {TRAINED_BELOW:g}% (opposite: the interval below it)"
    return _claim(key, text, NP, paper, ours, rule, judge_difference(d, +1), scale)


BENCH_CSV = Path("results/bench/convpool/iteration-cpu.csv")
BENCH_COMMAND = (
    "normbench bench train --model convpool --width 0.125 --batch 100 --image-size 28 "
    "--variants batch,weight --modes eager-fp32,compiled-fp32 --threads 1 --repeats 15 "
    "--no-profile --out results/bench/convpool"
)


def bench_repeats(path: Path, mode: str) -> tuple[dict[str, list[float]], dict[str, str]]:
    """Per-repeat ms per step of ``batch`` and ``weight`` in ``mode``, from the last bench run
    in ``path`` that timed both (``step_ms_repeats``), and that run's row of ``batch``."""
    if not path.is_file():
        return {}, {}
    rows = [r for r in read_rows(path) if r.get("mode") == mode and r.get("step_ms_repeats")]
    for bn in reversed([r for r in rows if r["variant"] == "batch"]):
        same = [r for r in rows if r["variant"] == "weight" and r["command"] == bn["command"]]
        if same and same[-1]["date"] == bn["date"]:
            times = {v: [float(x) for x in r["step_ms_repeats"].split()] for v, r in
                     (("batch", bn), ("weight", same[-1]))}  # fmt: skip
            if len(times["batch"]) == len(times["weight"]):
                return times, bn
    return {}, {}


def _ratio_text(times: dict[str, list[float]]) -> tuple[Estimate, str]:
    d = estimate(math.log(b / w) for b, w in zip(times["batch"], times["weight"], strict=True))
    bn, wn = statistics.median(times["batch"]), statistics.median(times["weight"])
    text = (
        f"{math.exp(d.mean):.3f} (95% interval {math.exp(d.low):.3f}–{math.exp(d.high):.3f}, "
        f"n = {d.n} repeats; medians BN {bn:.1f} ms, WN {wn:.1f} ms)"
    )
    return d, text


def cost_claim(pts: pd.DataFrame, scale: str, path: Path = BENCH_CSV) -> Claim:
    """Claim: BN's training step takes longer than WN's, on the interleaved timings of ``normbench
    bench train --model convpool`` (each repeat times BN and WN in the same round), eager."""
    key, text = "bn_costs_more", "BN costs more per training step than WN"
    paper = "BN about 16% slower per step than WN (CIFAR-10, GPU, 2016)"
    rule = (
        f"BN / WN step time paired repeat by repeat (the bench's unit of replication), eager "
        f"fp32: ln(ratio) > 0 on the 95% interval and ratio ≥ {MIN_COST_RATIO:g}"
    )
    eager, row = bench_repeats(path, "eager-fp32")
    if not eager:
        why = "has no BN and WN rows with per-repeat times" if path.is_file() else "not found"
        return _claim(key, text, WN, paper, "–", rule, f"not measured: {path} {why} (make it with "
                      f"`{BENCH_COMMAND}`)", scale)  # fmt: skip
    d, eager_text = _ratio_text(eager)
    compiled, _ = bench_repeats(path, "compiled-fp32")
    bn, wn = _vals(pts, "cp_batch", "ms_step"), _vals(pts, "cp_weight", "ms_step")
    ours = (
        f"BN / WN time of one training step, ConvPool-CNN-C width {row.get('width')} batch "
        f"{row.get('batch')}, {row.get('threads')} thread, {row.get('device_name')}, "
        f"{row.get('date')} ({path}; {row.get('conditions')}): eager {eager_text}"
        + (f"; compiled {_ratio_text(compiled)[1]}" if compiled else "")
        + (
            f". The study's own runs (two at a time, BN and WN at different times and loads): "
            f"BN {_mean(bn):.1f} ms, WN {_mean(wn):.1f} ms"
            if bn and wn
            else ""
        )
    )
    verdict = judge_difference(d, +1, math.log(MIN_COST_RATIO))
    return _claim(key, text, WN, paper, ours, rule, verdict, scale)


def resnet_gap(pts: pd.DataFrame, scale: str) -> Claim:
    """Claim: even WN's best setting on ResNet-50 ends above BN's error."""
    wn = [s for s in LABEL if s.startswith("rn_weight")]
    means = {s: _mean(_vals(pts, s)) for s in wn if _vals(pts, s)}
    text = "On ResNet-50 WN trails BN (even its best setting here)"
    paper = "WN family about 6 points below BN in test accuracy, ResNet-50 on ImageNet"
    if not means:
        return _claim("rn_wn_trails_bn", text, GG, paper, "–", "–", not_enough("WN runs"), scale)
    best = min(means, key=means.get)
    claim = difference(pts, "rn_wn_trails_bn", text, GG, paper, "rn_batch", best, scale)
    return claim


RESNET_FIXES: dict[str, tuple[str, str, bool]] = {
    # setting: (what it changes, the claim's text, whether the change is a removal)
    "rn_weight_lowlr": ("lr / 10", "a tenth of the learning rate helps WN train ResNet-50", False),
    "rn_weight_warmup": ("warm-up", "a warm-up helps WN train ResNet-50", False),
    "rn_weight_nozero": ("zero-init", "the zero-init of each block's last gain helps WN", True),
    "rn_weight_adam": ("Adam", "Adam instead of SGD helps WN train ResNet-50", False),
    "rn_weight_noinit": ("data init", "the data-dependent init helps WN train ResNet-50", True),
}


def all_claims(pts: pd.DataFrame, scale: str, bench: Path = BENCH_CSV) -> list[Claim]:
    """Every claim of the study, in the order of the README; the cost claim reads ``bench``."""
    if pts.empty:
        pts = pd.DataFrame(
            columns=[
                "setting",
                "seed",
                "test_error",
                "early_error",
                "ms_step",
                "train_loss",
                "status",
                "error",
                "images",
            ]
        )
    c: list[Callable[[], Claim]] = [
        lambda: difference(pts, "wn_early", "WN speeds early convergence over no normalization", WN,
                           "faster early, the plain net catches up (Fig. 2; no number)", "cp_weight",
                           "cp_none", scale, "early_error"),
        lambda: equivalence(pts, "wn_like_none", "WN alone ends about where the unnormalized net does",
                            WN, "WN 8.46% vs plain 8.43%", "cp_none", "cp_weight", scale),
        lambda: difference(pts, "bn_beats_wn", "BN ends slightly better than WN", WN,
                           "BN 8.05% vs WN 8.46%", "cp_batch", "cp_weight", scale),
        lambda: difference(pts, "mobn_beats_bn", "WN + mean-only BN ends better than BN", WN,
                           "7.31% vs BN 8.05%", "cp_weight_mobn", "cp_batch", scale),
        lambda: difference(pts, "mobn_beats_wn", "WN + mean-only BN ends better than WN alone", WN,
                           "7.31% vs WN 8.46%", "cp_weight_mobn", "cp_weight", scale),
        lambda: equivalence(pts, "normprop_like_bn", "NormProp roughly matches BN", NP,
                            "9.11% vs BN 9.41% (CIFAR-10, no augmentation)", "cp_batch", "cp_normprop", scale),
        lambda: difference(pts, "data_init_wn", "WN's data-dependent init speeds early training", WN,
                           "the init the paper uses (§3; no ablation number)", "cp_weight",
                           "cp_weight_noinit", scale, "early_error"),
        lambda: difference(pts, "data_init_mobn", "the data-dependent init speeds early training of WN + mean-only BN",
                           WN, "(§3; no ablation number)", "cp_weight_mobn", "cp_weight_mobn_noinit", scale, "early_error"),
        lambda: equivalence(pts, "log_scale_same", "the log-scale gain leaves WN's error unchanged at the paper's lr",
                            EXT, "no number", "cp_weight", "cp_weight_log", scale),
        lambda: equivalence(pts, "bound_same", "the bound on ‖v‖ leaves WN's error unchanged at the paper's lr",
                            EXT, "no number", "cp_weight", "cp_weight_bound", scale),
        lambda: difference(pts, "log_scale_high_lr", "at 10 × the lr, the log-scale gain makes WN end lower",
                           EXT, "a stabilizer (no number)", "cp_weight_log_hilr", "cp_weight_hilr", scale),
        lambda: difference(pts, "bound_high_lr", "at 10 × the lr, the bound on ‖v‖ makes WN end lower",
                           EXT, "a stabilizer (no number; WN §2.1: an unbounded ‖v‖ self-stabilizes)",
                           "cp_weight_bound_hilr", "cp_weight_hilr", scale),
        lambda: cost_claim(pts, scale, bench),
        lambda: trains_at_batch_1(pts, "b1_normprop", "normprop_batch_1", scale),
        lambda: trains_at_batch_1(pts, "b1_weight", "wn_batch_1", scale),
        lambda: bn_at_batch_1(pts, scale),
        lambda: resnet_gap(pts, scale),
    ]  # fmt: skip
    paper = "WN trains ResNet-50 less stably than BN (no number for the remedy)"
    for setting, (_what, text, removal) in RESNET_FIXES.items():
        key = f"rn_{setting.removeprefix('rn_weight_')}"
        low, high = ("rn_weight", setting) if removal else (setting, "rn_weight")
        c.append(
            lambda k=key, t=text, lo=low, hi=high: difference(pts, k, t, GG, paper, lo, hi, scale)
        )
    return [make() for make in c]
