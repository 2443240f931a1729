"""The online study's README: figure, tables (error, change against the fixed batch, stability,
skipped batches), claims and runs. The numbers come from :mod:`.points` and :mod:`.claims`."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from normbench.report.collect import Run  # noqa: E402
from normbench.report.figures import save_png  # noqa: E402
from normbench.report.flags import chance_banner, flag_lines, incomplete_lines, run_cells  # noqa: E402
from normbench.report.output import md_table  # noqa: E402
from normbench.report.verdicts import Claim, estimate  # noqa: E402
from normbench.studies.online.claims import Setting, all_claims  # noqa: E402
from normbench.studies.online.points import (  # noqa: E402
    NORM_COLOR,
    NORM_LABEL,
    by_seed,
    label,
    norms_of,
    points,
    reference,
    settings,
    sizes_of,
)
from normbench.studies.small_batch.points import images_of_test_split  # noqa: E402
from normbench.studies.study import CLAIMS_HERE  # noqa: E402

SETTING_STYLE = ("-", "--", ":", "-.")


def model_text(run: Run) -> str:
    """The model in words, from the run's config."""
    m = run.config.get("model") or {}
    if m.get("name") == "mlp":
        widths = "-".join(str(w) for w in m.get("hidden", []))
        return f"MLP {widths} ({m.get('activation', '?')}; FRN's TLU replaces it)"
    width = f" width {m['width']}" if "width" in m else ""
    return f"{m.get('name', '?')}{width}" + (f", {m['stem']} stem" if "stem" in m else "")


def setting_of(done: list[Run], pts: pd.DataFrame) -> Setting:
    """The claims' scale line, test images, model kind and lr rule."""
    if not done or pts.empty:
        return Setting("no complete runs", None, False)
    cfg = done[0].config
    images = pd.to_numeric(pts["images"], errors="coerce")
    rules = sorted(set(pts["lr_scaling"]))
    scale = (
        f"{cfg['dataset']['name']} ({images_of_test_split(done[0]) or '?':,} test images), "
        f"{model_text(done[0])}, about {images.mean():,.0f} images per run "
        f"({pts['epochs'].max():.2g} epochs), lr_scaling={'/'.join(rules)}, "
        f"{pts['seed'].nunique()} seeds"
    )
    mlp = (cfg.get("model") or {}).get("name") == "mlp"
    return Setting(scale, images_of_test_split(done[0]), mlp, "/".join(rules))


def cell(values: list[float], digits: int = 2) -> str:
    """``mean ± sd (n)`` over seeds."""
    xs = [v for v in values if math.isfinite(v)]
    if not xs:
        return "–"
    sd = pd.Series(xs).std() if len(xs) > 1 else 0.0
    return f"{sum(xs) / len(xs):.{digits}f} ± {sd:.{digits}f} ({len(xs)})"


def error_table(pts: pd.DataFrame, column: str = "test_error") -> pd.DataFrame:
    """Mean ± sd (seeds) of ``column`` per norm × setting."""
    rows = []
    for norm in norms_of(pts):
        row = {"norm": NORM_LABEL.get(norm, norm)}
        for sizes in settings(pts):
            row[label(*sizes)] = cell(list(by_seed(pts, norm, sizes, column).values()))
        rows.append(row)
    return pd.DataFrame(rows)


def change_table(pts: pd.DataFrame) -> pd.DataFrame:
    """Each norm's error under each online setting minus its fixed-batch error, paired by seed."""
    ref = reference(pts)
    online = [p for p in settings(pts) if p != ref]
    rows = []
    for norm in norms_of(pts):
        row = {"norm": NORM_LABEL.get(norm, norm)}
        for sizes in online:
            if ref is None:
                row[f"{label(*sizes)} − fixed"] = "–"
                continue
            a, b = by_seed(pts, norm, ref), by_seed(pts, norm, sizes)
            d = estimate(b[k] - a[k] for k in a if k in b)
            row[f"{label(*sizes)} − {label(*ref)}"] = d.text() if d.n else "–"
        rows.append(row)
    return pd.DataFrame(rows)


def stability_table(pts: pd.DataFrame) -> pd.DataFrame:
    """Largest loss spike (mean and max over seeds) and final training loss per norm × setting."""
    rows = []
    for norm in norms_of(pts):
        for sizes in settings(pts):
            spikes = list(by_seed(pts, norm, sizes, "spike").values())
            final = list(by_seed(pts, norm, sizes, "final_loss").values())
            if not spikes and not final:
                continue
            rows.append(
                {
                    "norm": NORM_LABEL.get(norm, norm),
                    "setting": label(*sizes),
                    "largest loss spike (nats), mean ± sd (n)": cell(spikes, 3),
                    "worst seed": f"{max(spikes):.3f}" if spikes else "–",
                    "final training loss": cell(final, 3),
                }
            )
    return pd.DataFrame(rows)


