"""Domain-shift study, the claims: one verdict each, computed from the numbers.

Differences are paired by run (the same trained model under two modes, on the cells both
hold), then taken over the runs of a (model, norm): mean ± standard error over seeds. An error
difference counts when it exceeds both twice its standard error and ``MIN_EFFECT`` points (the
small-batch report's rule); a KL difference counts when it exceeds twice its standard error and
``KL_MIN_SHARE`` of the KL under running statistics. A claim with nothing to compare, or with
one seed only, says "not enough runs: needs …" and no verdict.
"""

from __future__ import annotations

import math

import pandas as pd

from normbench.studies.domain_shift.data import (
    CELL,
    clean,
    corrupted,
    diff_of,
    groups_of,
    label,
    of_group,
    paired_modes,
    per_run_gap,
)
from normbench.report.flags import not_enough
from normbench.studies.small_batch.claims import MIN_EFFECT, Diff, Verdict

KL_MIN_SHARE = 0.1  # a KL drop counts when it is at least this share of the KL under running

CLAIMS = {
    "adapt": "Re-estimating BN statistics on the target data (AdaBN, mode=adapt) lowers the mean "
    "corrupted error against the source statistics (mode=running) (Li et al. 2016; Schneider et "
    "al. 2020; Tent's table, docs/papers.md §7: CIFAR-10-C severity 5, 43.5 → 20.4)",
    "severity": "The gain of adaptation grows with the severity of the corruption",
    "partial": "With few target samples, partial adaptation (source statistics as a prior of "
    "strength N) beats AdaBN on those samples alone (Schneider et al. 2020)",
    "batch_free": "Models whose norms use no batch statistics (GN, LN, FRN) gain nothing from "
    "statistics adaptation",
    "clean": "Adapting to clean data (no shift) changes the error by less than the seed spread",
    "kl": "The per-layer KL divergence between source and target responses drops after "
    "adaptation (AdaBN's KL analysis)",
    "tent": "Tent improves on AdaBN (Wang et al. 2021, docs/papers.md §7: 20.4 → 18.6 on "
    "CIFAR-10-C, severity 5)",
}


def _one_seed(diffs: dict[tuple[str, str], Diff]) -> list[str]:
    return [label(g) for g, d in diffs.items() if d.seeds < 2]


def judge(diffs: dict[tuple[str, str], Diff], lower: bool, what: str) -> str:
    """Verdict on a difference expected below 0 (``lower``) or above, over groups."""
    single = _one_seed(diffs)
    if len(single) == len(diffs):
        return not_enough(f"two or more seeds of {', '.join(single)} ({what})")
    judged = {g: d for g, d in diffs.items() if d.seeds >= 2}
    shown = [g for g, d in judged.items() if d.significant and (d.mean < 0) == lower]
    opposite = [g for g, d in judged.items() if d.significant and (d.mean < 0) != lower]
    if len(shown) == len(judged):
        text = "shown"
    elif shown:
        text = f"shown for {', '.join(map(label, shown))}; not for the others"
    elif opposite:
        text = f"opposite for {', '.join(map(label, opposite))}"
    else:
        text = "not shown: within the seed spread"
    if opposite and shown:
        text += f"; opposite for {', '.join(map(label, opposite))}"
    if single:
        text += f" ({', '.join(single)}: one seed, not judged)"
    return text


def _ours(diffs: dict[tuple[str, str], Diff], what: str) -> str:
    return "; ".join(f"{label(g)}: {what} {d.text()}" for g, d in diffs.items())


def _mode_pair_claim(cells: pd.DataFrame, claim: str, base: str, other: str) -> Verdict:
    """``other − base`` on corrupted cells, per model with batch statistics, judged as lower."""
    diffs = {g: paired_modes(cells, g, base, other) for g in groups_of(cells, True)}
    diffs = {g: d for g, d in diffs.items() if d.seeds}
    if not diffs:
        needs = not_enough(
            f"runs with batch statistics evaluated under mode={base} and mode={other}"
        )
        return Verdict(CLAIMS[claim], "no such pair", needs)
    verdict = judge(diffs, lower=True, what=f"mode={base} and mode={other} on corrupted data")
    return Verdict(CLAIMS[claim], _ours(diffs, f"{other} − {base}"), verdict)


def adapt_claim(cells: pd.DataFrame) -> Verdict:
    """adapt − running on corrupted cells, per model with batch statistics."""
    return _mode_pair_claim(cells, "adapt", "running", "adapt")


