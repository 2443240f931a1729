"""The detached_bias README: the figure (|b|, |W| and the test error against steps), the table of
norms and errors per setting, claims, scale and runs. Numbers from :mod:`.points`, verdicts from
:mod:`.claims`."""

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
from normbench.studies.detached_bias.claims import all_claims  # noqa: E402
from normbench.studies.detached_bias.points import (  # noqa: E402
    PART_LABEL,
    PARTS,
    curves,
    points,
    setting_of,
)
from normbench.studies.study import CLAIMS_HERE  # noqa: E402

COLOR = {False: "tab:blue", True: "tab:red"}
GRAD = {False: "statistics in the gradient", True: "statistics detached"}
ROWS = (("bias", "|b| (norm of the biases)"), ("weight", "|W| (norm of the weights)"))


def figure(cur: pd.DataFrame, out_png: Path) -> None:
    """Columns: the parts; rows: |b|, |W| and the test error against steps; a line per seed."""
    parts = [p for p in PARTS if (cur["part"] == p).any()]
    fig, axes = plt.subplots(3, len(parts), figsize=(4.2 * len(parts), 8.4), squeeze=False)
    for j, part in enumerate(parts):
        for detached in (False, True):
            sel = cur[(cur["part"] == part) & (cur["detached"] == detached)]
            for k, (_, run) in enumerate(sel.groupby("seed")):
                label = GRAD[detached] if k == 0 else None
                for i, (column, _) in enumerate(ROWS):
                    c = run[run[column].notna()]
                    axes[i][j].plot(c["step"], c[column], color=COLOR[detached], lw=1, label=label)
                e = run[run["val_error"].notna()]
                axes[2][j].plot(e["step"], e["val_error"], color=COLOR[detached], lw=1, label=label)
        axes[0][j].set_title(PART_LABEL[part], fontsize=9)
        for i, (_, ylabel) in enumerate(ROWS):
            axes[i][j].set_ylabel(ylabel, fontsize=8)
        axes[2][j].set(xlabel="step", ylabel="test error (%)")
        axes[2][j].set_ylim(0, min(100, max(60, float(cur["val_error"].max() or 60))))
        axes[0][j].legend(fontsize=7)
    save_png(fig, out_png)


def table(pts: pd.DataFrame) -> pd.DataFrame:
    """Mean ± std over seeds per part and gradient."""
    rows = []
    for part in PARTS:
        for detached in (False, True):
            sel = pts[(pts["part"] == part) & (pts["detached"] == detached)]
            if sel.empty:
                continue
            rows.append(
                {
                    "setting": PART_LABEL[part],
                    "statistics": "detached" if detached else "in the gradient",
                    "seeds": len(sel),
                    "‖b‖ at T/2": mean_sd(sel["bias_half"]),
                    "‖b‖ at T": mean_sd(sel["bias_end"]),
                    "‖W‖ at 0": mean_sd(sel["weight_0"]),
                    "‖W‖ at T": mean_sd(sel["weight_end"]),
                    "test error (%)": mean_sd(sel["test_error"], ".4g"),
                }
            )
    return pd.DataFrame(rows)


def scale_lines(done: list[Run], pts: pd.DataFrame) -> list[str]:
    if pts.empty:
        return []
    steps = {
        p: int(pts[pts["part"] == p]["steps"].max()) for p in PARTS if (pts["part"] == p).any()
    }
    cfg = done[0].config
    return [
        *SCALE_HEADER,
        "| network | x = u + b, x̂ = x − E[x] (a thought experiment) | "
        + "; ".join(f"{PART_LABEL[p]}: {n:,} steps" for p, n in steps.items())
        + " |",
        f"| training | – | {cfg['dataset']['name']}, batch {cfg['dataset']['batch_size']}, plain "
        "SGD without weight decay (MLPs lr 0.5, VGG lr 0.02 momentum 0.9), "
        f"{pts['seed'].nunique()} seeds; error on the 10,000 test images |",
        "",
    ]


def runs_lines(runs: list[Run]) -> list[str]:
    rows = []
    for r in runs:
        s = setting_of(r)
        part, detached = s if s else ("?", False)
        grad = "detached" if detached else "attached"
        rows.append({"setting": f"{part} {grad}", "seed": r.seed, **run_cells(r, final_error=True)})
    return runs_section(
        runs,
        rows,
        ["setting", "seed"],
        "Per-run numbers: [detached_bias_points.csv](detached_bias_points.csv); the curves: "
        "[detached_bias_curves.csv](detached_bias_curves.csv); [runs.csv](runs.csv).",
    )


def detached_bias_report(runs: list[Run], out_dir: Path, scale: str) -> tuple[str, list[Claim]]:
    """README text (with the claims' mark) and the claims."""
    mine = [r for r in runs if setting_of(r) is not None]
    done = [r for r in mine if r.status == "complete"]
    cur = curves(mine)
    pts = points(done, cur)
    cur.to_csv(out_dir / "detached_bias_curves.csv", index=False, float_format="%.6g")
    pts.to_csv(out_dir / "detached_bias_points.csv", index=False, float_format="%.6g")
    if not cur.empty:
        figure(cur, out_dir / "detached_bias.png")
    claims = all_claims(pts, scale)
    lines = [
        "# The BN paper's §2 counter-example: a bias in front of a normalization whose statistics "
        "the gradient ignores\n",
        "Ioffe & Szegedy 2015, §2 (docs/papers.md §12): a layer computes x = u + b and subtracts "
        "E[x]. If the gradient step treats E[x] as a constant, b moves by −η Σ ∂ℓ/∂x̂ at every "
        "step while the layer's output, and so the loss, does not change: b grows without bound. "
        "With E[x] inside the gradient, ∂ℓ/∂b = 0. The paper adds that normalizing the variance "
        "the same way makes the model blow up. Here every weight layer keeps its bias "
        "(`model.bias_before_norm=true`) in front of mean-only BN without β (`norm=mean_batch "
        "norm.affine=false`, the paper's x̂ = x − E[x]; `norm.detached=true` for the constant "
        "mean) in sigmoid MLPs, and in front of full BN (`norm=batch` against "
        "`norm=batch_detached`) in VGG-16.\n",
        *chance_banner(runs),
        "![‖b‖, ‖W‖ and test error against steps](detached_bias.png)\n",
        "Norms over the weight layers in front of the norm slots (all but the classifier), from "
        "each run's params.csv (`probes.params`, every 100 steps); mean ± std over seeds.\n",
        md_table(table(pts)) if not pts.empty else "No complete runs yet.\n",
        CLAIMS_HERE,
        *scale_lines(done, pts),
        *runs_lines(mine),
    ]
    return "\n".join(lines) + "\n", claims
