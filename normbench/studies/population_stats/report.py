"""The population-statistics study's report: tables (CSV), three figures and the README text;
the claims come from :mod:`normbench.studies.population_stats.claims`."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from normbench.report.legends import legends_off_data  # noqa: E402
from normbench.report.output import md_table, write_tables  # noqa: E402
from normbench.studies.population_stats.claims import (  # noqa: E402
    PRECISE,
    all_claims,
    final_step,
    kept_of,
)
from normbench.studies.population_stats.data import errors, evals_table  # noqa: E402
from normbench.studies.population_stats.settings import LABELS  # noqa: E402
from normbench.studies.study import CLAIMS_HERE, ReportInput, ReportOutput  # noqa: E402

TRACKED = ("mlp", "mlp_lr_high", "mlp_big_batch", "mlp_momentum_slow", "mlp_momentum_fast")
TRACKED += ("resnet_n32",)
NBS = ("resnet_n32", "resnet_n4", "resnet_n2", "resnet_n4_frozen", "resnet_n2_frozen")


def _summary(rows: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    g = rows.groupby(by)["error"]
    out = pd.DataFrame({"mean": g.mean(), "std": g.std(), "seeds": g.count()}).reset_index()
    return out.round({"mean": 3, "std": 3})


def tracks_table(table: pd.DataFrame) -> pd.DataFrame:
    """Error (%) along training: setting, step, mode, mean/std over seeds (kept models)."""
    parts = []
    for setting in TRACKED:
        for mode in ("running", "precise", "batch"):
            samples = PRECISE.get(setting) if mode == "precise" else None
            rows = errors(table, setting, mode, samples)
            rows = rows[rows["kept"] & rows["step"].isin(kept_of(table, setting))]
            if not rows.empty:
                parts.append(_summary(rows, ["setting", "step", "mode"]))
    cols = ["setting", "step", "mode", "mean", "std", "seeds"]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=cols)


def samples_table(table: pd.DataFrame) -> pd.DataFrame:
    rows = table[(table["mode"] == "precise") & table["samples"].notna()]
    rows = rows[rows["setting"].isin(["mlp", "resnet_n32"])]
    # the sweep over samples: the kept models evaluated at more than one count (the others are
    # the EMA tracks' Precise BN at its one count, shown by gap_figure)
    counts = rows.groupby(["setting", "step"])["samples"].transform("nunique")
    rows = rows[counts > 1]
    if rows.empty:
        return pd.DataFrame(columns=["setting", "step", "samples", "mean", "std", "seeds"])
    return _summary(rows, ["setting", "step", "samples"])


def nbs_table(table: pd.DataFrame) -> pd.DataFrame:
    """Final error (%) of each ResNet setting under running, Precise BN (1,000) and batch."""
    out = []
    for setting in NBS:
        final = final_step(table, setting)
        row: dict[str, object] = {"setting": setting}
        for mode, samples in (("running", None), ("precise", 1000.0), ("batch", None)):
            rows = errors(table, setting, mode, samples)
            rows = rows[rows["step"] == final]
            row[mode] = round(float(rows["error"].mean()), 2) if len(rows) else None
            row[f"{mode}_std"] = round(float(rows["error"].std()), 2) if len(rows) > 1 else None
        row["seeds"] = int(
            errors(table, setting, "running").query(f"step == {final}")["seed"].nunique()
        )
        out.append(row)
    return pd.DataFrame(out)


def gap_figure(tracks: pd.DataFrame, path: Path) -> None:
    """The gap (running − precise) against the fraction of training, one line per setting."""
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    for setting in TRACKED:
        mine = tracks[tracks["setting"] == setting].pivot(
            index="step", columns="mode", values="mean"
        )
        if {"running", "precise"} <= set(mine.columns):
            steps = mine.index.to_numpy()
            gap = (mine["running"] - mine["precise"]).to_numpy()
            ax.plot(steps / steps.max(), gap, marker="o", ms=3, label=LABELS[setting])
    ax.axhline(0.0, color="grey", lw=0.8)
    ax.set_xlabel("fraction of training (kept models)")
    ax.set_ylabel("error with EMA − error with Precise BN (points)")
    ax.set_title("The moving average's lag behind Precise BN (mean over seeds)")
    if ax.lines[1:]:
        ax.legend(fontsize=7)
    fig.tight_layout()
    legends_off_data(fig)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def samples_figure(samples: pd.DataFrame, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6.5, 4.0))
    for (setting, step), rows in samples.groupby(["setting", "step"]):
        ax.errorbar(
            rows["samples"],
            rows["mean"],
            yerr=rows["std"].fillna(0),
            marker="o",
            capsize=3,
            label=f"{LABELS[setting]}, step {step}",
        )
    ax.set_xscale("log")
    ax.set_xlabel("training samples Precise BN averages over")
    ax.set_ylabel("error (%)")
    ax.set_title("Precise BN against its number of samples (mean ± std over seeds)")
    if len(samples):
        ax.legend(fontsize=7)
    fig.tight_layout()
    legends_off_data(fig)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def nbs_figure(nbs: pd.DataFrame, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(7.5, 4.0))
    modes = ("running", "precise", "batch")
    width = 0.27
    for i, mode in enumerate(modes):
        xs = [j + (i - 1) * width for j in range(len(nbs))]
        ax.bar(
            xs,
            nbs[mode].astype(float),
            width,
            yerr=nbs[f"{mode}_std"].astype(float).fillna(0),
            capsize=3,
            label={
                "running": "EMA (running)",
                "precise": "Precise BN (1,000)",
                "batch": "batch statistics (groups of NBS)",
            }[mode],
        )
    ax.set_xticks(
        range(len(nbs)),
        [LABELS[s].replace("ResNet-50 w/8, ", "") for s in nbs["setting"]],
        rotation=15,
        fontsize=7,
    )
    ax.set_ylabel("final error (%), 1,000 held-out images")
    ax.set_title("Normalization batch size: population against batch statistics")
    ax.legend(fontsize=7)
    fig.tight_layout()
    legends_off_data(fig)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def population_stats_report(given: ReportInput) -> ReportOutput:
    """Tables, figures, README text and claims of the study."""
    table = evals_table(given.runs)
    tracks, samples, nbs = tracks_table(table), samples_table(table), nbs_table(table)
    out = given.out_dir
    write_tables({"tracks": tracks, "samples": samples, "nbs": nbs}, out)
    gap_figure(tracks, out / "ema_gap.png")
    samples_figure(samples, out / "precise_samples.png")
    nbs_figure(nbs, out / "nbs.png")
    complete = sum(r.status == "complete" for r in given.runs)
    text = f"""# Population statistics: moving average, Precise BN, NBS and FrozenBN