def severity_claim(cells: pd.DataFrame) -> Verdict:
    """The gain running − adapt at the highest severity minus at the lowest."""
    diffs, parts = {}, []
    for group in groups_of(cells, True):
        g = of_group(cells, group)
        g = g[corrupted(g)]
        running, adapt = g[g["mode"] == "running"], g[g["mode"] == "adapt"]
        severities = sorted(set(pd.merge(running[CELL], adapt[CELL], on=CELL)["severity"]))
        if len(severities) < 2:
            continue
        by = {  # per run: running − adapt at each severity
            s: -per_run_gap(running[running["severity"] == s], adapt[adapt["severity"] == s])
            for s in severities
        }
        lo, hi = severities[0], severities[-1]
        diffs[group] = diff_of((by[hi] - by[lo]).dropna())
        means = ", ".join(f"{s}: {by[s].mean():+.2f}" for s in severities)
        rising = all(
            by[a].mean() <= by[b].mean() for a, b in zip(severities, severities[1:], strict=False)
        )
        parts.append(
            f"{label(group)}: gain (running − adapt) by severity {means}; severity {hi} − {lo}: "
            f"{diffs[group].text()}{' (monotone)' if rising else ' (not monotone)'}"
        )
    if not diffs:
        needs = not_enough(
            "runs with batch statistics evaluated under running and adapt at two or more severities"
        )
        return Verdict(CLAIMS["severity"], "no such pair", needs)
    verdict = judge(diffs, lower=False, what="running and adapt at two or more severities")
    return Verdict(CLAIMS["severity"], "; ".join(parts), verdict)


def _few_sample_reference(run_rows: pd.DataFrame, n: float) -> pd.DataFrame:
    """Full-statistics adaptation on n target samples: adapt samples=n, else partial with
    prior 0 and batch n, else batch statistics of batch n."""
    for mode, cond in (
        ("adapt", run_rows["samples"] == n),
        ("partial", (run_rows["prior"] == 0) & (run_rows["batch_size"] == n)),
        ("batch", run_rows["batch_size"] == n),
    ):
        rows = run_rows[(run_rows["mode"] == mode) & cond]
        if len(rows):
            return rows.drop_duplicates(CELL, keep="last")
    return run_rows.iloc[0:0]


def partial_claim(ev: pd.DataFrame) -> Verdict:
    """partial (prior > 0, batch n) − AdaBN on n target samples, on corrupted cells."""
    own = ev[ev["own_data"] & corrupted(ev) & ev["applied"]]
    partial = own[(own["mode"] == "partial") & (own["prior"] > 0)]
    diffs, parts = {}, []
    for group in groups_of(partial, True):
        g = of_group(partial, group)
        setting = g.groupby("setting").size().sort_values(ascending=False).index[0]
        main = g[g["setting"] == setting].drop_duplicates(CELL, keep="last")
        n = float(main["batch_size"].iloc[0])
        ref = _few_sample_reference(of_group(own, group), n)
        gap = per_run_gap(ref, main)
        if gap.empty:
            continue
        diffs[group] = diff_of(gap)
        what = f"{ref['mode'].iloc[0]} {ref['setting'].iloc[0]}"
        parts.append(f"{label(group)}: partial {setting} − {what}: {diffs[group].text()}")
    if not diffs:
        needs = not_enough(
            "mode=partial (prior > 0, batch n) and AdaBN on n samples (mode=adapt samples=n, "
            "mode=partial prior=0 batch_size=n or mode=batch batch_size=n) on the same runs"
        )
        return Verdict(CLAIMS["partial"], "no such pair", needs)
    verdict = judge(diffs, lower=True, what="partial and few-sample AdaBN")
    return Verdict(CLAIMS["partial"], "; ".join(parts), verdict)


def batch_free_claim(cells: pd.DataFrame) -> Verdict:
    """adapt − running on corrupted cells, per model without batch statistics."""
    groups = groups_of(cells, False)
    diffs = {g: paired_modes(cells, g, "running", "adapt") for g in groups}
    diffs = {g: d for g, d in diffs.items() if d.seeds}
    if not diffs:
        needs = not_enough("runs of a norm without batch statistics under running and adapt")
        return Verdict(CLAIMS["batch_free"], "no such pair", needs)
    adapt = cells[(cells["mode"] == "adapt") & ~cells["batch_dependent"]]
    ours = _ours(diffs, "adapt − running")
    if not adapt["applied"].any():
        verdict = (
            "shown, by construction: statistics adaptation does not apply to "
            f"{', '.join(map(label, diffs))} (no batch statistics); its errors are the running ones"
        )
        return Verdict(CLAIMS["batch_free"], ours, verdict)
    single = _one_seed(diffs)
    if len(single) == len(diffs):
        return Verdict(CLAIMS["batch_free"], ours, not_enough(f"two or more seeds of {single}"))
    moved = [g for g, d in diffs.items() if d.seeds >= 2 and d.significant]
    verdict = (
        f"not shown: {', '.join(map(label, moved))} change beyond the seed spread"
        if moved
        else "shown: no change beyond the seed spread"
    )
    return Verdict(CLAIMS["batch_free"], ours, verdict)


