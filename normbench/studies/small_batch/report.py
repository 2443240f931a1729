"""The small-batch README (main study, ``long`` and ``real``): figure, tables, claims, scale.

The numbers come from :mod:`.points` (per run) and :mod:`.claims` (the verdicts); this module
draws and writes them.
"""

from __future__ import annotations

import math
from datetime import datetime
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from normbench.report.collect import Run  # noqa: E402
from normbench.report.commands import dates_line  # noqa: E402
from normbench.report.figures import save_png  # noqa: E402
from normbench.report.flags import chance_banner, flag_lines, incomplete_lines, run_cells  # noqa: E402
from normbench.report.output import md_table  # noqa: E402
from normbench.report.papers import GN_PAPER  # noqa: E402
from normbench.report.verdicts import Claim, estimate  # noqa: E402
from normbench.studies.small_batch.bn_stats import bn_stats_lines  # noqa: E402
from normbench.studies.small_batch.claims import Setting, all_claims  # noqa: E402
from normbench.studies.small_batch.points import (  # noqa: E402
    LAST_EVALS,
    NORM_COLOR,
    NORM_LABEL,
    NORM_ORDER,
    curve,
    expand_independent,
    images_of_test_split,
    images_per_device,
    points,
)
from normbench.studies.small_batch.scale import scale_lines  # noqa: E402
from normbench.studies.study import CLAIMS_HERE  # noqa: E402


def devices_text(runs: list[Run]) -> str:
    """How images per device were made, per ``per_device.mode`` (ghost or real)."""
    modes = sorted({(r.config.get("per_device") or {}).get("mode", "ghost") for r in runs})
    batch = runs[0].config["dataset"]["batch_size"]
    if modes != ["real"]:
        return (
            f"per_device.mode={'/'.join(modes)}: global batch {batch}, statistics over groups of "
            "N images (ghost batches), i.e. batch/N simulated devices"
        )
    d = "/".join(
        map(str, sorted({(r.config.get("per_device") or {}).get("devices", 1) for r in runs}))
    )
    return (
        f"per_device.mode=real with {d} simulated device(s) of N images: batch {d}·N, statistics "
        f"over groups of N, lr scaled by {d}·N/{batch} and steps and evaluation interval by "
        f"{batch}/({d}·N) from the reference batch {batch} (same epochs at every N)"
    )


def held_fixed(pts: pd.DataFrame) -> str:
    """What a comparison across N holds fixed, in words (ghost: batch and steps; real: epochs)."""
    if pts.empty:
        return "–"
    by_n = pts.groupby("images").agg(
        steps=("steps", "max"), batch=("batch", "max"), epochs=("epochs", "max")
    )
    top, small = by_n.loc[by_n.index.max()], by_n.loc[by_n.index.min()]
    if set(pts["mode"]) == {"ghost"}:
        return (
            f"the batch ({int(top['batch'])} images per step) and the steps ({int(top['steps']):,}) "
            "fixed: only the images each BN statistic spans change"
        )
    return (
        f"the epochs ({top['epochs']:.2g}) fixed, not the steps: N = {by_n.index.max()} trains "
        f"{int(top['steps']):,} steps of {int(top['batch'])} images, N = {by_n.index.min()} "
        f"{int(small['steps']):,} steps of {int(small['batch'])} (lr scaled with the batch)"
    )


def setting(done: list[Run], pts: pd.DataFrame) -> Setting:
    """The claims' scale line, test images and what the comparisons across N hold fixed."""
    if not done:
        return Setting("no complete runs", None, "–")
    cfg, images = done[0].config, images_of_test_split(done[0])
    m = cfg["model"]
    ns = ", ".join(map(str, sorted({int(n) for n in pts["images"].dropna()}, reverse=True)))
    steps = sorted({int(s) for s in pts["steps"].dropna()})
    span = f"{steps[0]:,}" if len(steps) == 1 else f"{steps[0]:,}–{steps[-1]:,}"
    scale = (
        f"{cfg['dataset']['name']} ({images or '?':,} test images), {m['name']}"
        + (f" width {m['width']}" if "width" in m else "")
        + f", per_device.mode={'/'.join(sorted(set(pts['mode'])))}, N = {ns}, {span} steps "
        f"({pts['epochs'].max():.2g} epochs), {pts['seed'].nunique()} seeds"
    )
    return Setting(scale, images, held_fixed(pts))


