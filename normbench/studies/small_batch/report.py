"""``normbench report`` for a small-batch study: figure, CSVs and README beside the GN paper.

The numbers come from :mod:`normbench.studies.small_batch.claims`; this module draws and writes them.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from normbench.report.collect import Run, runs_table  # noqa: E402
from normbench.report.commands import command_lines, dates_line, training_commands  # noqa: E402
from normbench.report.figures import save_png  # noqa: E402
from normbench.report.flags import (  # noqa: E402
    CHANCE_MARK,
    chance_banner,
    flag_lines,
    incomplete_lines,
)
from normbench.report.output import SCALE_HEADER  # noqa: E402
from normbench.report.output import md_table as _md  # noqa: E402
from normbench.report.papers import GN_PAPER  # noqa: E402
from normbench.studies.small_batch.claims import (  # noqa: E402
    GN_FLAT_TOL,
    LAST_EVALS,
    MIN_EFFECT,
    NORM_COLOR,
    NORM_LABEL,
    NORM_ORDER,
    comparison_table,
    curve,
    expand_independent,
    images_per_device,
    points,
    verdicts,
)


def _devices_text(modes: list[str], runs: list, batch: int) -> str:
    """How images per device were simulated, per ``per_device.mode`` (ghost or real)."""
    if modes != ["real"]:
        return (
            f"per_device.mode={'/'.join(modes)}: global batch {batch}, statistics over groups of "
            "N images (ghost batches), i.e. batch/N simulated devices"
        )
    devices = sorted({(r.config.get("per_device") or {}).get("devices", 1) for r in runs})
    d = "/".join(map(str, devices))
    return (
        f"per_device.mode=real with {d} simulated device(s) of N images: batch {d}·N, statistics "
        f"over groups of N, lr scaled by {d}·N/{batch} and steps and evaluation interval by "
        f"{batch}/({d}·N) from the reference batch {batch} (same epochs at every N)"
    )


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
            ax.plot(
                m["images"],
                m["mean"],
                "o",
                color=color,
                label=f"{label} ({seeds} seeds; run at N={', '.join(map(str, m['images']))}, same at every N)",
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


def _scale(runs: list[Run], pts: pd.DataFrame) -> list[str]:
    """The scale table: the paper's setup beside our runs' resolved configs."""
    cfg = runs[0].config
    setup, d, m, o, t = (
        GN_PAPER["setup"],
        cfg["dataset"],
        cfg["model"],
        cfg["optim"],
        cfg["trainer"],
    )
    groups = sorted(
        {r.config["norm"].get("num_groups") for r in runs if r.norm == "group"} - {None}
    )
    val = (
        f"{d.get('holdout_size')} images held out of the training set"
        if d.get("val_split") == "holdout"
        else f"the {d.get('val_split')} split"
    )
    modes = sorted({(r.config.get("per_device") or {}).get("mode", "ghost") for r in runs})
    epochs = pts["epochs"].dropna()
    params = sorted({r.summary.get("num_params") for r in runs if r.summary.get("num_params")})
    brn = next((r.config["norm"] for r in runs if r.norm == "batch_renorm"), None)
    rows = [
        (
            "data",
            setup["data"],
            f"{d['name']}, validation = {val}, augmentation "
            f"{'on' if d.get('augment') else 'off'}, standardized: {d.get('standardize')}",
        ),
        (
            "model",
            setup["model"],
            f"{m['name']}"
            + (f" width {m['width']}, {m.get('stem')} stem" if "width" in m else "")
            + f" ({', '.join(f'{p:,}' for p in params)} parameters)"
            + (f", GN with G = {groups[0]}" if groups else ""),
        ),
        (
            "devices",
            setup["devices"],
            f"one {runs[0].summary.get('environment', {}).get('device', '?')}; "
            + _devices_text(modes, runs, d["batch_size"]),
        ),
        (
            "optimizer",
            setup["optim"],
            f"SGD momentum {o['momentum']}, weight decay {o['weight_decay']} "
            f"(all parameters), lr {o['lr']}, {t['steps']} steps"
            + (f" ({epochs.min():.2f} epochs)" if len(epochs) else ""),
        ),
        (
            "schedule",
            "lr ÷10 at epochs 30, 60, 90 of 100",
            f"{o['schedule']}"
            + (
                f", ×{o['gamma']} at steps {list(o['milestones'])}"
                if o["schedule"] == "step"
                else ""
            ),
        ),
        (
            "init",
            setup["init"],
            "He init"
            + (
                f"; γ = 0 in each block's last norm: {m['zero_init_last_norm']}"
                if "zero_init_last_norm" in m
                else ""
            ),
        ),
        (
            "metric",
            setup["metric"],
            f"median val error of the last {LAST_EVALS} evaluations "
            f"(every {t['eval_every']} steps)",
        ),
        (
            "seeds",
            "1 run per setting",
            f"{pts['seed'].nunique()} ({', '.join(map(str, sorted(set(pts['seed']))))})",
        ),
    ]
    if brn:
        rows.append(
            (
                "BRN",
                "r_max 1.5, d_max 0.5 (tuned at 4/GPU)",
                f"r_max {brn['r_max']}, d_max {brn['d_max']}, plain BN for {brn['warmup_steps']} steps, "
                f"d_max reached at {brn['d_max_steps']}, r_max at {brn['r_max_steps']}, "
                f"running-estimate rate {brn['momentum']}",
            )
        )
    return [*SCALE_HEADER, *(f"| {a} | {b} | {c} |" for a, b, c in rows), ""]


def _runs_section(runs: list[Run], pts: pd.DataFrame, dirs: list[str], out_dir: Path) -> list[str]:
    done = [r for r in runs if r.status == "complete"]
    env = [r.summary.get("environment", {}) for r in runs if r.summary.get("environment")]
    hardware = sorted(
        {
            f"{e.get('device_name')} ({e.get('device')}, {e.get('cpu_count')} CPUs, "
            f"{e.get('threads')} thread(s) per run, torch {e.get('torch')})"
            for e in env
        }
    )
    revisions = sorted({str(e.get("git")) for e in env})
    code = (
        f"git {revisions[0]}"
        if len(revisions) == 1
        else f"{len(revisions)} git revisions ({', '.join(revisions)}): the checkout moved on while "
        "the runs were made"
    )
    dates = sorted(r.summary.get("finished_at", "") for r in done if r.summary.get("finished_at"))
    training = "Training (runs whose overrides differ only in N and seed share one command):"
    lines = [
        *command_lines(training, training_commands(runs), dirs, out_dir),
        "```\n",
        f"- Hardware: {'; '.join(hardware) or 'unknown'}; code: {code}",
        dates_line(done),
    ]
    table = runs_table(runs)
    if not table.empty:
        per = []
        for r in runs:
            s = r.summary
            per.append(
                {
                    "norm": NORM_LABEL.get(r.norm, r.norm),
                    "N": images_per_device(r),
                    "seed": r.seed,
                    "status": r.status + (f" {CHANCE_MARK}" if r.at_chance else ""),
                    "steps": f"{s.get('step', '?')}/{s.get('steps', '?')}",
                    "wall time (s)": f"{s['wall_time_s']:.0f}" if s.get("wall_time_s") else "–",
                    "train step (ms)": f"{s['ms_per_step']['train_step']:.0f}"
                    if s.get("ms_per_step", {}).get("train_step")
                    else "–",
                    "eval share": f"{100 * s['time_share']['eval']:.0f}%"
                    if s.get("time_share", {}).get("eval") is not None
                    else "–",
                }
            )
        per_df = pd.DataFrame(per).sort_values(["norm", "N", "seed"], ascending=[True, False, True])
        walls = [r.summary["wall_time_s"] for r in done if r.summary.get("wall_time_s")]
        starts = sorted(r.summary["started_at"] for r in done if r.summary.get("started_at"))
        span = ""
        if starts and dates:
            elapsed = datetime.fromisoformat(dates[-1]) - datetime.fromisoformat(starts[0])
            span = (
                f"; {elapsed.total_seconds() / 60:.0f} min from the first start to the last finish"
            )
        if walls:
            lines.append(
                f"Wall time per complete run: mean {sum(walls) / len(walls):.0f} s, "
                f"min {min(walls):.0f} s, max {max(walls):.0f} s, sum {sum(walls) / 60:.0f} min{span} "
                "(times include evaluation and vary with the load other processes put on the machine).\n"
            )
        lines += ["Every run:\n", _md(per_df)]
    lines += flag_lines(runs)
    lines += incomplete_lines(runs, "the figure and tables") or ["All runs complete."]
    lines += [
        "\nPer-run numbers: [small_batch_points.csv](small_batch_points.csv), [runs.csv](runs.csv).\n"
    ]
    return lines


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


def _in_short(cur: pd.DataFrame) -> list[str]:
    """One line: each norm's mean error at the largest and the smallest N."""
    parts = []
    for norm in [n for n in NORM_ORDER if n in set(cur["norm"])]:
        c = cur[cur["norm"] == norm].sort_values("images", ascending=False)
        if len(c) < 2:
            continue
        hi, lo = c.iloc[0], c.iloc[-1]
        same = "" if lo["measured"] else " (same computation)"
        parts.append(f"{NORM_LABEL[norm]} {hi['mean']:.1f} → {lo['mean']:.1f}{same}")
    if not parts:
        return []
    hi_n, lo_n = int(cur["images"].max()), int(cur["images"].min())
    return [f"**In short** (mean val error %, N = {hi_n} → {lo_n}): " + "; ".join(parts) + ".\n"]


