"""The gradient-flow README: the figure (ln r against steps per depth, and against depth),
the table of ratios, steps to target and errors, claims, scale and runs. Numbers from
:mod:`.points`, verdicts from :mod:`.claims`."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from normbench.report.collect import Run  # noqa: E402
from normbench.report.figures import save_png  # noqa: E402
from normbench.report.flags import (  # noqa: E402
    chance_banner,
    run_cells,
    runs_section,
)
from normbench.report.output import SCALE_HEADER, md_table, mean_sd  # noqa: E402
from normbench.report.verdicts import Claim  # noqa: E402
from normbench.studies.gradient_flow.claims import init_claims, main_claims  # noqa: E402
from normbench.studies.gradient_flow.points import (  # noqa: E402
    TARGET,
    activation_of,
    curves,
    depth_of,
    points,
)
from normbench.studies.study import CLAIMS_HERE  # noqa: E402

NORMS = ("none", "batch", "layer", "group")
LABEL = {"none": "no norm", "batch": "BN", "layer": "LN", "group": "GN"}
COLOR = {"none": "tab:gray", "batch": "tab:blue", "layer": "tab:green", "group": "tab:orange"}
LOG10 = math.log(10)


def _norms(pts: pd.DataFrame) -> list[str]:
    present = set(pts["norm"]) if not pts.empty else set()
    return [n for n in NORMS if n in present] + sorted(present - set(NORMS))


def figure_depth(pts: pd.DataFrame, out_png: Path, title: str) -> None:
    """log10 r against depth: one panel per activation, a line per norm (mean), dots per seed."""
    acts = sorted(set(pts["activation"]))
    fig, axes = plt.subplots(1, len(acts), figsize=(5.2 * len(acts), 4), squeeze=False)
    for ax, act in zip(axes[0], acts, strict=True):
        for norm in _norms(pts):
            sel = pts[(pts["norm"] == norm) & (pts["activation"] == act)]
            if sel.empty:
                continue
            mean = sel.groupby("depth")["ln_ratio"].mean() / LOG10
            ax.plot(
                mean.index, mean.values, "-o", color=COLOR.get(norm), label=LABEL.get(norm, norm)
            )
            ax.plot(sel["depth"], sel["ln_ratio"] / LOG10, ".", color=COLOR.get(norm), alpha=0.5)
        ax.axhline(0, color="k", lw=0.5)
        ax.set(
            xlabel="hidden layers",
            ylabel="log10 |dL/dW_first| / |dL/dW_last|",
            title=f"{act}: {title}",
        )
        ax.legend(fontsize=7)
    save_png(fig, out_png)


def figure_steps(cur: pd.DataFrame, out_png: Path) -> None:
    """log10 r against steps: one panel per depth, a line per (norm, seed)."""
    ds = sorted(set(cur["depth"]))
    fig, axes = plt.subplots(1, len(ds), figsize=(3.6 * len(ds), 3.6), squeeze=False, sharey=True)
    for ax, depth in zip(axes[0], ds, strict=True):
        for norm in NORMS:
            sel = cur[(cur["depth"] == depth) & (cur["norm"] == norm)]
            for k, (_, run) in enumerate(sel.groupby("seed")):
                ax.plot(
                    run["step"],
                    run["ln_ratio"] / LOG10,
                    color=COLOR[norm],
                    lw=0.9,
                    label=LABEL[norm] if k == 0 else None,
                )
        ax.set(title=f"{depth} hidden layers", xlabel="step")
    axes[0][0].set_ylabel("log10 |dL/dW_first| / |dL/dW_last|")
    axes[0][0].legend(fontsize=7)
    save_png(fig, out_png)


def table(pts: pd.DataFrame, with_steps: bool) -> pd.DataFrame:
    rows = []
    for (act, depth), g in pts.groupby(["activation", "depth"]):
        for norm in _norms(g):
            sel = g[g["norm"] == norm]
            row = {
                "activation": act,
                "hidden layers": depth,
                "norm": LABEL.get(norm, norm),
                "seeds": len(sel),
                "log10 r": mean_sd(sel["ln_ratio"] / LOG10, ".2f", ".2f"),
            }
            if with_steps:
                reached = sel["steps_to_target"].dropna()
                row[f"steps to {100 * TARGET:.0f}%"] = (
                    f"{reached.mean():.0f} ({len(reached)}/{len(sel)} got there)"
                    if len(reached)
                    else f"never (0/{len(sel)})"
                )
                row["test error (%)"] = mean_sd(sel["test_error"], ".2f", ".2f")
            rows.append(row)
    return pd.DataFrame(rows)


def runs_lines(runs: list[Run]) -> list[str]:
    rows = [
        {
            "activation": activation_of(r),
            "hidden layers": depth_of(r),
            "norm": LABEL.get(r.norm, r.norm),
            "seed": r.seed,
            **run_cells(r, final_error=True),
        }
        for r in runs
    ]
    return runs_section(
        runs,
        rows,
        ["activation", "hidden layers", "norm", "seed"],
        "Per-run numbers: [gradient_flow_points.csv](gradient_flow_points.csv); the ratios against "
        "steps: [gradient_flow_curves.csv](gradient_flow_curves.csv); [runs.csv](runs.csv).",
    )


def scale_lines(done: list[Run], pts: pd.DataFrame, init: bool) -> list[str]:
    if not done:
        return []
    cfg = done[0].config
    steps = int(pts["steps"].max()) if not pts.empty else 0
    return [
        *SCALE_HEADER,
        "| networks | sigmoid MLPs (BN paper); fully connected BN nets without skips, depth up to "
        "hundreds (Yang et al.) | "
        f"MLPs of {', '.join(map(str, sorted(set(pts['depth']))))} hidden layers of 100, "
        f"{', '.join(sorted(set(pts['activation'])))}, weights ~ N(0, 0.1²) |",
        f"| training | – | {cfg['dataset']['name']}, batch {cfg['dataset']['batch_size']}, SGD lr "
        f"{cfg['optim']['lr']}, "
        + ("one step (the gradient at the initial weights)" if init else f"{steps:,} steps")
        + f", {pts['seed'].nunique()} seeds |",
        "",
    ]


def gradient_flow_report(
    runs: list[Run], out_dir: Path, scale: str, init: bool
) -> tuple[str, list[Claim]]:
    """README text (with the claims' mark) and the claims of the main grid or the init variant."""
    done = [r for r in runs if r.status == "complete"]
    cur = curves(runs)
    pts = points(done, cur)
    cur.to_csv(out_dir / "gradient_flow_curves.csv", index=False, float_format="%.6g")
    pts.to_csv(out_dir / "gradient_flow_points.csv", index=False, float_format="%.6g")
    figures = []
    if not pts.empty:
        title = "at the initial weights" if init else "median over training"
        figure_depth(pts, out_dir / "gradient_flow_depth.png", title)
        figures.append("![log10 r against depth](gradient_flow_depth.png)\n")
    if not init and not cur.empty:
        figure_steps(cur, out_dir / "gradient_flow_steps.png")
        figures.append("![log10 r against steps](gradient_flow_steps.png)\n")
    eval_every = int((done[0].config.get("trainer") or {}).get("eval_every", 1)) if done else 1
    claims = init_claims(pts, scale) if init else main_claims(pts, scale, eval_every)
    intro = (
        "At the initial weights (one training step, whose gradient is taken there): ReLU and tanh "
        "MLPs with BN and without a norm, no skip connections. Yang et al. 2019 find that BN's "
        "gradients *explode* with depth at initialisation.\n"
        if init
        else "Sigmoid MLPs of growing depth without a norm, with BN, LN and GN. The BN paper: "
        "without BN, sigmoid networks saturate and their first layers lose the gradient; BN keeps "
        "the inputs of the nonlinearities out of saturation.\n"
    )
    lines = [
        "# Gradient flow across depth, with and without normalization\n",
        intro,
        "r = ‖∂L/∂W_first‖ / ‖∂L/∂W_last‖, the first and the last hidden layer's weight-gradient "
        "norms on a training batch, from each run's params.csv (`probes.params`)"
        + ("" if init else ", every 50 steps; a run's value is the median over its probe steps")
        + ". Compare depths, not absolute values: the first layer has 784 inputs, the others 100.\n",
        *chance_banner(runs),
        *figures,
        md_table(table(pts, not init)) if not pts.empty else "No complete runs yet.\n",
        CLAIMS_HERE,
        *scale_lines(done, pts, init),
        *runs_lines(runs),
    ]
    return "\n".join(lines) + "\n", claims
