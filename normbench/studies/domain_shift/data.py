"""Domain-shift study, the data: evals.csv and kl.csv of run directories as tables.

Every evaluation row of a complete run whose status is ``ok`` is used; error and ECE are turned
into percent. Rows on data other than the run's own dataset (``data=<other>``) are kept in
errors.csv but left out of the study's comparisons.

**Which evaluation stands for a mode.** A mode evaluated at several knob settings (AdaBN at
several ``samples=k`` for the k curve, partial at several priors) is represented in the
heatmaps, mCE and claims by its *main setting*: the setting evaluated on the most
(run, corruption, severity) cells; ties go to the most samples, then the largest batch size,
then the smallest prior. The other settings feed the k and N curves.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from normbench.data.corruptions.names import CORRUPTIONS
from normbench.errors import NormbenchError
from normbench.report.collect import Run
from normbench.studies.small_batch.claims import Diff

#: Hendrycks & Dietterich (ICLR 2019): the 15 corruptions of mCE, in the paper's order.
BENCHMARK = CORRUPTIONS
MODE_ORDER = ("running", "precise", "batch", "adapt", "partial", "tent")
KNOBS = ("samples", "batch_size", "prior", "steps", "lr")
KEY = ("mode", *KNOBS, "data", "corruption", "severity")
CLEAN = "none"
RUN_COLUMNS = ("run", "model", "norm", "seed", "batch_dependent")
CELL = ["run", "corruption", "severity"]
EVAL_COLUMNS = (*RUN_COLUMNS, *KEY, "setting", "error", "nll", "ece", "applied", "own_data")
KL_COLUMNS = (*RUN_COLUMNS, *KEY, "setting", "layer", "layer_index", "layer_type", "kl_mean")


@dataclass(frozen=True)
class Baseline:
    """The model mCE is normalized by (Hendrycks & Dietterich used AlexNet)."""

    model: str = "resnet50"
    norm: str = "batch"
    mode: str = "running"

    def label(self) -> str:
        return f"{self.model}/{self.norm} under mode={self.mode}"


def read_run_csv(run: Run, name: str, needed: tuple[str, ...]) -> pd.DataFrame:
    """``run.path/name`` as text columns (empty when missing).

    Raises:
        NormbenchError: the file is there but is not a CSV with the ``needed`` columns.
    """
    path = Path(run.path) / name
    if not path.is_file() or not path.stat().st_size:
        return pd.DataFrame(columns=list(needed))
    fix = (
        f"rerun the `normbench eval {run.path} ...` commands that wrote it (after moving it "
        f"away), or leave {run.path} out of the report"
    )
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        first = (str(err).strip().splitlines() or ["no columns"])[-1]
        raise NormbenchError(f"{path} is not valid CSV ({first}); {fix}") from None
    except OSError as err:
        raise NormbenchError(f"{path} cannot be read ({err.strerror}); {fix}") from None
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise NormbenchError(f"{path} has no {missing[0]} column; {fix}")
    return df


def has_corrupted_evaluations(run: Run) -> bool:
    """Whether ``run`` holds an ``ok`` evaluation on corrupted data."""
    df = read_run_csv(run, "evals.csv", ("corruption", "status"))
    return bool(((df["status"] == "ok") & ~df["corruption"].isin(["", CLEAN])).any())


def _number(series: pd.Series) -> pd.Series:
    return pd.to_numeric(series.replace("", math.nan), errors="coerce")


def setting_label(row: pd.Series) -> str:
    """A mode's knobs as typed: ``samples=100`` or ``batch_size=8 prior=16`` ('' for none)."""
    return " ".join(f"{k}={row[k]:g}" for k in KNOBS if not pd.isna(row[k]))


def _keyed(run: Run, df: pd.DataFrame) -> pd.DataFrame:
    """Run identity, typed key columns and the setting label added to a run's rows."""
    df = df.copy()
    for col in (*KNOBS, "severity"):
        df[col] = _number(df[col]) if col in df else math.nan
    df["severity"] = df["severity"].fillna(0).astype(int)  # 0: clean
    df["corruption"] = df["corruption"].replace("", CLEAN)
    df["setting"] = df.apply(setting_label, axis=1) if len(df) else ""
    dataset = (run.config.get("dataset") or {}).get("name", "")
    df["own_data"] = df["data"].isin([dataset, ""]) if "data" in df else True
    model = (run.config.get("model") or {}).get("name", "?")
    ident = {"run": str(run.path), "model": model, "norm": run.norm, "seed": run.seed}
    return df.assign(**ident, batch_dependent=run.batch_dependent)


def evals_table(runs: list[Run]) -> pd.DataFrame:
    """Every ``ok`` evaluation of ``runs`` (error and ECE in %), one row each."""
    frames = []
    for run in runs:
        df = read_run_csv(run, "evals.csv", (*KEY, "error", "status"))
        df = df[(df["status"] == "ok") & (df["error"] != "")]
        if df.empty:
            continue
        df = _keyed(run, df)
        df["error"] = 100 * _number(df["error"])
        df["nll"] = _number(df["nll"]) if "nll" in df else math.nan
        df["ece"] = 100 * _number(df["ece"]) if "ece" in df else math.nan
        applied = df["applied"] if "applied" in df else pd.Series("true", index=df.index)
        df["applied"] = applied.str.lower().isin(["true", "1", ""])
        frames.append(df[list(EVAL_COLUMNS)])
    if not frames:
        return pd.DataFrame(columns=list(EVAL_COLUMNS))
    return pd.concat(frames, ignore_index=True)