BN_STATS = "bn_stats.csv"


def _bn_stats(out_dir: Path) -> list[str]:
    """The section on ``scripts/bn_stats_check.py``'s table, when ``bn_stats.csv`` is in ``out_dir``."""
    path = out_dir / BN_STATS
    if not path.is_file():
        return []
    table = pd.read_csv(path)
    groups = table.groupby(["norm", "images_per_device"])
    means = groups[["running", "precise", "batch"]].mean().map(lambda v: f"{100 * v:.1f}")
    means.insert(0, "seeds", groups.size())
    means = means.reset_index().sort_values(["norm", "images_per_device"], ascending=[True, False])
    means["norm"] = means["norm"].map(lambda n: NORM_LABEL.get(n, n))
    means.columns = [
        "norm",
        "N",
        "seeds",
        "running stats",
        "precise stats",
        "batch stats (groups of N)",
    ]
    images = int(table["precise_images"].max())
    when = ""
    if {"evaluated", "hardware"} <= set(table.columns):
        days = sorted({str(d)[:10] for d in table["evaluated"]})
        when = f" Evaluated {', '.join(days)} on {'; '.join(sorted(set(table['hardware'])))}."
    return [
        "## Where BN's penalty comes from: test-time statistics or learned weights\n",
        "The final weights of each run re-evaluated with its BN layers normalizing by (a) the running "
        "averages made in training (what the run reported; last evaluation, not the median of 5), "
        f"(b) population statistics recomputed over {images:,} training images with the weights frozen "
        "(Precise BN), (c) each validation batch's own statistics in groups of N (test = training "
        "conditions). When (b) ≈ (a), the running estimates are not the problem and the error at small "
        "N is in the weights learned under noisy statistics. Val error %, mean over seeds; per run: "
        f"[{BN_STATS}]({BN_STATS}); made by `scripts/bn_stats_check.py RUN_DIR... --images {images} "
        f"--out {out_dir}/{BN_STATS}`.{when}\n",
        _md(means),
        "",
    ]


