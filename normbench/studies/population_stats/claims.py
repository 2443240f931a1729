"""The population-statistics study's claims, each judged by the shared rule
(normbench/report/verdicts.py) on differences paired by seed.

- **EMA lag** (per setting): the *gap* of a kept model is its error with the moving average
  minus its error with Precise BN (points). The early gap is the mean gap over the kept steps of
  the first 20% of training; the claim is early gap > 0.
- **The gap closes**: early gap − final gap > 0 (the final gap is the last kept step's).
- **Lag grows with the learning rate / with few steps per epoch / with a slow EMA**: the early
  gap of that setting − the reference MLP's early gap > 0 (runs paired by seed).
- **Precise BN saturates by 10³–10⁴ samples**: at the final step, Precise BN from 1,000 samples
  − from 10,000, an equivalence judged on the 95% interval inside ± the minimum effect; and
  from 10 samples − from 10,000 > 0 (so that there is something to saturate from).
- **Train-test inconsistency** (NBS 2 and 4): population statistics (Precise BN) − batch
  statistics at the training NBS > 0, on the final model.
- **FrozenBN closes part of the gap**: the FrozenBN run's error with its running statistics −
  the plain run's (same NBS, same seed) < 0; ``ours`` also gives the share of the plain run's
  gap (running − batch) that it closes.

The minimum effect of each comparison is ``min_effect(error, images)``: the error of the
reference side and the images of one evaluation (10,000 test images for the MLP, 1,000 held-out
images for the ResNet).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import pandas as pd

from normbench.report.flags import not_enough
from normbench.report.verdicts import (
    Claim,
    Estimate,
    estimate,
    judge_difference,
    judge_equivalence,
    min_effect,
    paired,
)
from normbench.studies.population_stats.data import by_seed, errors
from normbench.studies.population_stats.settings import LABELS

STUDY = "population_stats"
SOURCE = "Wu & Johnson 2021 (docs/papers.md §10)"
OURS = "ours (no paper states it at this setting)"
QUALITATIVE = "qualitative (no number at this scale)"
#: the Precise-BN samples of each setting's tracks (None: all training samples)
PRECISE = {"resnet_n32": 1000.0}
EARLY_SHARE = 0.2


def kept_of(table: pd.DataFrame, setting: str) -> tuple[int, ...]:
    """The kept steps a setting's runs were evaluated at (ascending)."""
    rows = table[(table["setting"] == setting) & table["kept"]]
    return tuple(sorted({int(s) for s in rows["step"]}))


def final_step(table: pd.DataFrame, setting: str) -> int | None:
    """The last step of a setting's runs (their final models)."""
    rows = table[table["setting"] == setting]
    return int(rows["step"].max()) if len(rows) else None


def early_steps(table: pd.DataFrame, setting: str) -> tuple[int, ...]:
    """The kept steps in the first 20% of training."""
    steps, last = kept_of(table, setting), final_step(table, setting)
    return tuple(s for s in steps if last and s <= EARLY_SHARE * last)


def gap_by_seed(table: pd.DataFrame, setting: str, steps: tuple[int, ...]) -> dict[int, float]:
    """Per seed: the mean over ``steps`` of running − Precise BN (seeds with every step)."""
    if not steps:
        return {}
    running = errors(table, setting, "running")
    precise = errors(table, setting, "precise", PRECISE.get(setting))
    out = {}
    seeds = set(running["seed"]) & set(precise["seed"])
    for seed in sorted(seeds):
        a, b = by_seed_steps(running, seed, steps), by_seed_steps(precise, seed, steps)
        if len(a) == len(b) == len(steps):
            out[seed] = sum(x - y for x, y in zip(a, b, strict=True)) / len(steps)
    return out


def by_seed_steps(rows: pd.DataFrame, seed: int, steps: tuple[int, ...]) -> list[float]:
    mine = rows[(rows["seed"] == seed) & rows["kept"]].set_index("step")["error"]
    return [float(mine[s]) for s in steps if s in mine.index]


