"""Domain-shift study, the tables of every mode: errors.csv, the heatmap, mCE and ECE.

Modes are compared on the cells and seeds they share: :func:`comparable` keeps, per (model,
norm), the modes that were applied and hold every corrupted cell (run, corruption, severity)
that ``running`` holds; the others are left out and named in the README (a mode that does not
apply to a model, or evaluated on fewer seeds or corruptions, is no row of mCE or ECE).

mCE follows Hendrycks & Dietterich (ICLR 2019) with our baseline in place of AlexNet: on the
seed-mean error E_{s,c} of corruption c at severity s,

    CE_c = Σ_s E_{s,c}(model) / Σ_s E_{s,c}(baseline)            mCE = 100 · mean_c CE_c
    relative CE_c = Σ_s (E_{s,c} − E_clean)(model) / Σ_s (E_{s,c} − E_clean)(baseline)

over the 15 benchmark corruptions that both hold, each over the severities both hold (all five
in the paper's definition; the ``corruptions`` and ``severities`` columns say what was used).
The clean error of relative mCE is the model's under the same mode, the baseline's under its.
"""

from __future__ import annotations

import math

import pandas as pd

from normbench.studies.domain_shift.data import (
    BENCHMARK,
    CELL,
    MODE_ORDER,
    Baseline,
    clean,
    corrupted,
    groups_of,
    label,
    of_group,
    seed_mean,
)


def _mode_rank(modes: pd.Series) -> pd.Series:
    return modes.map({m: i for i, m in enumerate(MODE_ORDER)}).fillna(len(MODE_ORDER))


def _cells_of(df: pd.DataFrame) -> set[tuple]:
    return set(df[CELL].itertuples(index=False, name=None))


