"""The non-i.i.d. README: figure, error table (i.i.d. and non-i.i.d. training, running and
test-batch statistics), the paper's numbers, claims, scale and runs. Numbers from
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
from normbench.report.output import SCALE_HEADER, md_table  # noqa: E402
from normbench.report.verdicts import Claim, paired  # noqa: E402
from normbench.studies.non_iid.claims import PAPER, Setting, all_claims  # noqa: E402
from normbench.studies.non_iid.points import by_seed, images_of, label, ordered, points  # noqa: E402
from normbench.studies.study import CLAIMS_HERE  # noqa: E402

#: (column, training batches i.i.d.?, statistics column, header)
CONDITIONS = (
    ("iid_running", True, "running", "i.i.d. training, running statistics"),
    ("non_running", False, "running", "non-i.i.d. training, running statistics"),
    ("non_test_batch", False, "test_batch", "non-i.i.d. training, test-batch statistics"),
    ("iid_test_batch", True, "test_batch", "i.i.d. training, test-batch statistics"),
)
COLORS = {"iid_running": "tab:green", "non_running": "tab:red", "non_test_batch": "tab:orange"}


def batching_text(runs: list[Run]) -> str:
    """The non-i.i.d. batching in words: ``2 classes x 16 images per batch of 32``."""
    for r in runs:
        k = (r.config.get("batching") or {}).get("classes")
        if k not in (None, "null"):
            batch = int(r.config["dataset"]["batch_size"])
            return f"{k} classes x {batch // int(k)} images per batch of {batch}"
    return "k classes per batch"


def setting(done: list[Run], pts: pd.DataFrame) -> Setting:
    if not done:
        return Setting("no complete runs", None, batching_text(done))
    cfg, images = done[0].config, images_of(pts)
    m, data = cfg["model"], cfg["dataset"]
    scale = (
        f"{data['name']} ({images or '?':,} test images), {m['name']}"
        + (f" width {m['width']}" if "width" in m else "")
        + f", {int(pts['steps'].max()):,} steps of {data['batch_size']}, non-i.i.d. = "
        f"{batching_text(done)}, {pts['seed'].nunique()} seeds"
    )
    return Setting(scale, images, batching_text(done))


def _mean(values: dict[int, float]) -> str:
    if not values:
        return "–"
    xs = list(values.values())
    mean = sum(xs) / len(xs)
    sd = math.sqrt(sum((x - mean) ** 2 for x in xs) / (len(xs) - 1)) if len(xs) > 1 else 0.0
    return f"{mean:.2f} ± {sd:.2f}"


def error_table(pts: pd.DataFrame) -> pd.DataFrame:
    """Mean ± std over seeds per norm and condition, and non-i.i.d. − i.i.d. paired by seed."""
    rows = []
    for norm in ordered(set(pts["norm"])):
        row = {"norm": label(norm)}
        for _, iid, column, header in CONDITIONS:
            row[header] = _mean(by_seed(pts, norm, iid, column))
        d = paired(by_seed(pts, norm, True), by_seed(pts, norm, False))
        row["non-i.i.d. − i.i.d., running (paired, ± 95%)"] = d.text() if d.n else "–"
        rows.append(row)
    return pd.DataFrame(rows)


def paper_table() -> str:
    """docs/papers.md §3.2 in its own units (top-1 accuracy, %)."""
    return "\n".join(
        [
            "| ImageNet top-1 accuracy (%), Inception-v3 | BN | BRN |",
            "|---|---|---|",
            f"| i.i.d. batches of 32, moving averages | {PAPER['bn_iid']} | about the same |",
            f"| non-i.i.d. (16 labels x 2 images), moving averages | about {PAPER['bn_non_iid']:g} "
            f"[MEM] | {PAPER['brn_non_iid']} |",
            f"| non-i.i.d., each test minibatch's statistics | {PAPER['bn_non_iid_test_batch']} | – |",
            "",
        ]
    )


def figure(pts: pd.DataFrame, out_png: Path) -> None:
    """Per norm, the error of each condition: the mean (bar) and each seed (dots)."""
    norms = ordered(set(pts["norm"]))
    shown = [c for c in CONDITIONS if c[0] in COLORS]
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    width, labelled = 0.8 / len(shown), set()
    for j, (key, iid, column, header) in enumerate(shown):
        for i, norm in enumerate(norms):
            values = list(by_seed(pts, norm, iid, column).values())
            if not values:
                continue
            x = i + (j - (len(shown) - 1) / 2) * width
            name = None if key in labelled else header
            labelled.add(key)
            ax.bar(x, sum(values) / len(values), width, color=COLORS[key], alpha=0.6, label=name)
            ax.plot([x] * len(values), values, "k.", markersize=4)
    ax.set_xticks(range(len(norms)), [label(n) for n in norms])
    ax.set(ylabel="test error (%)", title="i.i.d. against non-i.i.d. training batches")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    save_png(fig, out_png)


def scale_lines(done: list[Run], s: Setting) -> list[str]:
    if not done:
        return []
    cfg = done[0].config
    m, data, opt = cfg["model"], cfg["dataset"], cfg.get("optim") or {}
    steps = max(int(r.summary.get("steps") or r.summary.get("step") or 0) for r in done)
    model = m["name"] + (f" width {m['width']}, {m.get('stem', '')} stem" if "width" in m else "")
    return [
        *SCALE_HEADER,
        f"| data | ImageNet, 1,000 classes | {data['name']}, 10 classes; the claims on "
        f"{s.images or '?':,} test images |",
        f"| model | Inception-v3 | {model} |",
        f"| non-i.i.d. batches | 32 = 16 labels x 2 images (each batch sees 1.6% of the labels) | "
        f"{s.batching} |",
        f"| training | 50 workers x 32, RMSProp, 160k steps | one process, {steps:,} steps of "
        f"{data['batch_size']}, {opt.get('name', '?')} lr {opt.get('lr', '?')}, "
        f"{len({r.seed for r in done})} seeds |",
        "| test-batch statistics | each test minibatch's | each batch of "
        f"{data['batch_size']} test images in a fixed random order (i.i.d. test batches) |",
        "",
    ]


def runs_lines(runs: list[Run]) -> list[str]:
    rows = [
        {
            "norm": label(r.norm),
            "batching": "i.i.d."
            if (r.config.get("batching") or {}).get("classes") in (None, "null")
            else f"{r.config['batching']['classes']} classes per batch",
            "seed": r.seed,
            **run_cells(r, final_error=True),
        }
        for r in runs
    ]
    return runs_section(
        runs,
        rows,
        ["norm", "batching", "seed"],
        "Per-run numbers: [non_iid_points.csv](non_iid_points.csv), [runs.csv](runs.csv).",
        "the tables and claims",
    )


def non_iid_report(runs: list[Run], out_dir: Path, split: str | None) -> tuple[str, list[Claim]]:
    """README text (with the claims' mark) and the claims."""
    done = [r for r in runs if r.status == "complete"]
    pts = points(done, split)
    pts.to_csv(out_dir / "non_iid_points.csv", index=False, float_format="%.4f")
    s = setting(done, pts)
    if not pts.empty:
        figure(pts, out_dir / "non_iid.png")
    claims = all_claims(pts, s)
    gn = paired(by_seed(pts, "group", True), by_seed(pts, "group", False))
    lines = [
        "# Batch Renormalization's non-i.i.d. minibatches, at reduced scale\n",
        "Ioffe 2017 (docs/papers.md §3.2, §11): BN trained on batches that hold few classes, "
        "evaluated with its moving averages, falls a long way; each test batch's own statistics "
        "win part of it back; Batch Renorm does not fall. Reproduced by normbench on its own "
        "runs: see *Scale* for how they differ from the paper.\n",
        "![error per norm and condition](non_iid.png)\n",
        *chance_banner(done),
        f"## Test error (%): i.i.d. against non-i.i.d. ({s.batching}) training batches\n",
        "Each run's final weights on the test images: with the running statistics (`normbench "
        "eval RUN mode=running data.val_split=test`) and, for norms with batch statistics, with "
        "each test batch's own statistics at the training batch size (`mode=batch`; the test "
        "images in a fixed random order, so the test batches are i.i.d. whatever the training "
        "batches were). Same batch size and steps for both batchings. Mean ± std over seeds.\n",
        md_table(error_table(pts)) if not pts.empty else "No complete runs yet.\n",
        (
            f"GN uses no batch statistics: non-i.i.d. batches change only its gradients; its "
            f"non-i.i.d. − i.i.d. difference, {gn.text()}, is the effect of the batching on "
            "training alone (not a claim of the paper).\n"
            if gn.n
            else ""
        ),
        "The paper's numbers (docs/papers.md §3.2), in its own units:\n",
        paper_table(),
        CLAIMS_HERE,
        *scale_lines(done, s),
        *runs_lines(runs),
    ]
    return "\n".join(lines) + "\n", claims
