"""The population-statistics study's evaluations as one table: a row per (run, request), with
the run's setting and seed, the statistics mode, the Precise-BN samples asked for, the
checkpoint step and the error (%). Read from each run's evals.csv; nothing else."""

from __future__ import annotations

import math

import pandas as pd

from normbench.evaluation.records import REQUEST_SEP, read_evals
from normbench.report.collect import Run
from normbench.studies.population_stats.settings import setting_of

COLUMNS = ["setting", "seed", "mode", "samples", "step", "kept", "error", "images", "run"]


def _asked(request: str) -> dict[str, str]:
    return dict(t.split("=", 1) for t in request.split() if "=" in t)


def evals_table(runs: list[Run]) -> pd.DataFrame:
    """Every ``ok`` evaluation of the complete runs of a setting, one row per request it
    answers (``samples``: the Precise-BN samples asked for, NaN otherwise; ``kept``: whether the
    request named a kept step)."""
    rows = []
    for run in runs:
        setting = setting_of(run)
        if setting is None or run.status != "complete":
            continue
        for row in read_evals(run.path):
            if row.get("status") != "ok" or (row.get("corruption") or "none") != "none":
                continue
            for request in (row.get("requests") or "").split(REQUEST_SEP):
                asked = _asked(request)
                if "mode" not in asked:
                    continue
                samples = asked.get("samples")
                rows.append(
                    {
                        "setting": setting,
                        "seed": run.seed,
                        "mode": asked["mode"],
                        "samples": float(samples) if samples else math.nan,
                        "step": int(row["step"]),
                        "kept": "step" in asked,
                        "error": 100.0 * float(row["error"]),
                        "images": int(row["num_samples"]) if row.get("num_samples") else None,
                        "run": str(run.path),
                    }
                )
    table = pd.DataFrame(rows, columns=COLUMNS)
    return table.drop_duplicates(["setting", "seed", "mode", "samples", "step"], keep="last")


def errors(
    table: pd.DataFrame, setting: str, mode: str, samples: float | None = None
) -> pd.DataFrame:
    """Rows of one setting and mode, asked with ``samples`` Precise-BN samples (None: asked
    without, i.e. the mode's default)."""
    rows = table[(table["setting"] == setting) & (table["mode"] == mode)]
    return rows[rows["samples"].isna()] if samples is None else rows[rows["samples"] == samples]


def by_seed(rows: pd.DataFrame, step: int) -> dict[int, float]:
    """seed -> error at ``step``."""
    at = rows[rows["step"] == step]
    return {int(s): float(e) for s, e in zip(at["seed"], at["error"], strict=True)}