def comparable(cells: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """The rows of the modes that apply and hold every corrupted cell ``running`` holds, per
    (model, norm); and one line per mode left out, saying why."""
    kept, notes = [], []
    for group in groups_of(cells):
        g = of_group(cells, group)
        ref = _cells_of(g[corrupted(g) & (g["mode"] == "running")])
        for mode, m in g.groupby("mode", sort=False):
            if not m["applied"].any():
                notes.append(f"{label(group)} mode={mode}: not applied (no batch statistics)")
                continue
            m = m[m["applied"]]
            have = _cells_of(m[corrupted(m)])
            if mode != "running" and not ref <= have:
                notes.append(
                    f"{label(group)} mode={mode}: {len(ref & have)} of the {len(ref)} corrupted "
                    f"cells of running (runs: {m['run'].nunique()})"
                )
                continue
            kept.append(m)
    if not kept:
        return cells.iloc[0:0], notes
    return pd.concat(kept), notes


def errors_csv(ev: pd.DataFrame) -> pd.DataFrame:
    """errors.csv: one row per evaluation (error and ECE in %)."""
    cols = ["run", "model", "norm", "seed", "mode", "corruption", "severity", "error", "nll", "ece"]
    cols += ["samples", "batch_size", "prior", "steps", "lr", "data", "split", "images", "applied"]
    out = ev[cols].assign(rank=_mode_rank(ev["mode"]))
    out = out.sort_values(
        ["model", "norm", "seed", "split", "rank", "corruption", "severity", "samples"]
    )
    return out.drop(columns="rank").reset_index(drop=True)


def heatmap_table(cells: pd.DataFrame) -> pd.DataFrame:
    """Mean error over seeds per (model, norm, mode, corruption, severity); severity 0 = clean."""
    out = seed_mean(cells, ["model", "norm", "mode", "corruption", "severity"])
    return out.rename(columns={"mean": "error", "std": "error_std"})


def severity_text(severities: set[int]) -> str:
    s = sorted(severities)
    if len(s) == 1:
        return str(s[0])
    return (
        "–".join(map(str, (s[0], s[-1])))
        if s == list(range(s[0], s[-1] + 1))
        else ",".join(map(str, s))
    )


def ce_table(cells: pd.DataFrame, baseline: Baseline) -> pd.DataFrame:
    """CE and relative CE per (model, norm, mode, benchmark corruption)."""
    mean = heatmap_table(cells).set_index(["model", "norm", "mode", "corruption", "severity"])
    err = mean["error"]
    base_key = (baseline.model, baseline.norm, baseline.mode)
    rows = []
    for (model, norm, mode), g in err.groupby(level=["model", "norm", "mode"]):
        own = g.droplevel(["model", "norm", "mode"])
        for c in BENCHMARK:
            try:
                base = err.loc[(*base_key, c)]
                mine = own.loc[c]
            except KeyError:
                continue
            sev = sorted((set(base.index) & set(mine.index)) - {0})
            if not sev:
                continue
            ce = mine.loc[sev].sum() / base.loc[sev].sum()
            rce = math.nan
            if (*base_key, "none", 0) in err.index and ("none", 0) in own.index:
                num = (mine.loc[sev] - own.loc[("none", 0)]).sum()
                den = (base.loc[sev] - err.loc[(*base_key, "none", 0)]).sum()
                rce = num / den if den > 0 else math.nan
            rows.append(
                {
                    "model": model,
                    "norm": norm,
                    "mode": mode,
                    "corruption": c,
                    "severities": severity_text(set(sev)),
                    "ce": 100 * ce,
                    "relative_ce": 100 * rce,
                }
            )
    cols = ["model", "norm", "mode", "corruption", "severities", "ce", "relative_ce"]
    return pd.DataFrame(rows, columns=cols)


def mce_table(cells: pd.DataFrame, baseline: Baseline) -> pd.DataFrame:
    """mce.csv: mCE and relative mCE per (model, norm, mode), with what they were taken over."""
    ce = ce_table(cells, baseline)
    cols = ["model", "norm", "mode", "mce", "relative_mce", "corruptions", "severities"]
    cols += ["mean_corrupted_error", "clean_error", "seeds"]
    if ce.empty:
        return pd.DataFrame(columns=cols)
    per = ce.groupby(["model", "norm", "mode"]).agg(
        mce=("ce", "mean"),
        relative_mce=("relative_ce", lambda v: v.mean() if v.notna().all() else math.nan),
        corruptions=("ce", "size"),
        severities=("severities", lambda v: "/".join(sorted(set(v)))),
    )
    runs = cells.groupby(["model", "norm", "mode"])
    bad = cells[corrupted(cells)].groupby(["model", "norm", "mode"])["error"].mean()
    ok = cells[clean(cells)].groupby(["model", "norm", "mode"])["error"].mean()
    per = per.assign(
        mean_corrupted_error=bad.reindex(per.index),
        clean_error=ok.reindex(per.index),
        seeds=runs["run"].nunique().reindex(per.index),
    )
    out = per.reset_index()
    out = out.assign(rank=_mode_rank(out["mode"])).sort_values(["model", "norm", "rank"])
    return out.drop(columns="rank")[cols].reset_index(drop=True)


def ece_table(cells: pd.DataFrame) -> pd.DataFrame:
    """ECE (%) per (model, norm, mode): on clean data and mean over corrupted cells."""
    rows = []
    for (model, norm, mode), g in cells.groupby(["model", "norm", "mode"]):
        per_run_bad = g[corrupted(g)].groupby("run")["ece"].mean()
        rows.append(
            {
                "model": model,
                "norm": norm,
                "mode": mode,
                "clean ECE": g[clean(g)]["ece"].mean(),
                "corrupted ECE": per_run_bad.mean(),
                "seeds": g["run"].nunique(),
            }
        )
    cols = ["model", "norm", "mode", "clean ECE", "corrupted ECE", "seeds"]
    out = pd.DataFrame(rows, columns=cols)
    if out.empty:
        return out
    out = out.assign(rank=_mode_rank(out["mode"])).sort_values(["model", "norm", "rank"])
    return out.drop(columns="rank").reset_index(drop=True)
