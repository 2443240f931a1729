"""The weightnorm_normprop README: figure (error against steps and against the runs' own time,
the extensions, batch 1, ResNet-50), the table of settings, claims, scale and runs."""

from __future__ import annotations

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
from normbench.studies.study import CLAIMS_HERE  # noqa: E402
from normbench.studies.weightnorm_normprop.claims import all_claims  # noqa: E402
from normbench.studies.weightnorm_normprop.points import (  # noqa: E402
    CHANCE,
    GROUPS,
    LABEL,
    curves,
    points,
    setting_of,
)

MAIN = ("cp_none", "cp_batch", "cp_weight", "cp_weight_mobn", "cp_normprop")
EXTENSIONS = tuple(s for s in LABEL if s.startswith("cp_weight") and s != "cp_weight_mobn")
BATCH_1 = tuple(s for s in LABEL if s.startswith("b1_"))
RESNET = tuple(s for s in LABEL if s.startswith("rn_"))
COLORS = plt.get_cmap("tab10").colors


def _mean_curve(cur: pd.DataFrame, setting: str, x: str) -> pd.DataFrame:
    sel = cur[cur["setting"] == setting]
    return sel.groupby("step", as_index=False)[[x, "test_error"]].mean() if len(sel) else sel


def _legend(ax) -> None:
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=6)


def _curves_panel(
    ax, cur: pd.DataFrame, settings: tuple[str, ...], x: str, title: str, top: float = 100
) -> None:
    for i, s in enumerate(settings):
        sel = cur[cur["setting"] == s] if not cur.empty else cur
        if sel.empty:
            continue
        color = COLORS[i % len(COLORS)]
        for _, g in sel.groupby("seed"):
            ax.plot(g[x], g["test_error"], color=color, lw=0.5, alpha=0.35)
        m = _mean_curve(cur, s, x)
        ax.plot(m[x], m["test_error"], color=color, lw=1.6, label=LABEL[s])
    ax.axhline(CHANCE, color="0.6", lw=0.6, ls=":")
    xlabel = "training step" if x == "step" else "the run's own training time (s)"
    ax.set(title=title, xlabel=xlabel, ylabel="test error (%)", ylim=(0, top))
    _legend(ax)


def _bars_panel(ax, pts: pd.DataFrame, settings: tuple[str, ...], title: str) -> None:
    shown = [s for s in settings if not pts.empty and (pts["setting"] == s).any()]
    for i, s in enumerate(shown):
        sel = pts[pts["setting"] == s]
        errs = sel["test_error"].dropna()
        ax.bar(i, errs.mean() if len(errs) else 0, color="0.85", edgecolor="0.4")
        ok = sel[sel["trained"]]
        bad = sel[~sel["trained"] & sel["test_error"].notna()]
        ax.plot([i] * len(ok), ok["test_error"], "o", color="tab:blue", ms=3)
        ax.plot([i] * len(bad), bad["test_error"], "x", color="tab:red", ms=5)
    ax.set_xticks(range(len(shown)), [LABEL[s] for s in shown], rotation=35, ha="right", fontsize=6)
    errs = pts[pts["setting"].isin(shown)]["test_error"].dropna() if shown else pd.Series([])
    top = min(100.0, float(errs.max()) * 1.15) if len(errs) else 100.0
    ax.set(title=title, ylabel="final test error (%)", ylim=(0, top))
    ax.plot([], [], "o", color="tab:blue", ms=3, label="a seed")
    ax.plot([], [], "x", color="tab:red", ms=5, label="diverged or at chance (counted as 90%)")
    _legend(ax)


def figure(pts: pd.DataFrame, cur: pd.DataFrame, out_png: Path) -> None:
    fig, axes = plt.subplots(2, 3, figsize=(16, 9.5))
    main = "ConvPool-CNN-C, batch 100:\nerror against "
    _curves_panel(axes[0][0], cur, MAIN, "step", main + "steps (y up to 40%)", top=40)
    _curves_panel(axes[0][1], cur, MAIN, "time_s", main + "training time (y up to 40%)", top=40)
    _bars_panel(axes[0][2], pts, EXTENSIONS, "WN: data init, extensions,\nlr × 10")
    _curves_panel(axes[1][0], cur, BATCH_1, "step", "ConvPool-CNN-C at batch size 1")
    _curves_panel(axes[1][1], cur, RESNET, "step", "ResNet-50 width 0.125, batch 64")
    _bars_panel(axes[1][2], pts, RESNET, "ResNet-50: what makes WN train")
    save_png(fig, out_png)


def _fmt(values: pd.Series, fmt: str = ".4g") -> str:
    values = values.dropna()
    return mean_sd(values, fmt) if len(values) else "–"