def _effect(table: pd.DataFrame, setting: str, mode: str = "precise") -> float:
    rows = table[(table["setting"] == setting) & (table["mode"] == mode)]
    if rows.empty:
        return min_effect()
    images = rows["images"].dropna()
    return min_effect(float(rows["error"].mean()), int(images.median()) if len(images) else None)


def _claim(key: str, claim: str, source: str, paper: str, ours: str, rule: str, verdict: str):
    return Claim(STUDY, key, claim, source, paper, ours, rule, verdict, "")


def _judged(
    d: Estimate, sign: int, effect: float, needs: str, judge: Callable | None = None
) -> tuple[str, str]:
    if d.n == 0:
        return "not measured", not_enough(needs)
    verdict = judge(d) if judge else judge_difference(d, sign, effect)
    return d.text(2, " points"), verdict


LAG_SETTINGS = ("mlp", "mlp_lr_high", "mlp_big_batch", "resnet_n32")


def lag_claims(table: pd.DataFrame) -> list[Claim]:
    claims = []
    for setting in LAG_SETTINGS:
        early, final = early_steps(table, setting), kept_of(table, setting)[-1:]
        e = gap_by_seed(table, setting, early) if early else {}
        f = gap_by_seed(table, setting, final) if final else {}
        effect = _effect(table, setting)
        needs = f"mode=running and mode=precise at the kept steps of {setting}"
        ours, verdict = _judged(estimate(e.values()), +1, effect, needs)
        when = f"steps {early[0]}–{early[-1]}" if early else "the first 20% of steps"
        claims.append(
            _claim(
                f"ema_lag:{setting}",
                f"Early in training ({when}), the moving average's error is "
                f"above Precise BN's ({LABELS[setting]})",
                SOURCE,
                QUALITATIVE,
                f"running − precise, mean over those steps: {ours}",
                "per seed, mean over the kept steps of the first 20% of training of running − "
                f"precise; > 0 (minimum effect {effect:.2f})",
                verdict,
            )
        )
        closes = {s: e[s] - f[s] for s in e if s in f}
        ours, verdict = _judged(estimate(closes.values()), +1, effect, needs)
        claims.append(
            _claim(
                f"gap_closes:{setting}",
                f"The moving average's lag closes by the end of training ({LABELS[setting]})",
                SOURCE,
                QUALITATIVE,
                f"early gap − final gap (step {final[0] if final else '?'}): {ours}; final gap "
                f"{estimate(f.values()).text(2)}",
                f"per seed, early gap − final gap; > 0 (minimum effect {effect:.2f})",
                verdict,
            )
        )
    return claims


LAG_CAUSES = (
    ("lr_lag", "mlp_lr_high", "The lag is larger at a high learning rate (lr 2.0 vs 0.5)", SOURCE),
    (
        "batch_lag",
        "mlp_big_batch",
        "The lag is larger with few steps per epoch (batch 960, lr 8.0, vs batch 60, lr 0.5)",
        SOURCE,
    ),
    ("momentum_lag", "mlp_momentum_slow", "A slower EMA (momentum 0.01 vs 0.1) lags more", OURS),
)


def lag_cause_claims(table: pd.DataFrame) -> list[Claim]:
    claims = []
    reference = gap_by_seed(table, "mlp", early_steps(table, "mlp"))
    for key, setting, text, source in LAG_CAUSES:
        gap = gap_by_seed(table, setting, early_steps(table, setting))
        effect = _effect(table, setting)
        needs = f"the early gaps of {setting} and mlp on the same seeds"
        ours, verdict = _judged(paired(reference, gap), +1, effect, needs)
        claims.append(
            _claim(
                key,
                text,
                source,
                QUALITATIVE,
                f"early gap of {setting} − early gap of mlp: {ours}",
                f"paired by seed; > 0 (minimum effect {effect:.2f})",
                verdict,
            )
        )
    return claims


