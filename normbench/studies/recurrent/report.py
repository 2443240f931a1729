"""The recurrent README: the figure (test error against steps per option; ‖∂L/∂h_t‖ against t at
initialisation and at the end of training), the table (errors, spread over seeds, steps to the
target, time per step against torch.nn.LSTM), claims, scale and runs."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from normbench.report.collect import Run  # noqa: E402
from normbench.report.figures import save_png  # noqa: E402
from normbench.report.flags import chance_banner, run_cells, runs_section  # noqa: E402
from normbench.report.output import SCALE_HEADER, md_table, mean_sd  # noqa: E402
from normbench.report.verdicts import Claim  # noqa: E402
from normbench.studies.recurrent.claims import all_claims  # noqa: E402
from normbench.studies.recurrent.points import (  # noqa: E402
    LABEL,
    OPTIONS,
    TARGET_ERROR,
    option_of,
    points,
)
from normbench.studies.study import CLAIMS_HERE  # noqa: E402

COLOR = {
    "none": "tab:gray",
    "vertical": "tab:green",
    "shared": "tab:red",
    "per_step": "tab:blue",
    "layer": "tab:purple",
}


def error_curves(runs: list[Run]) -> pd.DataFrame:
    """Per option and evaluated step: the mean, min and max test error (%) over seeds."""
    frames = []
    for r in runs:
        option = option_of(r)
        if option is None or r.metrics.empty:
            continue
        m = r.metrics[["step", "val_error"]].dropna()
        frames.append(m.assign(option=option, seed=r.seed, error=100 * m["val_error"]))
    if not frames:
        return pd.DataFrame(columns=["option", "step", "mean", "min", "max", "seeds"])
    every = pd.concat(frames, ignore_index=True)
    g = every.groupby(["option", "step"])["error"]
    return pd.DataFrame(
        {"mean": g.mean(), "min": g.min(), "max": g.max(), "seeds": g.count()}
    ).reset_index()


def figure(curves: pd.DataFrame, grads: pd.DataFrame, out_png: Path) -> None:
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.6))
    for option in OPTIONS:
        sel = curves[curves["option"] == option]
        if sel.empty:
            continue
        axes[0].plot(sel["step"], sel["mean"], color=COLOR[option], lw=1.4, label=LABEL[option])
        axes[0].fill_between(sel["step"], sel["min"], sel["max"], color=COLOR[option], alpha=0.15)
    axes[0].axhline(TARGET_ERROR, color="k", lw=0.6, ls="--")
    axes[0].set(
        xlabel="step",
        ylabel="test error (%)",
        ylim=(0, 100),
        title="test error: mean over seeds, band min–max\n(dashed: the target error)",
    )
    axes[0].legend(fontsize=7, loc="upper right")
    steps = sorted(grads["step"].unique()) if not grads.empty else []
    panels = [(axes[1], steps[0] if steps else None, "at initialisation (step 0)")]
    panels.append((axes[2], steps[-1] if steps else None, f"at step {steps[-1] if steps else '–'}"))
    for ax, step, when in panels:
        if step is None:
            ax.set_axis_off()
            continue
        for option in OPTIONS:
            sel = grads[(grads["option"] == option) & (grads["step"] == step)]
            for k, (_seed, g) in enumerate(sel.groupby("seed")):
                label = LABEL[option] if k == 0 else None
                ax.plot(g["t"], g["grad_norm"], color=COLOR[option], lw=0.9, alpha=0.8, label=label)
        ax.set(
            yscale="log",
            xlabel="time step t",
            ylabel="‖∂L/∂h_t‖ (top layer)",
            title=f"∂L/∂h_t, {when}\n(one line per seed)",
        )
    save_png(fig, out_png)


def table(pts: pd.DataFrame) -> pd.DataFrame:
    rows = []
    base = pts.loc[pts["option"] == "none", "ms_per_step"].mean() if not pts.empty else math.nan
    for option in OPTIONS:
        sel = pts[pts["option"] == option]
        if sel.empty:
            continue
        ms = sel["ms_per_step"].mean()
        reached = int(sel["reached"].astype(bool).sum())
        rows.append(
            {
                "option": LABEL[option],
                "seeds": len(sel),
                "final test error (%)": mean_sd(sel["final_error"], ".4g"),
                "best (%)": mean_sd(sel["best_error"], ".4g"),
                "mean over evaluations (%)": mean_sd(sel["mean_error"], ".4g"),
                f"steps to {TARGET_ERROR:g}%": f"{mean_sd(sel['steps_to_target'], '.0f', '.0f')} "
                f"({reached}/{len(sel)} reached)",
                "‖∂L/∂h_1‖/‖∂L/∂h_T‖ at init": mean_sd(sel["grad_ratio"]),
                "... at the end": mean_sd(sel["grad_ratio_end"]),
                "diverged": int(sel["diverged"].sum()),
                "ms/step": f"{ms:.1f}",
                "× torch.nn.LSTM": f"{ms / base:.2f}" if math.isfinite(base) and base else "–",
            }
        )
    return pd.DataFrame(rows)


def runs_lines(runs: list[Run]) -> list[str]:
    rows = [
        {"option": option_of(r) or "?", "seed": r.seed, **run_cells(r, final_error=True)}
        for r in runs
    ]
    return runs_section(
        runs,
        rows,
        ["option", "seed"],
        "Per-run numbers: [recurrent_points.csv](recurrent_points.csv); error curves: "
        "[recurrent_curves.csv](recurrent_curves.csv); ‖∂L/∂h_t‖ per run, probe step and t: "
        "[recurrent_hidden_grads.csv](recurrent_hidden_grads.csv); [runs.csv](runs.csv).",
    )


def recurrent_report(
    runs: list[Run], out_dir: Path, scale: str, rows: tuple[str, str]
) -> tuple[str, list[Claim]]:
    """README text (with the claims' mark) and the claims; ``rows``: the scale table's network
    and data cells for our runs."""
    mine = [r for r in runs if option_of(r) is not None]
    pts, grads = points(mine)
    curves = error_curves([r for r in mine if r.status == "complete"])
    pts.to_csv(out_dir / "recurrent_points.csv", index=False, float_format="%.6g")
    curves.to_csv(out_dir / "recurrent_curves.csv", index=False, float_format="%.6g")
    grads.to_csv(out_dir / "recurrent_hidden_grads.csv", index=False, float_format="%.6g")
    if not curves.empty:
        figure(curves, grads, out_dir / "recurrent.png")
    claims = all_claims(pts, scale)
    lines = [
        "# Recurrent networks: BN across time steps against Layer Norm\n",
        "BN is easy to apply to a recurrent network *vertically*, on the input-to-hidden "
        "transform, and hard *horizontally*, across time steps, where the same normalization is "
        "applied again at every step. Laurent et al. 2016 found vertical BN speeds training but "
        "not generalization, and horizontal BN with statistics shared over time hurt; Cooijmans "
        "et al. 2017 made horizontal BN work with separate statistics per time step and γ "
        "initialised to 0.1; Layer Normalization (Ba et al. 2016) needs no statistics at all "
        "(docs/papers.md §13).\n",
        "One LSTM cell (`model=lstm`, normbench/models/lstm.py) with norm slots on W_ih x_t, "
        "W_hh h_{t−1} and the cell state, filled from the norm registry: no norm (it then runs "
        "through torch.nn.LSTM, the same function), BN vertical only (W_ih x_t, statistics over "
        "batch and time), BN horizontal with one set of statistics for all steps, BN horizontal "
        "with statistics per step (Cooijmans), LN. The gradient ‖∂L/∂h_t‖ against t "
        "(`probes.hidden_grads`, normbench/probes/hidden_grads.py, tested against autograd) is "
        "taken on 256 test images at step 0 and during training, the norms normalizing with the "
        "batch's statistics as in training: a ratio ‖∂L/∂h_1‖/‖∂L/∂h_T‖ far below 1 means the "
        "gradient vanishes back through time, far above 1 that it explodes. In training mode "
        "shared and per-step BN compute the same function (each time step normalized by its "
        "batch's statistics): one seed trains both to the same weights, and their gradient "
        "curves coincide at every probe step. They differ only in the running statistics that "
        "evaluation uses, one set for all time steps or one per step, and so does their test "
        "error.\n",
        *chance_banner(runs),
        "![test error against steps; ‖∂L/∂h_t‖ against t at init and at the end](recurrent.png)\n",
        "Mean ± std over seeds (the std is the spread, i.e. the stability across seeds). "
        f"Steps to {TARGET_ERROR:g}%: the first evaluation at or below it; a run that never gets "
        "there counts as its last step + one interval. ms/step: the training step's wall time "
        "as summary.json records it (runs share the CPU, so it is indicative; "
        "`normbench bench lstm` times our cell against torch.nn.LSTM alone, "
        "results/bench/README.md).\n",
        md_table(table(pts)) if not pts.empty else "No complete runs yet.\n",
        CLAIMS_HERE,
        *SCALE_HEADER,
        f"| network | LSTM, 100 hidden units (Cooijmans et al.) [MEM] | {rows[0]} |",
        f"| data | sequential and permuted MNIST, pixel by pixel (784 steps) | {rows[1]} |",
        "| optimiser | RMSProp lr 1e-3, batch 64 (Cooijmans et al.) [MEM] | Adam lr 1e-3, batch "
        "64, no gradient clipping |",
        "",
        *runs_lines(mine),
    ]
    return "\n".join(lines) + "\n", claims
