"""Non-i.i.d. study, the data: one row per complete run, read from its run directory.

Columns: ``norm``, ``seed``, ``classes`` (``batching.classes``: classes per training batch, None
for i.i.d.), ``iid``, ``batch`` (training batch), ``steps``, ``running`` (error % of the final
weights on the evaluated images with the running statistics: ``normbench eval RUN mode=running``),
``test_batch`` (the same with each test batch's own statistics, ``mode=batch`` at the training
batch size, NaN where not evaluated or not applied), ``test_batch_size``, ``images``,
``dependent`` (the norm uses batch statistics, as summary.json records) and ``run``.
"""

from __future__ import annotations

import math

import pandas as pd

from normbench.report.collect import Run
from normbench.report.seeds import by_seed as seed_values
from normbench.studies.inference_batch.points import clean_rows, data_label

NORM_ORDER = ("batch", "batch_renorm", "group")
NORM_LABEL = {"batch": "BN", "batch_renorm": "BRN", "group": "GN"}
COLUMNS = (
    "norm",
    "seed",
    "classes",
    "iid",
    "batch",
    "steps",
    "running",
    "test_batch",
    "test_batch_size",
    "images",
    "dependent",
    "run",
)


def label(norm: str) -> str:
    return NORM_LABEL.get(norm, norm)


def ordered(norms: set[str]) -> list[str]:
    return [n for n in NORM_ORDER if n in norms] + sorted(set(norms) - set(NORM_ORDER))


def classes_of(run: Run) -> int | None:
    """``batching.classes`` of the run (None: i.i.d. batches)."""
    value = (run.config.get("batching") or {}).get("classes")
    return None if value in (None, "null") else int(value)


def _error(row: dict[str, str] | None) -> float:
    if row is None or row.get("status") != "ok" or row.get("error") in (None, ""):
        return math.nan
    return 100.0 * float(row["error"])


def pick(rows: list[dict[str, str]], mode: str, batch_size: str | None) -> dict[str, str] | None:
    """The last row of ``mode`` at ``batch_size`` ('' : the default, i.e. none given; None: any),
    preferring the default one for running."""
    same = [r for r in rows if r.get("mode") == mode]
    if batch_size is not None:
        exact = [r for r in same if (r.get("batch_size") or "") == batch_size]
        same = exact or ([] if mode == "batch" else same)
    return same[-1] if same else None


def points(runs: list[Run], split: str | None = "test") -> pd.DataFrame:
    """One row per complete run (see the module docstring)."""
    out = []
    for run in runs:
        if run.status != "complete":
            continue
        rows = clean_rows(run, data_label(run, split))
        batch = int((run.config.get("dataset") or {}).get("batch_size") or 0)
        tb = pick(rows, "batch", str(batch))
        applied = tb is not None and tb.get("applied", "true") != "false"
        images = next((r.get("num_samples") for r in rows if r.get("num_samples")), "")
        out.append(
            {
                "norm": run.norm,
                "seed": run.seed,
                "classes": classes_of(run),
                "iid": classes_of(run) is None,
                "batch": batch,
                "steps": int(run.summary.get("steps") or run.summary.get("step") or 0),
                "running": _error(pick(rows, "running", "")),
                "test_batch": _error(tb) if applied else math.nan,
                "test_batch_size": batch if applied else math.nan,
                "images": int(float(images)) if images else 0,
                "dependent": run.batch_dependent,
                "run": str(run.path),
            }
        )
    df = pd.DataFrame(out, columns=list(COLUMNS))
    df["classes"] = df["classes"].astype("Int64")
    return df.sort_values(["norm", "iid", "seed"], ascending=[True, False, True]).reset_index(
        drop=True
    )


def by_seed(pts: pd.DataFrame, norm: str, iid: bool, column: str = "running") -> dict[int, float]:
    """``column`` of the (norm, batching) runs keyed by seed (NaN left out)."""
    return seed_values(pts, column, norm=norm, iid=iid)


def images_of(pts: pd.DataFrame) -> int | None:
    counts = pts["images"][pts["images"] > 0]
    return int(counts.mode().iloc[0]) if len(counts) else None