Wu & Johnson 2021 ("Rethinking 'Batch' in BatchNorm", docs/papers.md §10) at CPU scale: the
moving average (EMA) that BN keeps against Precise BN (population statistics of training
samples, the weights frozen) along training; how many samples Precise BN needs; and, at a small
normalization batch size (NBS), population against batch statistics at evaluation, with FrozenBN
(the last 20% of training with population statistics in the forward pass) as the fix. Errors in
%; {complete} complete runs.

Settings (configs/sweep/population_stats_setting/, 3 seeds each): {
        "; ".join(f"`{k}`: {v}" for k, v in LABELS.items())
    }.

How this differs from the paper: Fashion-MNIST, not ImageNet; the BN paper's sigmoid MLP (5,000
steps) and ResNet-50 at width 0.125 (250 steps of 64, 0.27 epoch), not ResNet-50 for 100
epochs; the large-batch case is a batch of 960 with the linear lr rule (the paper: 8192); the
MLP is evaluated on the 10,000 test images, the ResNet on 1,000 held-out training images.

{CLAIMS_HERE}

## The EMA's lag along training

![gap](ema_gap.png)

Error of each kept model with the EMA and with Precise BN (MLP: all training samples; ResNet:
1,000), mean over seeds: [tracks.csv](tracks.csv).

## Precise BN's samples

![samples](precise_samples.png)

{md_table(samples) if not samples.empty else "No samples evaluations yet."}

## Normalization batch size and FrozenBN

![nbs](nbs.png)

{md_table(nbs)}
"""
    return ReportOutput(text, all_claims(table, given.study.scale))