def skipped_table(pts: pd.DataFrame) -> pd.DataFrame:
    """Skipped batches and images trained on, per norm × setting (summed / averaged over seeds)."""
    rows = []
    for norm in norms_of(pts):
        for sizes in settings(pts):
            sel = pts[(pts["norm"] == norm) & (pts["low"] == sizes[0]) & (pts["high"] == sizes[1])]
            if sel.empty:
                continue
            steps = pd.to_numeric(sel["steps"], errors="coerce")
            images = pd.to_numeric(sel["images"], errors="coerce")
            rows.append(
                {
                    "norm": NORM_LABEL.get(norm, norm),
                    "setting": label(*sizes),
                    "runs": len(sel),
                    "skipped batches (all seeds)": f"{int(sel['skipped'].sum()):,}",
                    "of steps": f"{steps.sum():,.0f}",
                    "images trained on, per run (mean)": f"{images.mean():,.0f}"
                    if images.notna().any()
                    else "–",
                }
            )
    return pd.DataFrame(rows)


def figure(done: list[Run], pts: pd.DataFrame, out_png: Path) -> None:
    """Left: test error per setting and norm (mean, seeds as dots); right: the training loss of
    seed 0 of BN and GN over the epochs, one line style per setting."""
    fig, (ax, axl) = plt.subplots(1, 2, figsize=(11, 4.2))
    order = settings(pts)
    xs = {sizes: i for i, sizes in enumerate(order)}
    norms = norms_of(pts)
    for j, norm in enumerate(norms):
        shift = (j - (len(norms) - 1) / 2) * 0.08
        means, at = [], []
        for sizes in order:
            values = list(by_seed(pts, norm, sizes).values())
            ax.plot([xs[sizes] + shift] * len(values), values, ".", color=NORM_COLOR.get(norm))
            if values:
                means.append(sum(values) / len(values))
                at.append(xs[sizes] + shift)
        ax.plot(at, means, "o-", color=NORM_COLOR.get(norm), label=NORM_LABEL.get(norm, norm))
    ax.set_xticks(range(len(order)), [label(*s) for s in order])
    ax.set(xlabel="batch sizes", ylabel="test error (%)", title="final test error (dots: seeds)")
    if norms:
        ax.legend(fontsize=7)
    first = min((r.seed for r in done), default=0)
    for r in done:
        if r.seed != first or r.norm not in ("batch", "group") or "train_loss" not in r.metrics:
            continue
        sizes = sizes_of(r)
        if sizes not in xs:
            continue
        m = r.metrics.dropna(subset=["train_loss"])
        axl.plot(
            m["epoch"],
            m["train_loss"],
            SETTING_STYLE[xs[sizes] % len(SETTING_STYLE)],
            color=NORM_COLOR[r.norm],
            label=f"{NORM_LABEL[r.norm]} {label(*sizes)}",
            linewidth=1,
        )
    axl.set(
        xlabel="epoch",
        ylabel="training loss (mean over each window)",
        title=f"training loss, seed {first}",
        yscale="log",
    )
    if axl.get_legend_handles_labels()[0]:
        axl.legend(fontsize=7)
    save_png(fig, out_png)


def in_short(pts: pd.DataFrame) -> list[str]:
    """One line: each norm's mean test error across the settings."""
    order = settings(pts)
    parts = []
    for norm in norms_of(pts):
        means = []
        for sizes in order:
            values = list(by_seed(pts, norm, sizes).values())
            means.append(f"{sum(values) / len(values):.1f}" if values else "–")
        parts.append(f"{NORM_LABEL.get(norm, norm)} {' → '.join(means)}")
    if not parts or len(order) < 2:
        return []
    names = " → ".join(label(*s) for s in order)
    return [f"**In short** (mean test error %, {names}): " + "; ".join(parts) + ".\n"]


def runs_lines(runs: list[Run], pts: pd.DataFrame) -> list[str]:
    """Every run with its status, and the runs flagged or left out."""
    per = [
        {
            "norm": NORM_LABEL.get(r.norm, r.norm),
            "setting": label(*sizes_of(r)),
            "seed": r.seed,
            **run_cells(r),
        }
        for r in runs
    ]
    lines = ["## Runs\n"]
    if per:
        order = {label(*s): i for i, s in enumerate(settings(pts))} if len(pts) else {}
        table = pd.DataFrame(per)
        table["_order"] = table["setting"].map(order).fillna(len(order))
        table = table.sort_values(["norm", "_order", "seed"]).drop(columns="_order")
        lines += [md_table(table)]
    walls = pd.to_numeric(pts["wall_time_s"], errors="coerce").dropna()
    if len(walls):
        lines.append(
            f"Training wall time per complete run: mean {walls.mean():.0f} s, sum "
            f"{walls.sum() / 60:.0f} min (they vary with the load of the machine).\n"
        )
    lines += flag_lines(runs)
    lines += incomplete_lines(runs, "the figure, tables and claims") or ["All runs complete."]
    lines.append(
        "\nPer-run numbers: [online_points.csv](online_points.csv), [runs.csv](runs.csv).\n"
    )
    return lines