def clean_claim(cells: pd.DataFrame) -> Verdict:
    """|adapt − running| on clean data against the seed std of the running clean error."""
    parts, shown, failed, single = [], [], [], []
    for group in groups_of(cells, True):
        d = paired_modes(cells, group, "running", "adapt", select=clean)
        if not d.seeds:
            continue
        g = of_group(cells, group)
        spread = g[clean(g) & (g["mode"] == "running")].groupby("run")["error"].mean().std(ddof=1)
        parts.append(
            f"{label(group)}: adapt − running on clean data {d.text()}, seed std {spread:.2f}"
        )
        if d.seeds < 2 or math.isnan(spread):
            single.append(label(group))
        elif abs(d.mean) < spread:
            shown.append(label(group))
        else:
            failed.append(label(group))
    if not parts:
        needs = not_enough("runs with batch statistics under running and adapt on clean data")
        return Verdict(CLAIMS["clean"], "no such pair", needs)
    if not shown and not failed:
        return Verdict(
            CLAIMS["clean"], "; ".join(parts), not_enough(f"two or more seeds of {single}")
        )
    verdict = "shown" if not failed else "not shown for " + ", ".join(failed)
    if shown and failed:
        verdict += f"; shown for {', '.join(shown)}"
    return Verdict(CLAIMS["clean"], "; ".join(parts), verdict)


def kl_claim(kl_cells: pd.DataFrame) -> Verdict:
    """Mean KL (over layers and corrupted cells) under adapt − under running."""
    df = kl_cells[corrupted(kl_cells) & kl_cells["batch_dependent"]]
    parts, verdicts = [], {}
    for group in groups_of(df):
        g = of_group(df, group)
        on = [*CELL, "layer"]
        running, adapt = g[g["mode"] == "running"], g[g["mode"] == "adapt"]
        d = diff_of(per_run_gap(running, adapt, "kl_mean", on))
        if not d.seeds:
            continue
        both = pd.merge(running[on], adapt[on], on=on)
        base = pd.merge(both, running, on=on)["kl_mean"].mean()
        layer = pd.merge(running, adapt, on=on).groupby("layer")[["kl_mean_x", "kl_mean_y"]].mean()
        dropped = int((layer["kl_mean_y"] < layer["kl_mean_x"]).sum())
        parts.append(
            f"{label(group)}: mean KL running {base:.3g}, adapt − running {d.text()}; lower in "
            f"{dropped}/{len(layer)} layers"
        )
        significant = d.seeds >= 2 and abs(d.mean) > max(2 * d.se, KL_MIN_SHARE * base)
        verdicts[group] = (d, significant)
    if not verdicts:
        needs = not_enough("kl.csv rows (normbench eval ... kl=true) under running and adapt")
        return Verdict(CLAIMS["kl"], "no such pair", needs)
    judged = {g: v for g, v in verdicts.items() if v[0].seeds >= 2}
    if not judged:
        return Verdict(CLAIMS["kl"], "; ".join(parts), not_enough("two or more seeds with kl.csv"))
    shown = [g for g, (d, s) in judged.items() if s and d.mean < 0]
    verdict = (
        "shown"
        if len(shown) == len(judged)
        else f"shown for {', '.join(map(label, shown))}; not for the others"
        if shown
        else "not shown: no drop beyond the rule"
    )
    return Verdict(CLAIMS["kl"], "; ".join(parts), verdict)


def tent_claim(cells: pd.DataFrame) -> Verdict:
    """tent − adapt on corrupted cells, per model with batch statistics."""
    return _mode_pair_claim(cells, "tent", "adapt", "tent")


def verdicts(ev: pd.DataFrame, cells: pd.DataFrame, kl_cells: pd.DataFrame) -> list[Verdict]:
    """Every claim of the study, in the README's order."""
    return [
        adapt_claim(cells),
        severity_claim(cells),
        partial_claim(ev),
        batch_free_claim(cells),
        clean_claim(cells),
        kl_claim(kl_cells),
        tent_claim(cells),
    ]


__all__ = ["CLAIMS", "KL_MIN_SHARE", "MIN_EFFECT", "verdicts"]