def table(pts: pd.DataFrame, runs: dict[str, int]) -> pd.DataFrame:
    rows = []
    for s, label in LABEL.items():
        sel = pts[pts["setting"] == s] if not pts.empty else pts
        if sel.empty and not runs.get(s):
            continue
        diverged = int((sel["status"] == "diverged").sum())
        failed = int((sel["status"] == "failed").sum())
        trained = sel[sel["trained"]]
        rows.append(
            {
                "group": GROUPS[s.split("_")[0]],
                "setting": f"{label} (`{s}`)",
                "trained / runs": f"{len(trained)} / {runs.get(s, len(sel))}"
                + (f", {diverged} diverged" if diverged else "")
                + (f", {failed} refused" if failed else ""),
                "final test error (%)": _fmt(sel["test_error"]),
                "at ¼ of the steps (%)": _fmt(sel["early_error"]),
                "ms / step": _fmt(sel["ms_step"], ".3g"),
                "wall time (s)": _fmt(sel["wall_s"], ".3g"),
            }
        )
    return pd.DataFrame(rows)


def runs_lines(runs: list[Run]) -> list[str]:
    rows = [
        {"setting": setting_of(r) or "?", "seed": r.seed, **run_cells(r, final_error=True)}
        for r in runs
    ]
    return runs_section(
        runs,
        rows,
        ["setting", "seed"],
        "Per-run numbers: [weightnorm_normprop_points.csv](weightnorm_normprop_points.csv); "
        "curves: [weightnorm_normprop_curves.csv](weightnorm_normprop_curves.csv); "
        "[runs.csv](runs.csv).",
    )


def _params(runs: list[Run], prefix: str) -> str:
    counts = sorted(
        {
            int(r.summary["num_params"])
            for r in runs
            if (setting_of(r) or "").startswith(prefix) and r.summary.get("num_params")
        }
    )
    return (
        " – ".join(f"{c:,}" for c in (counts[:1] + counts[-1:] if len(counts) > 1 else counts))
        or "–"
    )


def weightnorm_normprop_report(
    runs: list[Run], out_dir: Path, scale: str, rows: tuple[str, str, str]
) -> tuple[str, list[Claim]]:
    """README text (with the claims' mark) and the claims."""
    mine = [r for r in runs if setting_of(r) is not None]
    pts, cur = points(mine), curves(mine)
    pts.to_csv(out_dir / "weightnorm_normprop_points.csv", index=False, float_format="%.6g")
    cur.to_csv(out_dir / "weightnorm_normprop_curves.csv", index=False, float_format="%.6g")
    if not pts.empty:
        figure(pts, cur, out_dir / "weightnorm_normprop.png")
    counts: dict[str, int] = {}
    for r in mine:
        counts[setting_of(r)] = counts.get(setting_of(r), 0) + 1
    claims = all_claims(pts, scale)
    network, data, steps = rows
    lines = [
        "# Weight Normalization and Normalization Propagation against BN\n",
        "Salimans & Kingma 2016 (docs/papers.md §5) reparametrize each weight vector as "
        "w = g·v/‖v‖ and initialize g and b from one batch; Arpit et al. 2016 (§5.1) normalize the "
        "input once and propagate the normalization analytically (NormProp). Both avoid BN's "
        "batch statistics: they cost less per step and work at batch size 1. Here the WN paper's "
        "comparison at reduced scale, WN's data-dependent init and two extensions (log-scale "
        "gain g = exp(3s), and ‖v‖ ≤ 1 by projection), batch size 1, and WN in ResNet-50 (Gitman & "
        "Ginsburg 2017: it trails BN) with five changes tried one at a time.\n",
        *chance_banner(mine),
        "![error against steps and time; extensions; batch 1; ResNet-50](weightnorm_normprop.png)\n",
        "Thin lines: one seed; thick: the mean over seeds. A run that diverged (the trainer "
        "stops it at a non-finite loss) or ended at chance counts as 90% error in the table "
        "and the claims. Time is each run's own training time (two runs at a time on 2 cores, so "
        "per-step costs are better read from [results/bench/convpool](../bench/convpool/README.md), timed interleaved by `normbench bench train --model convpool`).\n",
        md_table(table(pts, counts)) if not pts.empty else "No finished runs yet.\n",
        CLAIMS_HERE,
        *SCALE_HEADER,
        f"| networks | ConvPool-CNN-C (9 conv + 1 dense, 96/192 channels, 1,406,794 parameters "
        f"on CIFAR-10); ResNet-50 on ImageNet (Gitman & Ginsburg) | {network} "
        f"(ConvPool-CNN-C: {_params(mine, 'cp')} parameters; ResNet-50: {_params(mine, 'rn')}) |",
        f"| data | CIFAR-10, no augmentation; ImageNet | {data} |",
        f"| training | Adam lr 0.003, batch 100, 200 epochs, linear decay over the last 100 | {steps} |",
        "",
        *runs_lines(mine),
    ]
    return "\n".join(lines) + "\n", claims
