"""Small-batch study, the data: one row per complete run, read from its run directory.

Two errors per run, both in %:

- ``error``: the median validation error of the run's last 5 evaluations on the held-out images
  (the paper: median of the final 5 epochs). The paper-like number of the tables and the figure.
- ``test_error``: the error of the final weights on the dataset's test split (the 10,000 test
  images of Fashion-MNIST), from the run's evals.csv: the row the study's ``test`` phase wrote
  (``normbench eval RUN mode=running data.val_split=test``). The number every claim uses: ten
  times the images, so a third of the binomial noise.

Norms that never use other samples (GN, LN, IN) are, in ghost mode, the same computation at every
N: where such a norm was run at one N only, :func:`expand_independent` lets its numbers stand
for every N, marked ``measured=False``.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pandas as pd

from normbench.report.collect import TEST_SPLIT_SIZE, Run
from normbench.report.seeds import by_seed as seed_values

LAST_EVALS = 5
NORM_ORDER = ("batch", "group", "layer", "instance", "batch_renorm", "sync_batch")
NORM_LABEL = {
    "batch": "BN",
    "group": "GN",
    "layer": "LN",
    "instance": "IN",
    "batch_renorm": "BRN",
    "sync_batch": "SyncBN",
}
NORM_COLOR = {
    "batch": "tab:blue",
    "group": "tab:red",
    "layer": "tab:green",
    "instance": "tab:purple",
    "batch_renorm": "tab:orange",
    "sync_batch": "tab:brown",
}
COLUMNS = (
    "norm",
    "images",
    "mode",
    "seed",
    "error",
    "evals",
    "test_error",
    "epochs",
    "steps",
    "batch",
    "lr",
    "wall_time_s",
    "independent",
    "run",
)


def images_per_device(run: Run) -> int | None:
    """``per_device.images`` of a run (None: statistics over the whole batch)."""
    value = (run.config.get("per_device") or {}).get("images")
    return None if value is None else int(value)


def device_mode(run: Run) -> str:
    """``per_device.mode`` of a run: ghost, real or ddp."""
    return str((run.config.get("per_device") or {}).get("mode", "ghost"))


def batch_independent(run: Run) -> bool:
    """Whether N changes nothing in the run: ghost mode, and a norm that ignores the other
    samples of its batch (as its summary.json records, see :attr:`Run.batch_dependent`)."""
    return device_mode(run) == "ghost" and not run.batch_dependent


def run_error(run: Run, last: int = LAST_EVALS) -> tuple[float, int]:
    """(median val error in % of the run's last ``last`` evaluations after step 0, evaluations used)."""
    m = run.metrics
    if m.empty or "val_error" not in m:
        return math.nan, 0
    vals = m[m["step"] > 0]["val_error"].dropna().tail(last)
    return (100.0 * float(vals.median()), len(vals)) if len(vals) else (math.nan, 0)


def label_of_test_split(dataset: str) -> str:
    """The ``data`` column of an evaluation on ``dataset``'s test split (``DataChoice.label``)."""
    return f"{dataset}[val_split=test]"


def images_of_test_split(run: Run) -> int | None:
    """Images of the run dataset's test split, where known (10,000 for (Fashion-)MNIST)."""
    return TEST_SPLIT_SIZE.get((run.config.get("dataset") or {}).get("name", ""))


def eval_rows(run: Run) -> list[dict[str, str]]:
    """The rows of the run's evals.csv, as ``normbench eval`` wrote them (none: no file yet)."""
    path = Path(run.path) / "evals.csv"
    if not path.is_file():
        return []
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def own_rows(run: Run, data: str) -> list[dict[str, str]]:
    """The ``ok`` rows of the run's evals.csv on ``data``, clean (no corruption), at its last step."""
    step = str(run.summary.get("step", ""))
    return [
        r
        for r in eval_rows(run)
        if r.get("data") == data
        and r.get("corruption") in ("", "none")
        and r.get("status") == "ok"
        and r.get("error")
        and (not r.get("step") or r.get("step") == step)
    ]


def error_on_test_split(run: Run) -> float:
    """The final weights' error (%) on the test split with the running statistics (nan: not
    evaluated yet)."""
    dataset = (run.config.get("dataset") or {}).get("name", "")
    rows = [r for r in own_rows(run, label_of_test_split(dataset)) if r.get("mode") == "running"]
    return 100.0 * float(rows[-1]["error"]) if rows else math.nan


def recorded_setting(run: Run) -> dict[str, object]:
    """Batch, lr and steps the run trained with (per_device resolved), from summary.json."""
    per = run.summary.get("per_device") or {}
    cfg = run.config
    return {
        "batch": per.get("batch_size") or (cfg.get("dataset") or {}).get("batch_size"),
        "lr": per.get("lr") or (cfg.get("optim") or {}).get("lr"),
        "steps": per.get("steps")
        or run.summary.get("steps")
        or (cfg.get("trainer") or {}).get("steps"),
    }


def points(runs: list[Run]) -> pd.DataFrame:
    """One row per complete run (see the module docstring for the two errors)."""
    rows = []
    for r in runs:
        if r.status != "complete":
            continue
        err, used = run_error(r)
        epoch = float(r.metrics["epoch"].iloc[-1]) if "epoch" in r.metrics else math.nan
        rows.append(
            {
                "norm": r.norm,
                "images": images_per_device(r),
                "mode": device_mode(r),
                "seed": r.seed,
                "error": err,
                "evals": used,
                "test_error": error_on_test_split(r),
                "epochs": epoch,
                **recorded_setting(r),
                "wall_time_s": r.summary.get("wall_time_s"),
                "independent": batch_independent(r),
                "run": str(r.path),
            }
        )
    return pd.DataFrame(rows, columns=list(COLUMNS))


def expand_independent(pts: pd.DataFrame, images: list[int]) -> pd.DataFrame:
    """Add ``measured``. An N-independent norm (ghost mode) not run at some N gets, there, the
    numbers of the largest N it was run at (measured=False): the same computation."""
    out = [pts.assign(measured=True)]
    for _, g in pts[pts["independent"].astype(bool)].groupby("norm"):
        ran = sorted(set(g["images"]), reverse=True)
        source = g[g["images"] == ran[0]]
        out += [source.assign(images=n, measured=False, run="") for n in images if n not in ran]
    return pd.concat(out, ignore_index=True)


def curve(pts: pd.DataFrame, column: str = "error") -> pd.DataFrame:
    """Mean, std, min, max of ``column`` over seeds per (norm, images); ``measured`` as above."""
    g = pts.groupby(["norm", "images"])
    out = (
        g[column]
        .agg(["mean", "std", "min", "max"])
        .assign(seeds=g[column].count(), measured=g["measured"].all())
        .reset_index()
    )
    return out.fillna({"std": 0.0}).sort_values(["norm", "images"], ascending=[True, False])


def by_seed(pts: pd.DataFrame, norm: str, n: int, column: str = "test_error") -> dict[int, float]:
    """``column`` of the (norm, N) runs, keyed by seed (NaN values left out)."""
    return seed_values(pts, column, norm=norm, images=n)