def write_small_batch_report(runs: list[Run], dirs: list[str], out_dir: Path) -> str:
    """Figure, CSVs and README text of a small-batch study (unfinished runs are listed, not used)."""
    done = [r for r in runs if r.status == "complete"]
    raw = points(done)
    ns = sorted({n for n in raw["images"].dropna()}, reverse=True)
    pts = (
        expand_independent(raw, [int(n) for n in ns])
        if not raw.empty
        else raw.assign(measured=True)
    )
    cur = curve(pts)
    raw.to_csv(out_dir / "small_batch_points.csv", index=False, float_format="%.4f")
    cur.to_csv(out_dir / "small_batch_curve.csv", index=False, float_format="%.4f")
    figure(cur, out_dir / "small_batch.png")
    vs = verdicts(pts)
    seeds = pts["seed"].nunique()
    lines = [
        "# GroupNorm paper, Figure 1 / Table 2, at reduced scale: val error vs images per device\n",
        f"Paper: {GN_PAPER['paper']}. Reduced-scale reproduction made by normbench: see *Scale* for how it "
        "differs from the paper, and *Commands* for how to make it again.\n",
        "![val error vs images per device](small_batch.png)\n",
        *chance_banner(done),
        *_in_short(cur),
        *_short_training(raw),
        "## Val error (%) per norm and images per device N\n",
        f"Error = median validation error of a run's last {LAST_EVALS} evaluations (the paper: median of the "
        f"final 5 epochs). Ours: mean ± std over {seeds} seed(s). ≡: not run at this N; the number of the "
        "N it was run at, which is the same computation (see below). Paper: Table 2 (BN, GN), Table 1 "
        "(LN, IN at 32), §5.1 (BRN at 4). Plotted numbers: [small_batch_curve.csv](small_batch_curve.csv).\n",
        _md(comparison_table(cur, pts)),
        *_independence(raw),
        "",
        "## The paper's claims beside ours\n",
        f"Differences are paired by seed (same initialization and data order): mean ± standard error over "
        f"seeds. A difference counts (a rise, a gap) when it exceeds both twice its standard error and "
        f"{MIN_EFFECT} points; GN counts as flat within ±{GN_FLAT_TOL} (|mean| + 2 se).\n",
        "| claim (paper) | ours | verdict |",
        "|---|---|---|",
        *[f"| {v.claim} | {v.ours} | {v.verdict} |" for v in vs],
        "",
        *_bn_stats(out_dir),
        *_scale(done or runs, pts),
        *_runs_section(runs, pts, dirs, out_dir),
    ]
    return "\n".join(lines) + "\n"