def kl_table(runs: list[Run]) -> pd.DataFrame:
    """Every kl.csv row of ``runs`` on the run's own data, with the layer's position."""
    frames = []
    for run in runs:
        df = read_run_csv(run, "kl.csv", (*KEY, "layer", "kl_mean"))
        if df.empty:
            continue
        df = _keyed(run, df)
        df["kl_mean"] = _number(df["kl_mean"])
        order = {name: i for i, name in enumerate(dict.fromkeys(df["layer"]))}
        df["layer_index"] = df["layer"].map(order)
        df["layer_type"] = df["layer_type"] if "layer_type" in df else ""
        frames.append(df[df["own_data"]][list(KL_COLUMNS)])
    if not frames:
        return pd.DataFrame(columns=list(KL_COLUMNS))
    return pd.concat(frames, ignore_index=True)


def main_settings(df: pd.DataFrame) -> dict[str, str]:
    """Per mode, the setting that stands for it (see the module docstring)."""
    out = {}
    for mode, g in df.groupby("mode"):
        counts = (
            g.drop_duplicates([*CELL, "setting"])
            .groupby("setting")
            .agg(
                cells=("run", "size"),
                samples=("samples", "max"),
                batch_size=("batch_size", "max"),
                prior=("prior", "min"),
            )
        )
        counts = counts.fillna({"samples": 0, "batch_size": 0, "prior": math.inf})
        best = counts.sort_values(
            ["cells", "samples", "batch_size", "prior"], ascending=[False, False, False, True]
        )
        out[str(mode)] = str(best.index[0])
    return out


def main_cells(df: pd.DataFrame, settings: dict[str, str] | None = None) -> pd.DataFrame:
    """The rows of each mode's main setting on the run's own data, one per (run, mode, cell)."""
    own = df[df["own_data"]] if "own_data" in df else df
    settings = settings if settings is not None else main_settings(own)
    keep = own["setting"] == own["mode"].map(settings)
    return own[keep].drop_duplicates(
        [*CELL, "mode", *(["layer"] if "layer" in own else [])], keep="last"
    )


def corrupted(df: pd.DataFrame) -> pd.Series:
    """Rows on corrupted data."""
    return df["corruption"] != CLEAN


def clean(df: pd.DataFrame) -> pd.Series:
    """Rows on clean data."""
    return df["corruption"] == CLEAN


Groups = list[tuple[str, str]]


def groups_of(df: pd.DataFrame, batch_dependent: bool | None = None) -> Groups:
    """The (model, norm) pairs in ``df``, optionally only those with(out) batch statistics."""
    if batch_dependent is not None:
        df = df[df["batch_dependent"] == batch_dependent]
    return sorted({(str(m), str(n)) for m, n in zip(df["model"], df["norm"], strict=True)})


def label(group: tuple[str, str]) -> str:
    return f"{group[0]}/{group[1]}"


def of_group(df: pd.DataFrame, group: tuple[str, str]) -> pd.DataFrame:
    return df[(df["model"] == group[0]) & (df["norm"] == group[1])]


def diff_of(values: pd.Series) -> Diff:
    """Mean and standard error over runs of per-run values (a Diff of nothing when empty)."""
    values = values.dropna()
    if values.empty:
        return Diff(math.nan, math.nan, 0)
    se = float(values.std(ddof=1)) / math.sqrt(len(values)) if len(values) >= 2 else math.nan
    return Diff(float(values.mean()), se, len(values))


def per_run_gap(
    a: pd.DataFrame, b: pd.DataFrame, column: str = "error", on: list[str] | None = None
) -> pd.Series:
    """Per run: mean of ``b`` minus mean of ``a`` over the cells both hold."""
    on = on or CELL
    both = pd.merge(a[[*on, column]], b[[*on, column]], on=on, suffixes=("_a", "_b")).dropna()
    return (both[f"{column}_b"] - both[f"{column}_a"]).groupby(both["run"]).mean()


def paired_modes(
    cells: pd.DataFrame,
    group: tuple[str, str],
    a: str,
    b: str,
    select: Callable[[pd.DataFrame], pd.Series] = corrupted,
) -> Diff:
    """Mode ``b`` minus mode ``a`` in ``group``, paired by run over the cells both hold."""
    g = of_group(cells, group)
    g = g[select(g)]
    return diff_of(per_run_gap(g[g["mode"] == a], g[g["mode"] == b]))


def seed_mean(df: pd.DataFrame, keys: list[str], column: str = "error") -> pd.DataFrame:
    """Mean, std and count over runs of ``column`` per ``keys``."""
    g = df.groupby(keys)[column]
    out = g.agg(["mean", "std"]).assign(seeds=g.size()).reset_index()
    return out.fillna({"std": 0.0})
