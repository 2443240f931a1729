"""The covariate_shift README: the figure (test error, the gradient's change and the loss range
along the step, and the layer inputs' shift per step, against steps, per model and norm), the
table, claims, scale and runs."""

from __future__ import annotations

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
from normbench.studies.covariate_shift.claims import all_claims  # noqa: E402
from normbench.studies.covariate_shift.points import (  # noqa: E402
    MODEL_LABEL,
    MODELS,
    NORM_LABEL,
    NORMS,
    points,
    setting_of,
)
from normbench.studies.study import CLAIMS_HERE  # noqa: E402

COLOR = {"none": "tab:gray", "batch": "tab:blue", "noisy_batch": "tab:orange"}
PANELS = (
    ("grad_change", "max ‖Δg‖₂ along the step"),
    ("loss_range", "loss range along the step"),
    ("shift_mean", "layer-input shift per step\n(|Δμ|/σ, mean over layers)"),
    ("shift_shape", "layer-input shape change per step\n(standardized percentiles)"),
)


def figure(runs: list[Run], curve: pd.DataFrame, out_png: Path) -> None:
    models = [m for m in MODELS if not curve.empty and (curve["model"] == m).any()]
    fig, axes = plt.subplots(
        len(models),
        1 + len(PANELS),
        figsize=(4.2 * (1 + len(PANELS)), 3.6 * len(models)),
        squeeze=False,
    )
    for i, model in enumerate(models):
        row, seen = axes[i], set()
        for r in runs:
            s = setting_of(r)
            if s is None or s[0] != model or r.metrics.empty:
                continue
            label = None if s[1] in seen else NORM_LABEL[s[1]]
            seen.add(s[1])
            row[0].plot(
                r.metrics["step"],
                100 * r.metrics["val_error"],
                color=COLOR[s[1]],
                lw=1,
                label=label,
            )
        row[0].set(title=MODEL_LABEL[model], xlabel="step", ylabel="test error (%)", ylim=(0, 100))
        row[0].legend(fontsize=7)
        sel = curve[curve["model"] == model]
        for ax, (col, title) in zip(row[1:], PANELS, strict=True):
            for (norm, _seed), g in sel.groupby(["norm", "seed"]):
                ax.plot(g["step"], g[col], color=COLOR[norm], lw=0.9, alpha=0.8)
            ax.set(yscale="log", xlabel="step", title=title)
    save_png(fig, out_png)


def table(pts: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for model in MODELS:
        for norm in NORMS:
            sel = pts[(pts["model"] == model) & (pts["norm"] == norm)]
            if sel.empty:
                continue
            rows.append(
                {
                    "model": MODEL_LABEL[model],
                    "norm": NORM_LABEL[norm],
                    "seeds": len(sel),
                    "test error (%)": mean_sd(sel["test_error"], ".4g"),
                    "max ‖Δg‖": mean_sd(sel["grad_change"]),
                    "max ‖Δg‖/‖g‖": mean_sd(sel["rel_change"]),
                    "loss range": mean_sd(sel["loss_range"]),
                    "β-smoothness": mean_sd(sel["beta"]),
                    "shift of means": mean_sd(sel["shift_mean"]),
                    "shift of scales": mean_sd(sel["shift_scale"]),
                    "shift of shapes": mean_sd(sel["shift_shape"]),
                }
            )
    return pd.DataFrame(rows)


def runs_lines(runs: list[Run]) -> list[str]:
    rows = []
    for r in runs:
        model, norm = setting_of(r) or ("?", "?")
        rows.append({"model": model, "norm": norm, "seed": r.seed, **run_cells(r, True)})
    return runs_section(
        runs,
        rows,
        ["model", "norm", "seed"],
        "Per-run numbers: [covariate_shift_points.csv](covariate_shift_points.csv); per probe "
        "step: [covariate_shift_steps.csv](covariate_shift_steps.csv); [runs.csv](runs.csv).",
    )


def covariate_shift_report(
    runs: list[Run], out_dir: Path, scale: str, rows: tuple[str, str, str]
) -> tuple[str, list[Claim]]:
    """README text (with the claims' mark) and the claims; ``rows``: the scale table's network,
    data and step-size cells for our runs."""
    mine = [r for r in runs if setting_of(r) is not None]
    pts, curve = points(mine)
    pts.to_csv(out_dir / "covariate_shift_points.csv", index=False, float_format="%.6g")
    curve.to_csv(out_dir / "covariate_shift_steps.csv", index=False, float_format="%.6g")
    if not curve.empty:
        figure(mine, curve, out_dir / "covariate_shift.png")
    claims = all_claims(pts, scale)
    lines = [
        "# Internal covariate shift and the landscape along the step: no norm, BN, noisy BN\n",
        "BN was proposed to reduce internal covariate shift, the change of each layer's input "
        "distribution as the layers before it train (Ioffe & Szegedy 2015). Santurkar et al. "
        "2018 inject shift on purpose: noisy BN adds, after every BN layer, a per-channel random "
        "scale and shift redrawn at every step (`norm=noisy_batch`, configs/norm/noisy_batch.yaml; "
        "evaluation applies the noise's expectation). If it trains about as well as BN, reducing "
        "the shift is not what makes BN work; they find instead that BN smooths the loss "
        "along the step: the loss and the gradient change less (gradient predictiveness).\n",
        "Measured every 100 steps on the step's own training batch, on a copy of the model in "
        "training mode (`probes.smoothness`, normbench/probes/smoothness.py, tested against a "
        "float64 formula): the loss and the gradient's ℓ2 change at several step sizes along "
        "the gradient (the same noise and dropout masks at every point), and how far each "
        "nonlinearity's input distribution moves in one SGD step on that batch (noisy BN with "
        "its next draw): per channel |Δμ|/σ (means), |Δ ln σ| (scales) and the largest change of "
        "the 15/50/85th percentiles of the channel standardized by its own mean and std "
        "(shapes), the median over channels, the mean over layers. BN pins the first two on the "
        "batch by design; the shape it does not. Noisy BN's affine noise moves the first two where "
        "it is added, and the shapes of the layers after it (through their nonlinearities).\n",
        *chance_banner(runs),
        "![error, gradient change, loss range and shift against steps](covariate_shift.png)\n",
        "Mean ± std over seeds of each run's mean over its probe steps:\n",
        md_table(table(pts)) if not pts.empty else "No complete runs yet.\n",
        CLAIMS_HERE,
        *SCALE_HEADER,
        f"| network | VGG on CIFAR-10 | {rows[0]} |",
        f"| data | CIFAR-10 | {rows[1]} |",
        "| noise | i.i.d. per activation, mean and variance redrawn every step | per channel, "
        "shift U(−0.5, 0.5), scale U(1, 1.5), redrawn every step |",
        f"| step sizes | several, along the gradient | {rows[2]} |",
        "",
        *runs_lines(mine),
    ]
    return "\n".join(lines) + "\n", claims
