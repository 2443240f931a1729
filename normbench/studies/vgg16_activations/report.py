"""The VGG-16 feature-distribution README: the figure (percentiles against steps for conv 4, 7
and 10, without and with BN; the move of every layer), the table, claims, scale and runs."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from normbench.report.collect import Run  # noqa: E402
from normbench.report.figures import PERCENTILES, save_png  # noqa: E402
from normbench.report.flags import (  # noqa: E402
    chance_banner,
    run_cells,
    runs_section,
)
from normbench.report.output import SCALE_HEADER, md_table  # noqa: E402
from normbench.report.verdicts import Claim  # noqa: E402
from normbench.studies.study import CLAIMS_HERE  # noqa: E402
from normbench.studies.vgg16_activations.claims import all_claims  # noqa: E402
from normbench.studies.vgg16_activations.points import LAYERS, curves, points  # noqa: E402

NORMS = (("none", "no BN"), ("batch", "BN"))
SHADES = {"unit_p15": "tab:cyan", "unit_p50": "tab:blue", "unit_p85": "navy"}


def figure(cur: pd.DataFrame, pts: pd.DataFrame, out_png: Path) -> None:
    fig, axes = plt.subplots(len(LAYERS) + 1, 2, figsize=(10, 3 * (len(LAYERS) + 1)), squeeze=False)
    for i, conv in enumerate(LAYERS):
        for j, (norm, label) in enumerate(NORMS):
            ax = axes[i][j]
            sel = cur[(cur["conv"] == conv) & (cur["norm"] == norm)]
            for k, (_seed, run) in enumerate(sel.groupby("seed")):
                for c in PERCENTILES:
                    ax.plot(
                        run["step"],
                        run[c],
                        color=SHADES[c],
                        lw=0.9,
                        label=c.replace("unit_", "") if k == 0 else None,
                    )
            ax.set(title=f"conv {conv}: {label}", xlabel="step", ylabel="ReLU input")
            if i == 0:
                ax.legend(fontsize=7)
    for j, (norm, label) in enumerate(NORMS):
        ax = axes[-1][j]
        sel = pts[pts["norm"] == norm] if not pts.empty else pts
        for _seed, g in sel.groupby("seed") if not sel.empty else []:
            ax.plot(
                g["conv"],
                g["move"],
                "o-",
                ms=3,
                lw=0.8,
                color="tab:red" if norm == "none" else "tab:blue",
            )
        ax.set(
            title=f"{label}: largest move / initial 15-85 spread",
            xlabel="conv layer (of 13)",
            ylabel="relative move",
        )
    save_png(fig, out_png)


def table(pts: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for conv, g in pts.groupby("conv"):
        row = {"conv": int(conv)}
        for norm, label in NORMS:
            xs = [x for x in g[g["norm"] == norm]["move"] if math.isfinite(x)]
            row[f"move, {label}"] = f"{sum(xs) / len(xs):.2f}" if xs else "–"
        rows.append(row)
    return pd.DataFrame(rows)


def runs_lines(runs: list[Run]) -> list[str]:
    rows = [{"norm": r.norm, "seed": r.seed, **run_cells(r, final_error=True)} for r in runs]
    return runs_section(
        runs,
        rows,
        ["norm", "seed"],
        "Per-layer numbers: [vgg16_activations_points.csv](vgg16_activations_points.csv); the "
        "percentiles against steps: [vgg16_activations_curves.csv](vgg16_activations_curves.csv); "
        "[runs.csv](runs.csv).",
    )


def vgg16_activations_report(runs: list[Run], out_dir: Path, scale: str) -> tuple[str, list[Claim]]:
    """README text (with the claims' mark) and the claims."""
    cur, pts = curves(runs), points(runs)
    cur.to_csv(out_dir / "vgg16_activations_curves.csv", index=False, float_format="%.5g")
    pts.to_csv(out_dir / "vgg16_activations_points.csv", index=False, float_format="%.5g")
    if not cur.empty:
        figure(cur, pts, out_dir / "vgg16_activations.png")
    claims = all_claims(pts, scale)
    lines = [
        "# VGG-16's intermediate feature distributions, with and without BN\n",
        "The BN paper's Figure 1(b, c) shows a sigmoid MLP's last hidden layer: without BN the "
        "15th, 50th and 85th percentiles of a typical unit's input drift during training, with BN "
        "they stay put. The article on BN's problems shows the distribution of an intermediate "
        "VGG-16 conv layer's features. Here the same percentiles of every ReLU's input (the "
        "conv's output, after BN where there is one) in a width-reduced VGG-16 (activations.csv; "
        "TensorBoard histograms `act_hist/`).\n",
        *chance_banner(runs),
        "![percentiles against steps; relative move per layer](vgg16_activations.png)\n",
        "Largest move of the typical unit's percentiles from the first probe step, divided by the "
        "layer's 15-85 spread at that step (scale-free; mean over seeds):\n",
        md_table(table(pts)) if not pts.empty else "No complete runs yet.\n",
        CLAIMS_HERE,
        *SCALE_HEADER,
        "| network | VGG-16 on ImageNet (the article); a 3x100 sigmoid MLP on MNIST (the BN paper) "
        "| VGG-16 width 0.125, CIFAR stem, ReLU |",
        "| training | – | Fashion-MNIST, 3,000 steps of 60, SGD lr 0.01 momentum 0.9, 3 seeds; "
        "probe batch of 256 validation images every 100 steps |",
        "",
        *runs_lines(runs),
    ]
    return "\n".join(lines) + "\n", claims
