"""One function per paper figure: runs -> the table it plots -> PNG.

Each function returns the tables it plotted (written as CSV by the caller) so that every
number in a report can be traced to a file.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from normbench.report.collect import Run  # noqa: E402
from normbench.report.legends import legends_off_data  # noqa: E402

NORM_COLORS = {"none": "tab:gray", "batch": "tab:blue"}
PERCENTILES = ("unit_p15", "unit_p50", "unit_p85")


def save_png(fig: plt.Figure, out_png: Path) -> None:
    """Write a report figure (the same layout and resolution for every study) and free it; a
    legend that covers data moves out of its axes (:mod:`normbench.report.legends`)."""
    fig.tight_layout()
    legends_off_data(fig)
    fig.savefig(out_png, dpi=120)
    plt.close(fig)


def accuracy_curves(runs: list[Run]) -> pd.DataFrame:
    """Test accuracy per (norm, step): mean, std, min and max over seeds."""
    frames = [r.metrics.assign(norm=r.norm, seed=r.seed) for r in runs if not r.metrics.empty]
    if not frames:
        return pd.DataFrame(columns=["norm", "step", "mean", "std", "min", "max", "seeds"])
    df = pd.concat(frames)
    df["accuracy"] = 1.0 - df["val_error"]
    g = df.groupby(["norm", "step"])["accuracy"]
    out = g.agg(["mean", "std", "min", "max"]).assign(seeds=g.size()).reset_index()
    return out.fillna({"std": 0.0})


def last_hidden_layer(runs: list[Run]) -> str | None:
    """Name of the last probed nonlinearity (the paper's 'last hidden layer'); None when no run
    has activations.csv rows (probes.every=0)."""
    layers = [
        r.activations["layer"].drop_duplicates().tolist() for r in runs if not r.activations.empty
    ]
    return layers[0][-1] if layers else None


def percentile_curves(runs: list[Run], layer: str | None) -> pd.DataFrame:
    """Typical-unit 15/50/85th percentiles of ``layer``'s input per (norm, step), mean over seeds."""
    frames = [
        r.activations.assign(norm=r.norm, seed=r.seed) for r in runs if not r.activations.empty
    ]
    if layer is None or not frames:
        return pd.DataFrame(columns=["norm", "step", *PERCENTILES])
    df = pd.concat(frames)
    df = df[df["layer"] == layer]
    return df.groupby(["norm", "step"])[list(PERCENTILES)].mean().reset_index()


def bn_fig1(runs: list[Run], out_png: Path) -> dict[str, pd.DataFrame]:
    """BN paper Figure 1: (a) test accuracy vs steps, (b, c) last-hidden-layer sigmoid input
    percentiles vs steps without and with BN (a panel per norm with activations)."""
    acc = accuracy_curves(runs)
    layer = last_hidden_layer(runs)
    pct = percentile_curves(runs, layer)
    norms = [n for n in ("none", "batch") if n in set(acc["norm"])] or sorted(set(acc["norm"]))
    probed = [n for n in ("none", "batch") if n in set(pct["norm"])] or sorted(set(pct["norm"]))
    fig, axes = plt.subplots(
        1, 1 + len(probed), figsize=(4.2 * (1 + len(probed)), 3.6), squeeze=False
    )
    ax = axes[0][0]
    for norm in norms:
        a = acc[acc["norm"] == norm]
        color = NORM_COLORS.get(norm)
        label = f"{'BN' if norm == 'batch' else 'no BN' if norm == 'none' else norm} ({int(a['seeds'].max())} seeds)"
        ax.plot(a["step"], a["mean"], color=color, label=label)
        ax.fill_between(a["step"], a["min"], a["max"], color=color, alpha=0.25, linewidth=0)
    lo = acc[acc["step"] >= acc["step"].max() * 0.02]["min"].min() if not acc.empty else 0
    ax.set_ylim(max(0.0, lo - 0.02), None)
    ax.set(
        title="(a) test accuracy\n(band: min–max over seeds)",
        xlabel="training step",
        ylabel="accuracy",
    )
    if norms:
        ax.legend(loc="lower right")
    if probed:
        ylim = (pct[list(PERCENTILES)].min().min(), pct[list(PERCENTILES)].max().max())
        pad = 0.05 * (ylim[1] - ylim[0])
    for ax, norm, panel in zip(axes[0][1:], probed, "bcdef", strict=False):
        p = pct[pct["norm"] == norm]
        for col, style in zip(PERCENTILES, (":", "-", "--"), strict=True):
            ax.plot(
                p["step"], p[col], style, color=NORM_COLORS.get(norm, "k"), label=col.split("_")[1]
            )
        title = {"none": "without BN", "batch": "with BN"}.get(norm, norm)
        ax.set(
            title=f"({panel}) {title}:\nsigmoid input, {layer}",
            xlabel="training step",
            ylim=(ylim[0] - pad, ylim[1] + pad),
        )
        ax.legend(title="percentile", loc="upper right")
    save_png(fig, out_png)
    return {"fig1_accuracy": acc, "fig1_percentiles": pct.assign(layer=layer or "")}


def val_error_curves(runs: list[Run], out_png: Path) -> dict[str, pd.DataFrame]:
    """Any study: validation error vs step, one line per run."""
    fig, ax = plt.subplots(figsize=(6, 4))
    rows = []
    for r in runs:
        if r.metrics.empty:
            continue
        label = ",".join(o for o in r.overrides if not o.startswith("experiment=")) or r.path.name
        ax.plot(r.metrics["step"], r.metrics["val_error"], label=label)
        rows.append(r.metrics[["step", "val_error"]].assign(run=str(r.path)))
    ax.set(xlabel="training step", ylabel="validation error", title="validation error")
    if len(rows) <= 12:
        ax.legend(fontsize=7)
    save_png(fig, out_png)
    return {"val_error": pd.concat(rows) if rows else pd.DataFrame()}
