"""The inference-batch README: figure, error tables against b, the b = 1 table (training-mode
against eval-mode forward), scale and runs. Numbers from :mod:`.points`, verdicts from
:mod:`.claims`."""

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
from normbench.report.output import SCALE_HEADER, md_table  # noqa: E402
from normbench.report.verdicts import Claim, judge_difference, paired  # noqa: E402
from normbench.studies.inference_batch.claims import BENCH_CSV, Setting, all_claims, effect  # noqa: E402
from normbench.studies.inference_batch.points import (  # noqa: E402
    MODE_LABEL,
    NORM_COLOR,
    by_seed,
    cell,
    curve,
    images_of,
    label,
    ordered,
    points,
)
from normbench.studies.study import CLAIMS_HERE  # noqa: E402


def setting(done: list[Run], pts: pd.DataFrame, split: str | None) -> Setting:
    """The claims' scale line and the images behind each error."""
    if not done:
        return Setting("no complete runs", None)
    cfg, images = done[0].config, images_of(pts)
    m, data = cfg["model"], cfg["dataset"]
    steps = sorted({int(r.summary.get("steps") or r.summary.get("step") or 0) for r in done})
    where = "test images" if split == "test" else "held-out images"
    scale = (
        f"{data['name']} ({images or '?':,} {where}), {m['name']}"
        + (f" width {m['width']}" if "width" in m else "")
        + f", {steps[-1]:,} steps of {data['batch_size']}, {len({r.seed for r in done})} seeds"
    )
    return Setting(scale, images)


def figure(cur: pd.DataFrame, out_png: Path) -> None:
    """Error against b: eval mode (solid) and test-batch statistics (dashed), per norm."""
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for norm in ordered(set(cur["norm"])):
        for mode, style in (("running", "o-"), ("batch", "s--")):
            c = cur[(cur["norm"] == norm) & (cur["mode"] == mode) & cur["applied"]]
            c = c.dropna(subset=["mean"]).sort_values("b")
            if c.empty:
                continue
            name = f"{label(norm)}, {'eval mode' if mode == 'running' else 'test-batch stats'}"
            ax.plot(c["b"], c["mean"], style, color=NORM_COLOR.get(norm), label=name)
            ax.fill_between(c["b"], c["min"], c["max"], color=NORM_COLOR.get(norm), alpha=0.15)
    ax.set_xscale("log", base=2)
    ticks = sorted(set(cur["b"]))
    ax.set_xticks(ticks, [str(t) for t in ticks])
    ax.minorticks_off()
    ax.set(xlabel="evaluation batch size b", ylabel="error (%)", title="error against b")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    save_png(fig, out_png)


def error_table(cur: pd.DataFrame) -> pd.DataFrame:
    """Mean ± std over seeds per (norm, mode) × b; 'undefined' and 'not applied' spelled out."""
    rows = []
    bs = sorted(set(cur["b"]))
    for norm in ordered(set(cur["norm"])):
        for mode in ("running", "batch"):
            c = cur[(cur["norm"] == norm) & (cur["mode"] == mode)]
            if c.empty:
                continue
            row = {"norm": label(norm), "mode": MODE_LABEL[mode]}
            for b in bs:
                x = c[c["b"] == b]
                if x.empty:
                    row[str(b)] = "–"
                elif not bool(x["applied"].iloc[0]):
                    row[str(b)] = "not applied"
                elif x["undefined"].iloc[0] and not x["seeds"].iloc[0]:
                    row[str(b)] = "undefined"
                else:
                    row[str(b)] = f"{x['mean'].iloc[0]:.2f} ± {x['std'].iloc[0]:.2f}"
            rows.append(row)
    return pd.DataFrame(rows)


def b1_table(pts: pd.DataFrame, s: Setting) -> pd.DataFrame:
    """At b = 1, per norm: eval mode, test-batch statistics (the training-mode forward of BN),
    their difference paired by seed, and whether the two are the same function."""
    rows = []
    for norm in ordered(set(pts["norm"])):
        run_b1 = by_seed(pts, norm, "running", 1)
        bat = cell(pts, norm, "batch", 1)
        if not run_b1 and bat.empty:
            continue
        dependent = bool(pts[pts["norm"] == norm]["dependent"].iloc[0])
        ev = _mean_text(run_b1)
        if bat.empty:
            tb, diff, same = "–", "–", "not evaluated"
        elif (bat["status"] == "undefined").all():
            tb = "undefined"
            diff = "–"
            same = f"no: training-mode BN is undefined at b = 1 ({bat['note'].iloc[0]})"
        else:
            tb_seeds = by_seed(pts, norm, "batch", 1)
            d = paired(run_b1, tb_seeds)
            tb, diff = _mean_text(tb_seeds), d.text()
            if not bool(bat["applied"].all()) and not dependent:
                common = [k for k in run_b1 if k in tb_seeds]
                exact = bool(common) and all(run_b1[k] == tb_seeds[k] for k in common)
                same = (
                    "yes, by construction: no batch statistics, its training forward is its "
                    "eval forward (eval records mode=batch as not applied)"
                    + ("; measured: the same error" if exact else "")
                )
            else:
                m = effect(pts, s, (norm, "running", 1), (norm, "batch", 1))
                verdict = judge_difference(d, +1, m)
                same = f"no: test-batch − eval mode > 0 {verdict}" if d.n else "–"
        rows.append(
            {
                "norm": label(norm),
                "eval mode, b = 1": ev,
                "test-batch statistics, b = 1": tb,
                "difference (paired by seed)": diff,
                "same in training and test at b = 1?": same,
            }
        )
    return pd.DataFrame(rows)


