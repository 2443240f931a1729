"""Inference-batch study, the data: one row per evaluation of a complete run, read from its
evals.csv (rows the study's phases wrote with ``normbench eval``).

Columns: ``norm``, ``seed``, ``mode`` (running: eval mode; batch: each test batch's own
statistics), ``b`` (the evaluation batch size), ``status`` (ok, or undefined: a batch statistic of
one value per channel), ``applied`` (false: the mode does not apply to a norm without batch
statistics, and eval gave the running result), ``error`` (%, NaN when undefined), ``images``
(evaluated), ``dependent`` (the run's norm uses batch statistics, as its summary.json records),
``note`` and ``run``.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pandas as pd

from normbench.report.collect import Run

BATCHES = (1, 2, 4, 8, 16, 32, 64, 128, 256)
NORM_ORDER = ("batch", "batch_renorm", "group", "layer", "frn")
NORM_LABEL = {"batch": "BN", "batch_renorm": "BRN", "group": "GN", "layer": "LN", "frn": "FRN"}
NORM_COLOR = {
    "batch": "tab:blue",
    "batch_renorm": "tab:orange",
    "group": "tab:red",
    "layer": "tab:green",
    "frn": "tab:purple",
}
MODE_LABEL = {"running": "eval mode (running statistics)", "batch": "test-batch statistics"}
COLUMNS = (
    "norm",
    "seed",
    "mode",
    "b",
    "status",
    "applied",
    "error",
    "images",
    "dependent",
    "note",
    "run",
)


def label(norm: str) -> str:
    return NORM_LABEL.get(norm, norm)


def ordered(norms: set[str] | list[str]) -> list[str]:
    """``norms`` in the study's order (unknown ones last, sorted)."""
    norms = set(norms)
    return [n for n in NORM_ORDER if n in norms] + sorted(norms - set(NORM_ORDER))


def data_label(run: Run, split: str | None) -> str:
    """The ``data`` column of the run's evaluations on its own data (``split``: a val_split
    override such as ``test``, None: the run's validation split)."""
    name = (run.config.get("dataset") or {}).get("name", "")
    return f"{name}[val_split={split}]" if split else name


def eval_rows(run: Run) -> list[dict[str, str]]:
    """The rows of the run's evals.csv (none: no file yet)."""
    path = Path(run.path) / "evals.csv"
    if not path.is_file():
        return []
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def clean_rows(run: Run, data: str) -> list[dict[str, str]]:
    """Rows on ``data`` without corruption, of the run's last checkpoint, ok or undefined."""
    step = str(run.summary.get("step", ""))
    return [
        r
        for r in eval_rows(run)
        if r.get("data") == data
        and r.get("corruption") in ("", "none", None)
        and r.get("status") in ("ok", "undefined")
        and (not r.get("step") or r.get("step") == step)
    ]


def _number(text: str | None) -> float:
    try:
        return float(text) if text not in (None, "") else math.nan
    except ValueError:
        return math.nan


def points(runs: list[Run], split: str | None = None) -> pd.DataFrame:
    """One row per (complete run, mode, b) evaluated on the run's own data (see the module)."""
    rows = []
    for run in runs:
        if run.status != "complete":
            continue
        for r in clean_rows(run, data_label(run, split)):
            b = _number(r.get("batch_size"))
            if r.get("mode") not in MODE_LABEL or not math.isfinite(b):
                continue
            ok = r.get("status") == "ok"
            images = _number(r.get("num_samples"))
            rows.append(
                {
                    "norm": run.norm,
                    "seed": run.seed,
                    "mode": r["mode"],
                    "b": int(b),
                    "status": r["status"],
                    "applied": r.get("applied", "true") != "false",
                    "error": 100.0 * _number(r.get("error")) if ok else math.nan,
                    "images": int(images) if math.isfinite(images) else 0,
                    "dependent": run.batch_dependent,
                    "note": r.get("note", ""),
                    "run": str(run.path),
                }
            )
    df = pd.DataFrame(rows, columns=list(COLUMNS))
    return df.sort_values(["norm", "mode", "b", "seed"]).reset_index(drop=True)


def cell(pts: pd.DataFrame, norm: str, mode: str, b: int) -> pd.DataFrame:
    """The rows of one (norm, mode, b)."""
    return pts[(pts["norm"] == norm) & (pts["mode"] == mode) & (pts["b"] == b)]


def by_seed(pts: pd.DataFrame, norm: str, mode: str, b: int) -> dict[int, float]:
    """Error (%) per seed of one (norm, mode, b), the ok rows only."""
    sel = cell(pts, norm, mode, b)
    return {
        int(s): float(e)
        for s, e, st in zip(sel["seed"], sel["error"], sel["status"], strict=True)
        if st == "ok" and math.isfinite(e)
    }


def batches_of(pts: pd.DataFrame, norm: str, mode: str) -> list[int]:
    """The b at which (norm, mode) was evaluated, ascending."""
    sel = pts[(pts["norm"] == norm) & (pts["mode"] == mode)]
    return sorted({int(b) for b in sel["b"]})


def images_of(pts: pd.DataFrame) -> int | None:
    """Images behind each error (the most common count), None when unknown."""
    counts = pts["images"][pts["images"] > 0]
    return int(counts.mode().iloc[0]) if len(counts) else None


def curve(pts: pd.DataFrame) -> pd.DataFrame:
    """Mean, std, min, max over seeds per (norm, mode, b) of the ok rows, with the count of
    seeds and of undefined evaluations."""
    rows = []
    for (norm, mode, b), g in pts.groupby(["norm", "mode", "b"]):
        ok = g[g["status"] == "ok"]["error"].dropna()
        rows.append(
            {
                "norm": norm,
                "mode": mode,
                "b": int(b),
                "mean": float(ok.mean()) if len(ok) else math.nan,
                "std": float(ok.std()) if len(ok) > 1 else (0.0 if len(ok) else math.nan),
                "min": float(ok.min()) if len(ok) else math.nan,
                "max": float(ok.max()) if len(ok) else math.nan,
                "seeds": len(ok),
                "undefined": int((g["status"] == "undefined").sum()),
                "applied": bool(g["applied"].all()),
            }
        )
    return pd.DataFrame(
        rows,
        columns=["norm", "mode", "b", "mean", "std", "min", "max", "seeds", "undefined", "applied"],
    )