def figure(cur: pd.DataFrame, out_png: Path) -> None:
    """Left: ours (mean line, min–max band over seeds); right: the paper's numbers."""
    fig, (ax, axp) = plt.subplots(1, 2, figsize=(11, 4.2))
    norms = [n for n in NORM_ORDER if n in set(cur["norm"])] + sorted(
        set(cur["norm"]) - set(NORM_ORDER)
    )
    for norm in norms:
        c = cur[cur["norm"] == norm].sort_values("images", ascending=False)
        color, label = NORM_COLOR.get(norm), NORM_LABEL.get(norm, norm)
        seeds = int(c["seeds"].max())
        if c["measured"].all():
            ax.plot(c["images"], c["mean"], "o-", color=color, label=f"{label} ({seeds} seeds)")
        else:
            m = c[c["measured"]]
            ax.plot(c["images"], c["mean"], "--", color=color, alpha=0.7)
            ran = ", ".join(map(str, m["images"]))
            ax.plot(
                m["images"],
                m["mean"],
                "o",
                color=color,
                label=f"{label} ({seeds} seeds; run at N={ran}, same at every N)",
            )
        ax.fill_between(c["images"], c["min"], c["max"], color=color, alpha=0.2, linewidth=0)
    for norm, values in GN_PAPER["table2"].items():
        xs = sorted(values, reverse=True)
        axp.plot(xs, [values[x] for x in xs], "o-", color=NORM_COLOR[norm], label=NORM_LABEL[norm])
    for norm in ("layer", "instance"):
        axp.plot(
            [32],
            [GN_PAPER["table1"][norm]],
            "s",
            color=NORM_COLOR[norm],
            label=f"{NORM_LABEL[norm]} (32 only)",
        )
    for n, v in GN_PAPER["batch_renorm"].items():
        axp.plot([n], [v], "D", color=NORM_COLOR["batch_renorm"], label=f"BRN ({n} only)")
    ticks = sorted(set(cur["images"]) | {32, 16, 8, 4, 2}, reverse=True)
    for a, title in (
        (ax, "ours (band: min–max over seeds)"),
        (axp, "paper: ResNet-50, ImageNet, 8 GPUs"),
    ):
        a.set_xscale("log", base=2)
        a.set_xticks(ticks, [str(t) for t in ticks])
        a.minorticks_off()
        a.set_xlim(max(ticks) * 1.3, min(ticks) / 1.3)  # 32 on the left, as in the paper
        a.set(xlabel="images per device (N)", ylabel="val error (%)", title=title)
        if a.get_legend_handles_labels()[0]:
            a.legend(fontsize=7)
    save_png(fig, out_png)


def comparison_table(
    cur: pd.DataFrame, pts: pd.DataFrame, column: str, paper: bool
) -> pd.DataFrame:
    """Ours (and, with ``paper``, the paper's) error per norm × N, and GN − BN paired by seed."""
    ns = sorted(set(cur["images"]), reverse=True)
    rows = []
    for norm in [n for n in NORM_ORDER if n in set(cur["norm"])]:
        if paper:
            values = GN_PAPER["table2"].get(norm) or (
                {32: GN_PAPER["table1"][norm]}
                if norm in GN_PAPER["table1"]
                else GN_PAPER.get(norm, {})
            )
            rows.append(
                {"": f"{NORM_LABEL[norm]}, paper", **{str(n): _num(values.get(n)) for n in ns}}
            )
        row = {"": f"{NORM_LABEL[norm]}, ours"}
        for n in ns:
            c = cur[(cur["norm"] == norm) & (cur["images"] == n)]
            ok = not c.empty and math.isfinite(c.iloc[0]["mean"])
            row[str(n)] = (
                f"{c.iloc[0]['mean']:.2f} ± {c.iloc[0]['std']:.2f}"
                + ("" if c.iloc[0]["measured"] else " ≡")
                if ok
                else "–"
            )
        rows.append(row)
    if {"batch", "group"} <= set(cur["norm"]):
        t2 = GN_PAPER["table2"]
        if paper:
            rows.append(
                {
                    "": "GN − BN, paper",
                    **{
                        str(n): _num(
                            t2["group"].get(n, math.nan) - t2["batch"].get(n, math.nan), True
                        )
                        for n in ns
                    },
                }
            )
        diffs = {}
        for n in ns:
            sel = pts[pts["images"] == n].pivot_table(index="seed", columns="norm", values=column)
            both = (
                sel[["batch", "group"]].dropna()
                if {"batch", "group"} <= set(sel.columns)
                else sel.iloc[0:0]
            )
            diffs[str(n)] = estimate(both["group"] - both["batch"]).text() if len(both) else "–"
        rows.append({"": "GN − BN, ours (paired by seed, ± 95% interval)", **diffs})
    return pd.DataFrame(rows)


