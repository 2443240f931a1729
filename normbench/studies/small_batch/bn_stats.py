"""Where BN's small-batch penalty comes from: the ``bn_stats`` phase's evaluations, as a table.

The phase (``normbench eval RUN -m mode=running,precise,batch samples=10000`` on every run whose
summary.json says its norm uses batch statistics) re-evaluates the final weights on the
held-out images with the BN layers normalizing by (a) the running averages made in training,
(b) population statistics of 10,000 training images with the weights frozen (Precise BN), (c)
each evaluated batch's own statistics at the training batch size, in groups of N (test
conditions equal to training ones). Its rows are in each run's evals.csv; nothing else is read.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from normbench.report.collect import Run
from normbench.report.output import md_table, write_tables
from normbench.studies.small_batch.points import (
    NORM_LABEL,
    images_per_device,
    own_rows,
    recorded_setting,
)

MODES = ("running", "precise", "batch")
FILE = "bn_stats"


def run_row(run: Run) -> dict[str, object] | None:
    """One run's errors (%) under the three statistics (None: the run has no such rows)."""
    dataset = (run.config.get("dataset") or {}).get("name", "")
    rows = own_rows(run, dataset)
    if not rows:
        return None
    batch = str(recorded_setting(run)["batch"])
    precise = [r for r in rows if r.get("mode") == "precise" and r.get("samples")]
    precise.sort(key=lambda r: int(r["samples"]))
    chosen = {
        "running": [r for r in rows if r.get("mode") == "running"],
        "precise": precise[-1:],
        "batch": [r for r in rows if r.get("mode") == "batch" and r.get("batch_size") == batch],
    }
    out: dict[str, object] = {"norm": run.norm, "N": images_per_device(run), "seed": run.seed}
    for mode in MODES:
        out[mode] = 100 * float(chosen[mode][-1]["error"]) if chosen[mode] else math.nan
    out["precise_images"] = int(precise[-1]["samples"]) if precise else None
    out["batch_size"] = batch
    out["evaluated"] = max(r.get("evaluated_at", "") for r in rows)
    out["run"] = str(run.path)
    return out


def bn_stats_table(runs: list[Run]) -> pd.DataFrame:
    """One row per complete BN-type run with ``bn_stats`` evaluations."""
    rows = [run_row(r) for r in runs if r.status == "complete" and r.batch_dependent]
    return pd.DataFrame([r for r in rows if r is not None])


def bn_stats_lines(runs: list[Run], out_dir: Path) -> list[str]:
    """The README section (and ``bn_stats.csv``), or nothing when no run was evaluated so."""
    table = bn_stats_table(runs)
    if table.empty:
        return []
    write_tables({FILE: table}, out_dir)
    groups = table.groupby(["norm", "N"])
    means = groups[list(MODES)].mean().map(lambda v: f"{v:.1f}" if math.isfinite(v) else "–")
    means.insert(0, "seeds", groups.size())
    means = means.reset_index().sort_values(["norm", "N"], ascending=[True, False])
    means["norm"] = means["norm"].map(lambda n: NORM_LABEL.get(n, n))
    means.columns = ["norm", "N", "seeds", "running", "precise", "batch (groups of N)"]
    images = sorted({int(n) for n in table["precise_images"].dropna()})
    days = sorted({str(d)[:10] for d in table["evaluated"] if d})
    return [
        "## Where BN's penalty comes from: test-time statistics or learned weights\n",
        "The final weights of each run using batch statistics, re-evaluated on the held-out "
        "images with its BN layers normalizing by (a) the running averages made in training "
        "(what the run reported at its last evaluation), (b) population statistics recomputed "
        f"over {', '.join(f'{n:,}' for n in images) or '?'} training images with the weights "
        "frozen (Precise BN), (c) each evaluated batch's own statistics at the training batch "
        "size, in groups of N (test conditions = training ones). When (b) ≈ (a), the running "
        "estimates are not the problem and the error at small N is in the weights learned under "
        "noisy statistics. Val error %, mean over seeds; per run: "
        f"[{FILE}.csv]({FILE}.csv). Made by the study's `bn_stats` phase (`normbench eval RUN -m "
        "mode=running,precise,batch samples=10000`), rows of each run's evals.csv"
        + (f", evaluated {', '.join(days)}" if days else "")
        + ".\n",
        md_table(means),
        "",
    ]
