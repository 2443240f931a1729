"""Domain-shift study, the tables that set modes against each other: severity 5 beside Tent's
table, the gain per corruption, Tent against its baselines, norms without batch statistics.

Every difference is paired by seed over the cells both modes hold
(:func:`~normbench.studies.domain_shift.data.paired_modes`) and written as mean ± the 95%
interval's half-width (n seeds), as the claims are.
"""

from __future__ import annotations

import math

import pandas as pd

from normbench.report.verdicts import estimate
from normbench.studies.domain_shift.data import (
    TENT_REF,
    TEST,
    VAL,
    at_severity,
    clean,
    corrupted,
    groups_of,
    mode_rows,
    of_group,
    paired_modes,
)
from normbench.studies.domain_shift.paper import (
    BRIGHTNESS_AND_JPEG,
    NOISE_AND_BLUR,
    TENT_MEAN,
    TENT_TABLE,
    tent_gain,
)

#: The paper's number beside each of our modes at severity 5 (Tent's table: "norm" is each
#: test batch's own statistics, our ``mode=batch`` at Tent's batch size).
PAPER_OF_MODE = {
    "running": TENT_MEAN["source"],
    TENT_REF: TENT_MEAN["norm"],
    "tent": TENT_MEAN["tent"],
}
SPLIT_TEXT = {VAL: "1,000 held-out", TEST: "10,000 test"}
SEVERITY5_MODES = ("running", "adapt", "batch", "partial", TENT_REF, "tent")


def _per_seed_mean(rows: pd.DataFrame) -> pd.Series:
    return rows.groupby("seed")["error"].mean()


def severity5_table(by_split: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Per model with batch statistics, split and mode: the error at severity 5, mean over the
    corruptions each run holds, then over seeds; Tent's number beside it."""
    rows = []
    for split, cells in by_split.items():
        for group in groups_of(cells, True):
            ref = mode_rows(cells, group, TENT_REF, at_severity(5))
            for mode in SEVERITY5_MODES:
                m = mode_rows(cells, group, mode, at_severity(5))
                if m.empty or not m["applied"].all():
                    continue
                if mode == "batch" and set(m["setting"]) == set(ref["setting"]):
                    continue  # the same evaluations as batch@tent
                per_seed = _per_seed_mean(m)
                rows.append(
                    {
                        "model": group[0],
                        "norm": group[1],
                        "images": SPLIT_TEXT.get(split, split),
                        "mode": mode,
                        "setting": m["setting"].iloc[0],
                        "corruptions": m["corruption"].nunique(),
                        "error": per_seed.mean(),
                        "seeds": len(per_seed),
                        "paper (CIFAR-10-C)": PAPER_OF_MODE.get(mode, math.nan),
                    }
                )
    cols = ["model", "norm", "images", "mode", "setting", "corruptions", "error", "seeds"]
    return pd.DataFrame(rows, columns=[*cols, "paper (CIFAR-10-C)"])


def kind_of(corruption: str) -> str:
    if corruption in NOISE_AND_BLUR:
        return "noise or blur"
    return "brightness or jpeg" if corruption in BRIGHTNESS_AND_JPEG else "other"


def gain_table(cells: pd.DataFrame, severity: int = 5) -> pd.DataFrame:
    """gain_by_corruption.csv: per model with batch statistics and corruption, running − adapt
    at ``severity`` (mean and seeds), beside Tent's source − norm on CIFAR-10-C (severity 5)."""
    rows = []
    for group in groups_of(cells, True):
        for c, g in of_group(cells, group).groupby("corruption"):
            d = paired_modes(g, group, "adapt", "running", at_severity(severity))
            if not d.n:
                continue
            rows.append(
                {
                    "model": group[0],
                    "norm": group[1],
                    "corruption": c,
                    "kind": kind_of(str(c)),
                    "gain": d.mean,
                    "half_width": d.half_width,
                    "seeds": d.n,
                    "paper gain": tent_gain(c) if c in TENT_TABLE["source"] else math.nan,
                }
            )
    cols = ["model", "norm", "corruption", "kind", "gain", "half_width", "seeds", "paper gain"]
    return pd.DataFrame(rows, columns=cols)


def gain_wide(gains: pd.DataFrame) -> pd.DataFrame:
    """The gain table with one column per model (the README's form), in the paper's order."""
    if gains.empty:
        return gains
    wide = gains.assign(model=gains["model"] + "/" + gains["norm"]).pivot_table(
        index=["corruption", "kind", "paper gain"], columns="model", values="gain"
    )
    wide = wide.reset_index().rename_axis(columns=None)
    order = {c: i for i, c in enumerate(TENT_TABLE["source"])}
    return wide.sort_values("corruption", key=lambda s: s.map(order)).reset_index(drop=True)


def tent_table(cells: pd.DataFrame) -> pd.DataFrame:
    """Tent against test-batch statistics at its batch size (Tent's comparison) and against
    AdaBN (ours), per (model, norm, severity; 'all')."""
    rows = []
    for group in groups_of(cells):
        g = of_group(cells, group)
        bad = g[corrupted(g)]
        tent = bad[bad["mode"] == "tent"]
        if tent.empty:
            continue
        for sev in [*sorted(set(tent["severity"])), "all"]:
            pick = corrupted if sev == "all" else at_severity(int(sev))
            row = {"model": group[0], "norm": group[1], "severity": str(sev)}
            for mode in ("adapt", TENT_REF, "tent"):
                m = mode_rows(cells, group, mode, pick)
                row[mode] = _per_seed_mean(m).mean() if m["applied"].any() else math.nan
            for ref in (TENT_REF, "adapt"):
                d = paired_modes(cells, group, ref, "tent", pick)
                row[f"tent − {ref}"] = d.text() if d.n and not math.isnan(row[ref]) else "–"
            rows.append(row)
    cols = ["model", "norm", "severity", "adapt", TENT_REF, "tent"]
    return pd.DataFrame(rows, columns=[*cols, f"tent − {TENT_REF}", "tent − adapt"])


def norms_table(cells: pd.DataFrame, mce: pd.DataFrame) -> pd.DataFrame:
    """Norms with and without batch statistics side by side: error under running, each other
    mode's difference to running paired by seed on the cells both hold ("not applied" where the
    mode cannot change the model), and mCE."""
    rows = []
    for group in groups_of(cells):
        g = of_group(cells, group)
        running = g[corrupted(g) & (g["mode"] == "running")]
        row = {
            "model": group[0],
            "norm": group[1],
            "batch_statistics": bool(g["batch_dependent"].iloc[0]),
            "seeds": running["run"].nunique(),
            "clean running": g[clean(g) & (g["mode"] == "running")]["error"].mean(),
            "corrupted running": estimate(_per_seed_mean(running)).mean,
        }
        for mode in ("adapt", "partial", "tent"):
            m = g[corrupted(g) & (g["mode"] == mode)]
            d = paired_modes(cells, group, "running", mode)
            applied = m["applied"].any()
            row[f"{mode} − running"] = (
                d.text() if applied and d.n else ("not applied" if len(m) else "–")
            )
        for mode in ("running", "adapt"):
            m = mce[(mce["model"] == group[0]) & (mce["norm"] == group[1]) & (mce["mode"] == mode)]
            row[f"mCE {mode}"] = m["mce"].iloc[0] if len(m) else math.nan
        rows.append(row)
    cols = ["model", "norm", "batch_statistics", "seeds", "clean running", "corrupted running"]
    cols += [f"{m} − running" for m in ("adapt", "partial", "tent")]
    return pd.DataFrame(rows, columns=[*cols, "mCE running", "mCE adapt"])