def _mean_text(values: dict[int, float]) -> str:
    if not values:
        return "–"
    xs = list(values.values())
    mean = sum(xs) / len(xs)
    sd = math.sqrt(sum((x - mean) ** 2 for x in xs) / (len(xs) - 1)) if len(xs) > 1 else 0.0
    return f"{mean:.2f} ± {sd:.2f} (n = {len(xs)})"


def scale_lines(done: list[Run], split: str | None) -> list[str]:
    """How our runs differ from the papers' setting."""
    if not done:
        return []
    cfg = done[0].config
    m, data, opt = cfg["model"], cfg["dataset"], cfg.get("optim") or {}
    steps = max(int(r.summary.get("steps") or r.summary.get("step") or 0) for r in done)
    model = m["name"] + (f" width {m['width']}, {m.get('stem', '')} stem" if "width" in m else "")
    if m.get("hidden"):
        model += f" {'-'.join(map(str, m['hidden']))}, {m.get('activation', '')}"
    where = (
        "the 10,000 test images"
        if split == "test"
        else f"{data.get('holdout_size')} held-out training images"
    )
    return [
        *SCALE_HEADER,
        f"| data | ImageNet | {data['name']} ({where} for every evaluation) |",
        f"| model | ResNet-50 / Inception (CNNs) | {model} |",
        f"| training | to convergence | {steps:,} steps of {data['batch_size']}, "
        f"{opt.get('name', '?')} lr {opt.get('lr', '?')}, {len({r.seed for r in done})} seeds |",
        "| evaluation batch b | 1 (deployment) against the training batch | "
        f"{', '.join(map(str, sorted({1, 2, 4, 8, 16, 32, 64, 128, 256})))}; test batches in a "
        "fixed random order (i.i.d.) |",
        "",
    ]


def runs_lines(runs: list[Run]) -> list[str]:
    """Every run with its status, steps, final validation error and wall time."""
    rows = [
        {
            "norm": label(r.norm),
            "seed": r.seed,
            **run_cells(r, final_error=True),
        }
        for r in runs
    ]
    return runs_section(
        runs,
        rows,
        ["norm", "seed"],
        "Per-evaluation numbers: [inference_batch_points.csv](inference_batch_points.csv); "
        "means: [inference_batch_curve.csv](inference_batch_curve.csv); [runs.csv](runs.csv).",
        "the tables and claims",
    )


def inference_batch_report(
    runs: list[Run], out_dir: Path, split: str | None, bench: Path = BENCH_CSV
) -> tuple[str, list[Claim]]:
    """README text (with the claims' mark) and the claims of an inference-batch sweep."""
    done = [r for r in runs if r.status == "complete"]
    pts = points(done, split)
    cur = curve(pts)
    pts.to_csv(out_dir / "inference_batch_points.csv", index=False, float_format="%.4f")
    cur.to_csv(out_dir / "inference_batch_curve.csv", index=False, float_format="%.4f")
    s = setting(done, pts, split)
    if not cur.empty:
        figure(cur, out_dir / "inference_batch.png")
    claims = all_claims(pts, s, bench)
    images = images_of(pts)
    b1 = b1_table(pts, s)
    lines = [
        "# Inference at small batch sizes: error against the evaluation batch size b\n",
        "Facts of docs/papers.md §11 (eval-mode BN does not depend on the batch and folds into "
        "the layer before it; train-mode BN at b = 1 is undefined without spatial extent; "
        "batch-independent norms compute the same thing at any b), measured by normbench on "
        "its own runs: see *Scale* for how they differ from the papers' setting.\n",
        "![error against b](inference_batch.png)\n",
        *chance_banner(done),
        "## Error (%) against the evaluation batch size b\n",
        f"Each run evaluated on the same {images or '?':,} images at every b "
        "(`normbench eval RUN mode=running|batch batch_size=b`). Eval mode: the running "
        "statistics (what a deployed BN model uses). Test-batch statistics: each batch of b test "
        "images normalized by its own statistics (prediction-time BN; the test images in a fixed "
        "random order, so each batch is i.i.d.; BRN then uses plain batch statistics, r = 1, "
        "d = 0). *undefined*: a batch statistic of one value per channel (`normbench eval` "
        "records it, it does not fail). *not applied*: the norm has no batch statistics. Mean ± "
        "std over seeds.\n",
        md_table(error_table(cur)) if not cur.empty else "No evaluations yet.\n",
        "## At b = 1: the same in training and in test?\n",
        "The training-mode forward of a BN-type layer normalizes by the batch's statistics: at "
        "b = 1, that is the *test-batch statistics* column; eval mode is what the model uses "
        "once deployed. A norm without batch statistics runs the same function in both: *by "
        "construction* (the code makes it certain; eval records its mode=batch row as not "
        "applied and gives the eval-mode result). Difference: test-batch − eval mode, paired by "
        "seed, ± the 95% interval.\n",
        md_table(b1) if not b1.empty else "No evaluation at b = 1 yet.\n",
        CLAIMS_HERE,
        *scale_lines(done, split),
        *runs_lines(runs),
    ]
    return "\n".join(lines) + "\n", claims
