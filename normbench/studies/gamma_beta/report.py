"""The γ/β README: the figure (test error against steps with and without γ/β, and how far each
layer's learned γ and β ended from 1 and 0), the table, claims, scale and runs."""

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
from normbench.studies.gamma_beta.claims import MOVED, all_claims  # noqa: E402
from normbench.studies.gamma_beta.points import MODEL_LABEL, MODELS, points, setting_of  # noqa: E402
from normbench.studies.study import CLAIMS_HERE  # noqa: E402

COLOR = {True: "tab:blue", False: "tab:red"}
LABEL = {True: "BN with γ, β", False: "BN without γ, β"}


def figure(runs: list[Run], per_layer: pd.DataFrame, out_png: Path) -> None:
    models = [m for m in MODELS if any((setting_of(r) or ("",))[0] == m for r in runs)]
    fig, axes = plt.subplots(2, len(models), figsize=(5.5 * len(models), 7), squeeze=False)
    for j, model in enumerate(models):
        seen = set()
        for r in runs:
            s = setting_of(r)
            if s is None or s[0] != model or r.metrics.empty:
                continue
            label = None if s[1] in seen else LABEL[s[1]]
            seen.add(s[1])
            axes[0][j].plot(
                r.metrics["step"],
                100 * r.metrics["val_error"],
                color=COLOR[s[1]],
                lw=1,
                label=label,
            )
        axes[0][j].set(
            title=MODEL_LABEL[model], xlabel="step", ylabel="test error (%)", ylim=(0, 60)
        )
        axes[0][j].legend(fontsize=7)
        sel = per_layer[per_layer["model"] == model] if not per_layer.empty else per_layer
        for k, (_seed, g) in enumerate(sel.groupby("seed") if not sel.empty else []):
            x = range(len(g))
            axes[1][j].plot(
                x,
                g["gamma_dev"],
                "o-",
                color="tab:purple",
                ms=3,
                lw=0.8,
                label="rms(γ − 1)" if k == 0 else None,
            )
            axes[1][j].plot(
                x,
                g["beta_dev"],
                "s-",
                color="tab:green",
                ms=3,
                lw=0.8,
                label="rms(β)" if k == 0 else None,
            )
        axes[1][j].axhline(MOVED, color="k", lw=0.6, ls="--", label=f'{MOVED} ("moved")')
        axes[1][j].set(
            xlabel="norm layer (forward order)",
            ylabel="at the end of training",
            title="learned γ and β, per layer",
        )
        axes[1][j].legend(fontsize=7)
    save_png(fig, out_png)


def table(pts: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for model in MODELS:
        for affine in (True, False):
            sel = pts[(pts["model"] == model) & (pts["affine"] == affine)]
            if sel.empty:
                continue
            rows.append(
                {
                    "model": MODEL_LABEL[model],
                    "BN": LABEL[affine],
                    "seeds": len(sel),
                    "test error (%)": mean_sd(sel["test_error"], ".4g"),
                    "rms(γ − 1), mean over layers": mean_sd(sel["gamma_dev"]) if affine else "–",
                    "rms(β), mean over layers": mean_sd(sel["beta_dev"]) if affine else "–",
                }
            )
    return pd.DataFrame(rows)


def runs_lines(runs: list[Run]) -> list[str]:
    rows = []
    for r in runs:
        model, affine = setting_of(r) or ("?", False)
        rows.append(
            {
                "model": model,
                "γ, β": "yes" if affine else "no",
                "seed": r.seed,
                **run_cells(r, final_error=True),
            }
        )
    return runs_section(
        runs,
        rows,
        ["model", "γ, β", "seed"],
        "Per-run numbers: [gamma_beta_points.csv](gamma_beta_points.csv); per layer: "
        "[gamma_beta_layers.csv](gamma_beta_layers.csv); [runs.csv](runs.csv).",
    )


def gamma_beta_report(runs: list[Run], out_dir: Path, scale: str) -> tuple[str, list[Claim]]:
    """README text (with the claims' mark) and the claims."""
    mine = [r for r in runs if setting_of(r) is not None]
    pts, per_layer = points(mine)
    pts.to_csv(out_dir / "gamma_beta_points.csv", index=False, float_format="%.6g")
    per_layer.to_csv(out_dir / "gamma_beta_layers.csv", index=False, float_format="%.6g")
    if not pts.empty:
        figure(mine, per_layer, out_dir / "gamma_beta.png")
    claims = all_claims(pts, scale)
    lines = [
        "# BN's learned scale and shift (γ, β): removed, and where they go\n",
        "Ioffe & Szegedy 2015, §3 (docs/papers.md §12): normalizing a layer's inputs may change "
        "what the layer can represent (a sigmoid's inputs held near 0 keep it linear), so BN "
        "learns a scale γ and shift β per channel that can undo the normalization. Here BN with "
        "them (`norm.affine=true`) against BN without (`norm.affine=false`; the weight layers "
        "then keep their bias) in experiment=bn_fig1's sigmoid MLP and in ResNet-50 width "
        "0.125 (`zero_init_last_norm=false` in both, so the only difference is γ/β).\n",
        *chance_banner(runs),
        "![test error with and without γ/β; γ and β per layer](gamma_beta.png)\n",
        "rms(γ − 1) and rms(β) per norm layer at the last probe step, from the mean and std "
        "params.csv records (`probes.params`); TensorBoard holds their histograms every 500 "
        "steps (`param_hist/`). Mean ± std over seeds.\n",
        md_table(table(pts)) if not pts.empty else "No complete runs yet.\n",
        CLAIMS_HERE,
        *SCALE_HEADER,
        "| networks | Inception on ImageNet | experiment=bn_fig1's sigmoid MLP (5,000 steps of 60, "
        "SGD lr 0.5); ResNet-50 width 0.125, CIFAR stem (1,500 steps of 64, SGD momentum) |",
        "| data | ImageNet | Fashion-MNIST; the error on the 10,000 test images |",
        "",
        *runs_lines(mine),
    ]
    return "\n".join(lines) + "\n", claims