def _num(v: float | None, signed: bool = False) -> str:
    if v is None or not math.isfinite(v):
        return "–"
    return f"{v:+.1f}" if signed else f"{v:.1f}"


def _independence(pts: pd.DataFrame) -> list[str]:
    """How N-independent norms were handled: checked where run at several N, filled otherwise."""
    lines = []
    for norm, g in pts[pts["independent"].astype(bool)].groupby("norm"):
        ns = sorted(set(g["images"]), reverse=True)
        label = NORM_LABEL.get(norm, norm)
        if len(ns) == 1:
            lines.append(
                f"- {label}: run at N={ns[0]} only; its numbers stand for every N (≡ in the table, "
                "dashed in the figure): in ghost mode it uses no other image, and nothing else in "
                "the run depends on N."
            )
        else:
            spread = g.groupby("seed")["error"].agg(lambda e: e.max() - e.min()).max()
            lines.append(
                f"- {label}: run at N = {', '.join(map(str, ns))}; largest difference between N "
                f"for the same seed: {spread:.3f} points (0 expected in ghost mode)."
            )
    return lines


def _in_short(cur: pd.DataFrame) -> list[str]:
    """One line: each norm's mean test error at the largest and the smallest N."""
    parts = []
    for norm in [n for n in NORM_ORDER if n in set(cur["norm"])]:
        c = cur[cur["norm"] == norm].sort_values("images", ascending=False).dropna(subset=["mean"])
        if len(c) >= 2:
            same = "" if c.iloc[-1]["measured"] else " (same computation)"
            parts.append(
                f"{NORM_LABEL[norm]} {c.iloc[0]['mean']:.1f} → {c.iloc[-1]['mean']:.1f}{same}"
            )
    if not parts:
        return []
    hi, lo = int(cur["images"].max()), int(cur["images"].min())
    return [f"**In short** (mean test error %, N = {hi} → {lo}): " + "; ".join(parts) + ".\n"]


def _short_training(raw: pd.DataFrame) -> list[str]:
    """A caveat when the runs are far shorter than the paper's 100 epochs."""
    epochs = raw["epochs"].dropna()
    if epochs.empty or epochs.max() >= 10:
        return []
    return [
        f"These runs train for {epochs.max():.2g} epoch(s), not 100: every model is far from "
        "converged. What depends on the batch statistics (BN and BRN against N) is measured as it "
        "stands at that point; gaps between norms at large N mostly say how fast each trains "
        "early, not where it would end.\n"
    ]


