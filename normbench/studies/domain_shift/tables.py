"""Domain-shift study, the tables: mCE, the k and N curves, KL per layer, norms, Tent, ECE.

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
    of_group,
    paired_modes,
    per_run_gap,
    seed_mean,
)


def _mode_rank(modes: pd.Series) -> pd.Series:
    return modes.map({m: i for i, m in enumerate(MODE_ORDER)}).fillna(len(MODE_ORDER))


def errors_csv(ev: pd.DataFrame) -> pd.DataFrame:
    """errors.csv: one row per evaluation (error and ECE in %)."""
    cols = ["run", "model", "norm", "seed", "mode", "corruption", "severity", "error", "nll", "ece"]
    cols += ["samples", "batch_size", "prior", "steps", "lr", "data", "applied"]
    out = ev[cols].assign(rank=_mode_rank(ev["mode"]))
    out = out.sort_values(["model", "norm", "seed", "rank", "corruption", "severity", "samples"])
    return out.drop(columns="rank").reset_index(drop=True)


def heatmap_table(cells: pd.DataFrame) -> pd.DataFrame:
    """Mean error over seeds per (model, norm, mode, corruption, severity); severity 0 = clean."""
    out = seed_mean(cells, ["model", "norm", "mode", "corruption", "severity"])
    return out.rename(columns={"mean": "error", "std": "error_std"})


def _severity_text(severities: set[int]) -> str:
    s = sorted(severities)
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
                    "severities": _severity_text(set(sev)),
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


def k_curve(ev: pd.DataFrame, cells: pd.DataFrame) -> pd.DataFrame:
    """k_curve.csv: adapt error against samples=k per (model, norm, severity; 'all' pooled),
    beside running, each run over the corrupted cells it holds at every k and under running."""
    adapt = ev[ev["own_data"] & (ev["mode"] == "adapt") & ev["applied"] & corrupted(ev)]
    running = cells[(cells["mode"] == "running") & corrupted(cells)]
    rows = []
    for run, g in adapt.groupby("run"):
        ks = sorted(g["samples"].dropna().unique())
        ref = running[running["run"] == run].set_index(CELL[1:])["error"]
        common = set(ref.index)
        for k in ks:
            common &= set(map(tuple, g[g["samples"] == k][CELL[1:]].itertuples(index=False)))
        if not common:
            continue
        ident = g.iloc[0][["model", "norm", "seed"]].to_dict()
        for sev in [*sorted({s for _, s in common}), "all"]:
            where = sorted(c for c in common if sev == "all" or c[1] == sev)
            for k in [*ks, None]:
                if k is None:
                    value = ref.loc[where].mean()
                else:
                    at = g[g["samples"] == k].set_index(CELL[1:])["error"]
                    value = at[~at.index.duplicated(keep="last")].loc[where].mean()
                mode, samples = ("running", math.nan) if k is None else ("adapt", k)
                rows.append(
                    {
                        **ident,
                        "severity": str(sev),
                        "mode": mode,
                        "samples": samples,
                        "error": value,
                        "run": run,
                    }
                )
    cols = ["model", "norm", "severity", "mode", "samples", "mean", "std", "seeds"]
    if not rows:
        return pd.DataFrame(columns=cols)
    df = pd.DataFrame(rows).fillna({"samples": -1})
    out = seed_mean(df, ["model", "norm", "severity", "mode", "samples"])
    out["samples"] = out["samples"].replace(-1, math.nan)
    return out[cols]


def n_curve(ev: pd.DataFrame, cells: pd.DataFrame) -> pd.DataFrame:
    """n_curve.csv: partial error against the prior N per batch size n (model, norm), beside
    running and full AdaBN, each run over the corrupted cells all of them hold."""
    partial = ev[ev["own_data"] & (ev["mode"] == "partial") & ev["applied"] & corrupted(ev)]
    rows = []
    for run, g in partial.groupby("run"):
        settings = sorted({(b, p) for b, p in zip(g["batch_size"], g["prior"], strict=True)})
        refs = {
            m: cells[(cells["run"] == run) & (cells["mode"] == m) & corrupted(cells)]
            for m in ("running", "adapt")
        }
        per = {s: g[(g["batch_size"] == s[0]) & (g["prior"] == s[1])] for s in settings}
        common = set.intersection(
            *(set(map(tuple, f[CELL[1:]].itertuples(index=False))) for f in per.values())
        )
        if not common:
            continue
        ident = g.iloc[0][["model", "norm", "seed"]].to_dict()
        for (size, prior), f in per.items():
            value = f.drop_duplicates(CELL[1:], keep="last").set_index(CELL[1:])["error"]
            rows.append(
                {
                    **ident,
                    "mode": "partial",
                    "batch_size": size,
                    "prior": prior,
                    "error": value.loc[sorted(common)].mean(),
                }
            )
        for mode, f in refs.items():
            value = f.set_index(CELL[1:])["error"]
            if common <= set(value.index):
                rows.append(
                    {
                        **ident,
                        "mode": mode,
                        "batch_size": -1,
                        "prior": -1,
                        "error": value.loc[sorted(common)].mean(),
                    }
                )
    cols = ["model", "norm", "mode", "batch_size", "prior", "mean", "std", "seeds"]
    if not rows:
        return pd.DataFrame(columns=cols)
    out = seed_mean(pd.DataFrame(rows), ["model", "norm", "mode", "batch_size", "prior"])
    out[["batch_size", "prior"]] = out[["batch_size", "prior"]].replace(-1, math.nan)
    return out[cols]


def kl_per_layer(kl_cells: pd.DataFrame) -> pd.DataFrame:
    """kl_per_layer.csv: per (model, norm, layer), the mean over corrupted cells of the layer's
    KL under running and under adapt (mean and std over seeds)."""
    df = kl_cells[kl_cells["mode"].isin(["running", "adapt"]) & corrupted(kl_cells)]
    cols = ["model", "norm", "layer_index", "layer", "layer_type", "mode", "mean", "std", "seeds"]
    if df.empty:
        return pd.DataFrame(columns=cols)
    keys = ["model", "norm", "layer_index", "layer", "layer_type", "mode", "run"]
    per_run = df.groupby(keys)["kl_mean"].mean().reset_index()
    out = seed_mean(per_run, keys[:-1], "kl_mean")
    return out.sort_values(["model", "norm", "layer_index", "mode"], ascending=[1, 1, 1, 0])[cols]


def norms_table(cells: pd.DataFrame, mce: pd.DataFrame) -> pd.DataFrame:
    """Norms with and without batch statistics side by side: error (%) under each mode on the
    corrupted cells it shares with running, the gain of AdaBN and mCE."""
    rows = []
    for group in groups_of(cells):
        g = of_group(cells, group)
        bad = g[corrupted(g)]
        ref = bad[bad["mode"] == "running"]
        row = {
            "model": group[0],
            "norm": group[1],
            "batch_statistics": bool(g["batch_dependent"].iloc[0]),
            "seeds": g["run"].nunique(),
            "clean running": g[clean(g) & (g["mode"] == "running")]["error"].mean(),
            "corrupted running": ref.groupby("run")["error"].mean().mean(),
        }
        for mode in ("adapt", "partial", "tent"):
            mine = bad[bad["mode"] == mode]
            shared = pd.merge(ref[CELL], mine[[*CELL, "error"]], on=CELL)
            row[f"corrupted {mode}"] = shared.groupby("run")["error"].mean().mean()
        row["adapt − running"] = paired_modes(cells, group, "running", "adapt").text()
        for mode in ("running", "adapt"):
            m = mce[(mce["model"] == group[0]) & (mce["norm"] == group[1]) & (mce["mode"] == mode)]
            row[f"mCE {mode}"] = m["mce"].iloc[0] if len(m) else math.nan
        rows.append(row)
    cols = ["model", "norm", "batch_statistics", "seeds", "clean running", "corrupted running"]
    cols += [f"corrupted {m}" for m in ("adapt", "partial", "tent")]
    return pd.DataFrame(rows, columns=[*cols, "adapt − running", "mCE running", "mCE adapt"])


def tent_table(cells: pd.DataFrame) -> pd.DataFrame:
    """Tent against AdaBN per (model, norm, severity; 'all'): means and the paired difference."""
    rows = []
    for group in groups_of(cells):
        g = of_group(cells, group)
        g = g[corrupted(g)]
        a, t = g[g["mode"] == "adapt"], g[g["mode"] == "tent"]
        both = pd.merge(a[CELL], t[CELL], on=CELL)
        if both.empty:
            continue
        for sev in [*sorted(set(both["severity"])), "all"]:
            cell = both if sev == "all" else both[both["severity"] == sev]
            sel = [pd.merge(cell, f, on=CELL) for f in (a, t)]
            gap = per_run_gap(*sel)
            rows.append(
                {
                    "model": group[0],
                    "norm": group[1],
                    "severity": str(sev),
                    "adapt": sel[0].groupby("run")["error"].mean().mean(),
                    "tent": sel[1].groupby("run")["error"].mean().mean(),
                    "tent − adapt": gap.mean(),
                    "se": gap.std(ddof=1) / math.sqrt(len(gap)) if len(gap) > 1 else math.nan,
                    "seeds": len(gap),
                }
            )
    cols = ["model", "norm", "severity", "adapt", "tent", "tent − adapt", "se", "seeds"]
    return pd.DataFrame(rows, columns=cols)


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
