"""Domain-shift study, the curves: AdaBN against the number of target samples k, partial
adaptation against the prior strength N, and the KL divergence per layer.

Each curve is taken, per run, over the corrupted cells the run holds at every point of the
curve (and under the reference modes beside it), then averaged over seeds. The k curve is
made per severity, and only at severities where two or more k were evaluated (the study's k
phase is at severity 3: its other severities hold k = all samples only).
"""

from __future__ import annotations

import math

import pandas as pd

from normbench.studies.domain_shift.data import CELL, corrupted, seed_mean

WHERE = CELL[1:]  # corruption, severity


def _cells(df: pd.DataFrame) -> set[tuple]:
    return set(df[WHERE].itertuples(index=False, name=None))


def _mean_at(df: pd.DataFrame, where: list[tuple]) -> float:
    """Mean error of ``df`` (one run) over the cells ``where`` (the last row of a duplicate)."""
    value = df.drop_duplicates(WHERE, keep="last").set_index(WHERE)["error"]
    return float(value.loc[where].mean())


def k_curve(ev: pd.DataFrame, cells: pd.DataFrame) -> pd.DataFrame:
    """k_curve.csv: adapt error against samples=k per (model, norm, severity), beside running,
    each run over the corrupted cells of that severity it holds at every k and under running."""
    adapt = ev[ev["own_data"] & (ev["mode"] == "adapt") & ev["applied"] & corrupted(ev)]
    running = cells[(cells["mode"] == "running") & corrupted(cells)]
    rows = []
    for (run, severity), g in adapt.groupby(["run", "severity"]):
        ks = sorted(g["samples"].dropna().unique())
        ref = running[(running["run"] == run) & (running["severity"] == severity)]
        common = _cells(ref)
        for k in ks:
            common &= _cells(g[g["samples"] == k])
        if len(ks) < 2 or not common:
            continue
        where = sorted(common)
        ident = {**g.iloc[0][["model", "norm", "seed"]].to_dict(), "severity": severity}
        ident["corruptions"] = len(where)
        rows.append({**ident, "mode": "running", "samples": -1, "error": _mean_at(ref, where)})
        for k in ks:
            error = _mean_at(g[g["samples"] == k], where)
            rows.append({**ident, "mode": "adapt", "samples": k, "error": error})
    cols = ["model", "norm", "severity", "corruptions", "mode", "samples", "mean", "std", "seeds"]
    if not rows:
        return pd.DataFrame(columns=cols)
    keys = ["model", "norm", "severity", "corruptions", "mode", "samples"]
    out = seed_mean(pd.DataFrame(rows), keys)
    out["samples"] = out["samples"].replace(-1, math.nan)
    return out[cols]


def n_curve(ev: pd.DataFrame, cells: pd.DataFrame) -> pd.DataFrame:
    """n_curve.csv: partial error against the prior N per batch size n (model, norm), beside
    running and full AdaBN, each run over the corrupted cells all of them hold."""
    partial = ev[ev["own_data"] & (ev["mode"] == "partial") & ev["applied"] & corrupted(ev)]
    rows = []
    for run, g in partial.groupby("run"):
        settings = sorted({(b, p) for b, p in zip(g["batch_size"], g["prior"], strict=True)})
        per = {s: g[(g["batch_size"] == s[0]) & (g["prior"] == s[1])] for s in settings}
        common = set.intersection(*(_cells(f) for f in per.values()))
        if not common:
            continue
        where = sorted(common)
        ident = g.iloc[0][["model", "norm", "seed"]].to_dict()
        for (size, prior), f in per.items():
            error = _mean_at(f, where)
            rows.append(
                {**ident, "mode": "partial", "batch_size": size, "prior": prior, "error": error}
            )
        for mode in ("running", "adapt"):
            f = cells[(cells["run"] == run) & (cells["mode"] == mode) & corrupted(cells)]
            if common <= _cells(f):
                error = _mean_at(f, where)
                rows.append({**ident, "mode": mode, "batch_size": -1, "prior": -1, "error": error})
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


def kl_summary(kl: pd.DataFrame) -> pd.DataFrame:
    """Per (model, norm): layers, mean KL over layers under running and adapt, and in how many
    layers adapt is lower (the README's short form of kl_per_layer.csv)."""
    rows = []
    for (model, norm), g in kl.groupby(["model", "norm"]):
        wide = g.pivot_table(index="layer", columns="mode", values="mean")
        both = wide.dropna() if {"running", "adapt"} <= set(wide.columns) else wide.iloc[0:0]
        rows.append(
            {
                "model": model,
                "norm": norm,
                "layers": len(wide),
                "mean KL, running": wide["running"].mean() if "running" in wide else math.nan,
                "mean KL, adapt": wide["adapt"].mean() if "adapt" in wide else math.nan,
                "layers lower after adapt": f"{int((both['adapt'] < both['running']).sum())}"
                f"/{len(both)}",
                "seeds": int(g["seeds"].max()),
            }
        )
    cols = ["model", "norm", "layers", "mean KL, running", "mean KL, adapt"]
    return pd.DataFrame(rows, columns=[*cols, "layers lower after adapt", "seeds"])
