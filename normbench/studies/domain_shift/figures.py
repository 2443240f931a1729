"""Domain-shift study, the figures: error heatmaps, the k and N curves, KL per layer.

One heatmap PNG per model and norm, ``heatmap_<model>_<norm>.png``, with a panel per mode
(rows: corruptions; columns: clean, then severities 1–5; mean error over seeds, one colour
scale for all panels of the figure).
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from normbench.report.figures import save_png  # noqa: E402
from normbench.studies.domain_shift.data import BENCHMARK, CLEAN, MODE_ORDER  # noqa: E402


def heatmap_name(model: str, norm: str) -> str:
    """The file name of a model's heatmap figure (characters outside [A-Za-z0-9_.-] → _)."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", f"heatmap_{model}_{norm}.png")


def _corruption_order(names: set[str]) -> list[str]:
    return [c for c in BENCHMARK if c in names] + sorted(names - set(BENCHMARK) - {CLEAN})


def heatmaps(table: pd.DataFrame, out_dir: Path) -> list[str]:
    """One figure per (model, norm) from :func:`heatmap_table`; returns the file names."""
    names = []
    for (model, norm), g in table.groupby(["model", "norm"]):
        modes = [m for m in MODE_ORDER if m in set(g["mode"])] + sorted(
            set(g["mode"]) - set(MODE_ORDER)
        )
        rows = _corruption_order(set(g["corruption"]))
        if not rows:
            continue
        cols = [0, *sorted(set(g["severity"]) - {0})]
        vmin, vmax = float(g["error"].min()), float(g["error"].max())
        fig, axes = plt.subplots(
            1, len(modes), figsize=(1.0 + 2.6 * len(modes), 0.9 + 0.32 * len(rows)), squeeze=False
        )
        for ax, mode in zip(axes[0], modes, strict=True):
            m = g[g["mode"] == mode]
            grid = np.full((len(rows), len(cols)), np.nan)
            for r in m.itertuples(index=False):
                sev = 0 if r.corruption == CLEAN else r.severity
                targets = range(len(rows)) if r.corruption == CLEAN else [rows.index(r.corruption)]
                for i in targets:
                    grid[i, cols.index(sev)] = r.error
            image = ax.imshow(grid, vmin=vmin, vmax=vmax, cmap="viridis", aspect="auto")
            for i, j in zip(*np.where(~np.isnan(grid)), strict=True):
                ax.text(j, i, f"{grid[i, j]:.0f}", ha="center", va="center", fontsize=6, color="w")
            ax.set_xticks(range(len(cols)), ["clean" if c == 0 else str(c) for c in cols])
            ax.set_yticks(range(len(rows)), rows if ax is axes[0][0] else [""] * len(rows))
            ax.set(title=f"mode={mode}", xlabel="severity")
        fig.colorbar(image, ax=axes[0].tolist(), label="error (%), mean over seeds", shrink=0.8)
        fig.suptitle(f"{model}/{norm}: error by corruption and severity")
        name = heatmap_name(str(model), str(norm))
        fig.savefig(out_dir / name, dpi=120, bbox_inches="tight")
        plt.close(fig)
        names.append(name)
    return names


def _panels(keys: list[tuple[str, str]]) -> tuple[plt.Figure, list[plt.Axes]]:
    n = max(1, len(keys))
    fig, axes = plt.subplots(1, n, figsize=(4.4 * n, 3.6), squeeze=False)
    return fig, list(axes[0])


def k_curve_figure(k: pd.DataFrame, out_png: Path) -> None:
    """AdaBN's error against samples=k, one line per severity the curve was made at, running
    dashed in the same colour."""
    adapt = k[k["mode"] == "adapt"]
    keys = sorted({(m, n) for m, n in zip(adapt["model"], adapt["norm"], strict=True)})
    fig, axes = _panels(keys)
    for ax, (model, norm) in zip(axes, keys, strict=False):
        g = k[(k["model"] == model) & (k["norm"] == norm)]
        sevs = sorted(set(g["severity"]))
        colors = plt.cm.plasma(np.linspace(0.1, 0.85, max(1, len(sevs))))
        for sev, color in zip(sevs, colors, strict=False):
            a = g[(g["severity"] == sev) & (g["mode"] == "adapt")].sort_values("samples")
            r = g[(g["severity"] == sev) & (g["mode"] == "running")]
            name = f"severity {sev}, {int(a['corruptions'].max())} corruptions"
            ax.plot(a["samples"], a["mean"], "o-", color=color, label=name)
            if len(r):
                ax.axhline(float(r["mean"].iloc[0]), color=color, ls="--", lw=1.0)
        ax.set_xscale("log")
        ax.set(title=f"{model}/{norm} (dashed: running)", xlabel="target samples k (mode=adapt)")
        ax.set(ylabel="corrupted error (%)")
        ax.legend(fontsize=7)
    save_png(fig, out_png)


def n_curve_figure(n: pd.DataFrame, out_png: Path) -> None:
    """Partial adaptation's error against the prior N per batch size n; running and full
    AdaBN as horizontal lines."""
    partial = n[n["mode"] == "partial"]
    keys = sorted({(m, x) for m, x in zip(partial["model"], partial["norm"], strict=True)})
    fig, axes = _panels(keys)
    for ax, (model, norm) in zip(axes, keys, strict=False):
        g = n[(n["model"] == model) & (n["norm"] == norm)]
        p = g[g["mode"] == "partial"]
        for size, s in p.groupby("batch_size"):
            s = s.sort_values("prior")
            ax.plot(s["prior"], s["mean"], "o-", label=f"partial, n = {size:g}")
        for mode, style in (("running", "--"), ("adapt", ":")):
            r = g[g["mode"] == mode]
            if len(r):
                ax.axhline(float(r["mean"].iloc[0]), color="k", ls=style, label=mode)
        ax.set_xscale("symlog", linthresh=1)
        top = float(p["prior"].max()) if len(p) else 1.0
        ax.set_xlim(-0.3, max(2.0, top * 1.6))
        ax.set(title=f"{model}/{norm}", xlabel="prior strength N (pseudo-samples)")
        ax.set(ylabel="corrupted error (%)")
        ax.legend(fontsize=7)
    save_png(fig, out_png)


def kl_figure(kl: pd.DataFrame, out_png: Path) -> None:
    """Mean KL per layer (log scale), before (running) and after (adapt) adaptation."""
    keys = sorted({(m, x) for m, x in zip(kl["model"], kl["norm"], strict=True)})
    fig, axes = _panels(keys)
    for ax, (model, norm) in zip(axes, keys, strict=False):
        g = kl[(kl["model"] == model) & (kl["norm"] == norm)]
        for mode, style in (("running", "o-"), ("adapt", "s--")):
            m = g[g["mode"] == mode].sort_values("layer_index")
            values = m["mean"].where(m["mean"] > 0)
            ax.plot(
                m["layer_index"],
                values,
                style,
                label=f"{mode} ({int(m['seeds'].max())} seeds)" if len(m) else mode,
            )
        positive = g["mean"][g["mean"] > 0]
        if len(positive) and not math.isclose(positive.min(), positive.max()):
            ax.set_yscale("log")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set(title=f"{model}/{norm}", xlabel="norm layer (input → output)")
        ax.set(ylabel="KL(source ‖ target), mean over channels")
        ax.legend(fontsize=7)
    save_png(fig, out_png)