def precise_claims(table: pd.DataFrame) -> list[Claim]:
    claims = []
    for setting in ("mlp", "resnet_n32"):
        final = final_step(table, setting)
        rows = {n: by_seed(errors(table, setting, "precise", n), final) for n in (10, 1000, 10000)}
        effect = _effect(table, setting)
        needs = f"mode=precise samples=10,1000,10000 on the final model of {setting}"
        ours, verdict = _judged(
            paired(rows[10000], rows[1000]),
            0,
            effect,
            needs,
            judge=lambda d, m=effect: judge_equivalence(d, m),
        )
        claims.append(
            _claim(
                f"precise_saturates:{setting}",
                f"Precise BN needs only 10³–10⁴ samples: 1,000 samples do as well as 10,000 "
                f"({LABELS[setting]})",
                SOURCE,
                "10³–10⁴ samples are enough for near-optimal population statistics",
                f"precise(1,000) − precise(10,000): {ours}",
                f"paired by seed; the 95% interval inside ±{effect:.2f} (the minimum effect)",
                verdict,
            )
        )
        ours, verdict = _judged(paired(rows[10000], rows[10]), +1, effect, needs)
        claims.append(
            _claim(
                f"precise_few:{setting}",
                f"With only 10 samples Precise BN is worse than with 10,000 ({LABELS[setting]})",
                OURS,
                "–",
                f"precise(10) − precise(10,000): {ours}",
                f"paired by seed; > 0 (minimum effect {effect:.2f})",
                verdict,
            )
        )
    return claims


def nbs_claims(table: pd.DataFrame) -> list[Claim]:
    claims = []
    for nbs in (4, 2):
        plain, frozen = f"resnet_n{nbs}", f"resnet_n{nbs}_frozen"
        final = final_step(table, plain)
        population = by_seed(errors(table, plain, "precise", 1000.0), final)
        batch = by_seed(errors(table, plain, "batch"), final)
        running = by_seed(errors(table, plain, "running"), final)
        effect = _effect(table, plain, "batch")
        needs = f"mode=precise samples=1000 and mode=batch on the final models of {plain}"
        ours, verdict = _judged(paired(batch, population), +1, effect, needs)
        claims.append(
            _claim(
                f"inconsistency:nbs{nbs}",
                f"At a normalization batch of {nbs}, evaluating with population statistics is "
                "worse than with batch statistics (train-test inconsistency)",
                SOURCE,
                "population-statistics error ≫ mini-batch-statistics error at small NBS",
                f"precise − batch (groups of {nbs}): {ours}; running − batch "
                f"{paired(batch, running).text(2)}",
                f"paired by seed; > 0 (minimum effect {effect:.2f})",
                verdict,
            )
        )
        frozen_running = by_seed(errors(table, frozen, "running"), final)
        needs = f"mode=running on the final models of {plain} and {frozen}"
        d = paired(running, frozen_running)
        ours, verdict = _judged(d, -1, effect, needs)
        gap = paired(batch, running)
        share = -d.mean / gap.mean if d.n and gap.n and gap.mean > 0 else math.nan
        claims.append(
            _claim(
                f"frozen:nbs{nbs}",
                f"FrozenBN over the last 20% of training lowers the population-statistics error "
                f"at a normalization batch of {nbs}, closing part of the gap",
                SOURCE,
                "FrozenBN for the last 20 epochs closes part of the gap",
                f"FrozenBN − plain, both with running statistics: {ours}"
                + (
                    f"; {share:.0%} of the plain run's gap (running − batch)"
                    if share == share
                    else ""
                ),
                f"paired by seed; < 0 (minimum effect {effect:.2f})",
                verdict,
            )
        )
    return claims


def all_claims(table: pd.DataFrame, scale: str) -> list[Claim]:
    """Every claim of the study, in the README's order, with ``scale``."""
    claims = [
        *lag_claims(table),
        *lag_cause_claims(table),
        *precise_claims(table),
        *nbs_claims(table),
    ]
    return [Claim(**{**c.__dict__, "scale": scale}) for c in claims]