def method_lines(done: list[Run], pts: pd.DataFrame) -> list[str]:
    """What the settings are, what is held fixed, and how each number is made."""
    if not done:
        return []
    cfg = done[0].config
    ref = reference(pts)
    rules = sorted(set(pts["lr_scaling"]))
    lr = (cfg.get("optim") or {}).get("lr")
    rule = (
        f"`batching.lr_scaling=linear`: each step's lr is the schedule's ({lr} at the reference "
        f"batch of {cfg['dataset']['batch_size']}) × size / {cfg['dataset']['batch_size']}, so "
        "every image weighs the same in the updates whatever the size of its batch (the GN "
        "paper's rule, lr 0.1 · N/32, docs/papers.md §2.1); the variant `fixed_lr` keeps the lr "
        "whatever the size"
        if rules == ["linear"]
        else f"`batching.lr_scaling={'/'.join(rules)}`: the schedule's lr whatever the batch size"
    )
    return [
        "## Settings\n",
        f"- Batching (`batching.sizes=[low, high]`: each step's batch size drawn uniformly from "
        f"low..high, a function of seed and step): {', '.join(label(*s) for s in settings(pts))}; "
        f"the reference is {label(*ref) if ref else 'missing'}. Every setting trains on the same "
        "number of images (steps = images / mean size), taken in the order of the same shuffles: "
        "runs of one seed share their initialization and image order.",
        f"- Learning rate: {rule}.",
        "- Error: each run's final weights on the 10,000 test images with running statistics, "
        "from the study's `test` phase (`normbench eval RUN mode=running data.val_split=test`); "
        "the run's own final validation error on its held-out images is in "
        "[online_points.csv](online_points.csv) (`val_error`). ± over seeds is the standard "
        "deviation; in paired differences, the 95% interval's half-width.",
        "- Largest loss spike: metrics.csv's `train_loss` is the mean training loss of the steps "
        "since the previous row (a row every fixed number of images, the same in every setting); "
        "the spike is the largest rise of that windowed loss above its lowest earlier value, "
        "max_k (L_k − min_{j<k} L_j), in nats (0: it never went back up). It is measured on the "
        "training batches as they came (train mode: BN with that batch's statistics).",
        "- Skipped batches: a batch on which a layer would get one value per channel (a batch of "
        "one image in a fully connected layer with BN or BRN) is skipped (no update, statistics "
        "restored) and counted in summary.json (`batching.skipped_batches`).\n",
    ]


def online_report(runs: list[Run], out_dir: Path) -> tuple[str, list[Claim]]:
    """README text (with CLAIMS_HERE) and the claims of an online sweep."""
    done = [r for r in runs if r.status == "complete"]
    pts = points(done)
    pts.to_csv(out_dir / "online_points.csv", index=False, float_format="%.4f")
    errors, changes = error_table(pts), change_table(pts)
    errors.to_csv(out_dir / "online_errors.csv", index=False)
    changes.to_csv(out_dir / "online_changes.csv", index=False)
    stability, skipped = stability_table(pts), skipped_table(pts)
    stability.to_csv(out_dir / "online_stability.csv", index=False)
    if not pts.empty:
        figure(done, pts, out_dir / "online.png")
    claims = all_claims(pts, setting_of(done, pts))
    lines = [
        "# Online learning: batches that arrive one at a time or in groups of changing size\n",
        "BN, Batch Renorm (BRN), GN, LN and FRN trained on a fixed batch (the reference), on "
        "batches whose size is drawn anew every step, and on a stream of small batches. No paper "
        "ran this setting: the claims carry the GN paper's fixed small batches per device "
        "(docs/papers.md §2.3), Batch Renorm's microbatches (§3.3) and the batch-1 facts of §11 "
        "over to it.\n",
        *(["![test error per setting and norm; training loss](online.png)\n"] if len(pts) else []),
        *chance_banner(done),
        *in_short(pts),
        *method_lines(done, pts),
        "## Test error (%) per norm and setting: the claims' number\n",
        "Mean ± standard deviation over seeds (n). [online_errors.csv](online_errors.csv)\n",
        md_table(errors) if len(errors) else "No complete run.\n",
        "## Change against the fixed batch (points, paired by seed, ± 95% interval)\n",
        md_table(changes) if len(changes) else "–\n",
        CLAIMS_HERE,
        "## Training stability\n",
        "Largest loss spike (defined in *Settings*) and the last window's training loss; "
        "[online_stability.csv](online_stability.csv).\n",
        md_table(stability) if len(stability) else "–\n",
        "## Skipped batches\n",
        md_table(skipped) if len(skipped) else "–\n",
        *runs_lines(runs, pts),
    ]
    return "\n".join(lines) + "\n", claims