def runs_lines(
    runs: list[Run], left_out: list[str], points_file: str = "small_batch_points.csv"
) -> list[str]:
    """Hardware, dates, wall time, and every run with its status (with its per_device.mode
    where the runs have several); ``points_file``: the per-run CSV the report wrote."""
    done = [r for r in runs if r.status == "complete"]
    env = [r.summary.get("environment", {}) for r in runs if r.summary.get("environment")]
    hardware = sorted(
        {
            f"{e.get('device_name')} ({e.get('device')}, {e.get('cpu_count')} CPUs, "
            f"{e.get('threads')} thread(s) per run, torch {e.get('torch')})"
            for e in env
        }
    )
    lines = [
        "## Runs, hardware, time\n",
        f"- Hardware: {'; '.join(hardware) or 'unknown'}",
        dates_line(done),
    ]
    walls = [r.summary["wall_time_s"] for r in done if r.summary.get("wall_time_s")]
    starts = sorted(r.summary["started_at"] for r in done if r.summary.get("started_at"))
    ends = sorted(r.summary["finished_at"] for r in done if r.summary.get("finished_at"))
    if walls:
        span = ""
        if starts and ends:
            minutes = (
                datetime.fromisoformat(ends[-1]) - datetime.fromisoformat(starts[0])
            ).total_seconds() / 60
            span = f"; {minutes:.0f} min from the first start to the last finish"
        lines.append(
            f"Wall time per complete run: mean {sum(walls) / len(walls):.0f} s, min {min(walls):.0f} s, "
            f"max {max(walls):.0f} s, sum {sum(walls) / 60:.0f} min{span} (training only; they vary "
            "with the load other processes put on the machine).\n"
        )
    modes = {(r.config.get("per_device") or {}).get("mode") for r in runs}
    per = [
        {
            "norm": NORM_LABEL.get(r.norm, r.norm),
            "N": images_per_device(r),
            "seed": r.seed,
            **({"mode": (r.config.get("per_device") or {}).get("mode")} if len(modes) > 1 else {}),
            **run_cells(r),
        }
        for r in runs
    ]
    if per:
        keys = ["norm", "N", "seed", *(["mode"] if len(modes) > 1 else [])]
        table = pd.DataFrame(per).sort_values(
            keys, ascending=[True, False, True, True][: len(keys)]
        )
        lines += ["Every run:\n", md_table(table)]
    lines += flag_lines(runs)
    lines += incomplete_lines(runs, "the figure, tables and claims") or ["All runs complete."]
    if left_out:
        lines += ["\nRuns of another setting, left out of this report:\n", *left_out]
    lines += [f"\nPer-run numbers: [{points_file}]({points_file}), [runs.csv](runs.csv).\n"]
    return lines


def small_batch_report(
    runs: list[Run], out_dir: Path, left_out: list[str]
) -> tuple[str, list[Claim]]:
    """README text (before the claims table) and the claims of a small-batch sweep."""
    done = [r for r in runs if r.status == "complete"]
    raw = points(done)
    ns = sorted({int(n) for n in raw["images"].dropna()}, reverse=True)
    pts = expand_independent(raw, ns) if not raw.empty else raw.assign(measured=True)
    cur, cur_test = curve(pts, "error"), curve(pts, "test_error")
    raw.to_csv(out_dir / "small_batch_points.csv", index=False, float_format="%.4f")
    cur.to_csv(out_dir / "small_batch_curve.csv", index=False, float_format="%.4f")
    cur_test.to_csv(out_dir / "small_batch_test_curve.csv", index=False, float_format="%.4f")
    if not cur.empty:
        figure(cur, out_dir / "small_batch.png")
    claims = all_claims(pts, setting(done, raw))
    seeds = raw["seed"].nunique()
    lines = [
        "# GroupNorm paper, Figure 1 / Table 2, at reduced scale: error vs images per device\n",
        f"Paper: {GN_PAPER['paper']}. Reduced-scale reproduction made by normbench: see *Scale* for "
        "how it differs from the paper, and *How this was made* for the command.\n",
        "![val error vs images per device](small_batch.png)\n",
        *chance_banner(done),
        *_in_short(cur_test),
        *_short_training(raw),
        "## Val error (%) per norm and images per device N: the paper-like number\n",
        f"Error = median validation error of a run's last {LAST_EVALS} evaluations on the held-out "
        f"images (the paper: median of the final 5 epochs). Ours: mean ± std over {seeds} seed(s). "
        "≡: not run at this N; the number of the N it was run at, which is the same computation "
        "(see below). Paper: Table 2 (BN, GN), Table 1 (LN, IN at 32), §5.1 (BRN at 4). Plotted: "
        "[small_batch_curve.csv](small_batch_curve.csv).\n",
        md_table(comparison_table(cur, pts, "error", paper=True)),
        *_independence(raw),
        "",
        "## Test error (%) of the final weights: the claims' number\n",
        "Error of each run's final weights on the 10,000 test images (running statistics), from the "
        "study's `test` phase (`normbench eval RUN mode=running data.val_split=test`); ten times the "
        "images of the held-out split, so a third of its binomial noise. Mean ± std over seeds: "
        "[small_batch_test_curve.csv](small_batch_test_curve.csv).\n",
        md_table(comparison_table(cur_test, pts, "test_error", paper=False)),
        CLAIMS_HERE,
        *bn_stats_lines(done, out_dir),
        *scale_lines(done or runs, raw, devices_text(done or runs)),
        *runs_lines(runs, left_out),
    ]
    return "\n".join(lines) + "\n", claims
