"""Domain-shift study, the data: evals.csv and kl.csv of run directories as tables.

Every evaluation row of a complete run whose status is ``ok`` is used; error and ECE are turned
into percent. Each row's ``split`` says which images it evaluated: ``val`` (the run's own
validation split: the 1,000 held-out images), ``test`` (``data.val_split=test``: the official
test split of the run's dataset) or ``other`` (another dataset or option: kept in errors.csv,
left out of the comparisons); ``images`` is how many (evals.csv's ``num_samples``).

**Which evaluation stands for a mode.** A mode evaluated at several knob settings (AdaBN at
several ``samples=k`` for the k curve, partial at several priors) is represented in the
heatmaps, mCE and claims by its *main setting*: the setting evaluated on the most
(run, corruption, severity) cells; ties go to the most samples, then the smallest batch size
(``mode=batch`` at the training batch size before Tent's larger one), then the smallest prior.
The other settings feed the k and N curves and the Tent comparison. The full-test evaluations
(``split == "test"``) have main settings of their own.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from normbench.data.corruptions.names import CORRUPTIONS
from normbench.errors import NormbenchError
from normbench.report.collect import TEST_SPLIT_SIZE, Run
from normbench.report.verdicts import Estimate, paired

#: Hendrycks & Dietterich (ICLR 2019): the 15 corruptions of mCE, in the paper's order.
BENCHMARK = CORRUPTIONS
#: The rows of ``mode=batch`` at the batch size of the run's Tent evaluations (Tent's own
#: baseline), added to a table of cells under this name by :func:`with_tent_reference`.
TENT_REF = "batch@tent"
MODE_ORDER = ("running", "precise", "batch", "adapt", "partial", TENT_REF, "tent")
KNOBS = ("samples", "batch_size", "prior", "steps", "lr")
KEY = ("mode", *KNOBS, "data", "corruption", "severity")
CLEAN = "none"
RUN_COLUMNS = ("run", "model", "norm", "seed", "batch_dependent")
CELL = ["run", "corruption", "severity"]
VAL, TEST, OTHER = "val", "test", "other"  # the ``split`` of an evaluation
EVAL_COLUMNS = (*RUN_COLUMNS, *KEY, "setting", "error", "nll", "ece", "applied", "own_data")
EVAL_COLUMNS += ("split", "images")
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
    data = df["data"] if "data" in df else pd.Series("", index=df.index)
    test = f"{dataset}[val_split=test]"
    df["split"] = data.map(lambda d: VAL if d in (dataset, "") else TEST if d == test else OTHER)
    df["own_data"] = df["split"] == VAL
    sizes = {VAL: run.val_images, TEST: TEST_SPLIT_SIZE.get(dataset)}
    counted = _number(df["num_samples"]) if "num_samples" in df else math.nan
    df["images"] = pd.Series(counted, index=df.index).fillna(df["split"].map(sizes))
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
                batch_size=("batch_size", "min"),
                prior=("prior", "min"),
            )
        )
        counts = counts.fillna({"samples": 0, "batch_size": 0, "prior": math.inf})
        best = counts.sort_values(
            ["cells", "samples", "batch_size", "prior"], ascending=[False, False, True, True]
        )
        out[str(mode)] = str(best.index[0])
    return out


def main_cells(
    df: pd.DataFrame, settings: dict[str, str] | None = None, split: str = VAL
) -> pd.DataFrame:
    """The rows of each mode's main setting on ``split``, one per (run, mode, cell)."""
    own = df[df["split"] == split] if "split" in df else df
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


def shared_by_seed(
    a: pd.DataFrame, b: pd.DataFrame, column: str = "error", on: list[str] | None = None
) -> tuple[dict[int, float], dict[int, float]]:
    """Per seed, the mean of ``a`` and of ``b`` over the cells (``on``) both hold: the two sides
    of :func:`normbench.report.verdicts.paired`."""
    on = on or CELL
    keep = list(dict.fromkeys([*on, "seed", column]))
    both = pd.merge(a[keep], b[[*on, column]], on=on, suffixes=("_a", "_b")).dropna(
        subset=[f"{column}_a", f"{column}_b"]
    )
    by = both.groupby("seed")
    return by[f"{column}_a"].mean().to_dict(), by[f"{column}_b"].mean().to_dict()


def mode_rows(
    cells: pd.DataFrame,
    group: tuple[str, str],
    mode: str,
    select: Callable[[pd.DataFrame], pd.Series] = corrupted,
) -> pd.DataFrame:
    """The rows of ``mode`` in ``group`` that ``select`` keeps (corrupted ones by default)."""
    g = of_group(cells, group)
    return g[select(g) & (g["mode"] == mode)]


def paired_modes(
    cells: pd.DataFrame,
    group: tuple[str, str],
    a: str,
    b: str,
    select: Callable[[pd.DataFrame], pd.Series] = corrupted,
) -> Estimate:
    """Mode ``b`` minus mode ``a`` in ``group``, paired by seed over the cells both hold."""
    return paired(
        *shared_by_seed(mode_rows(cells, group, a, select), mode_rows(cells, group, b, select))
    )


def at_severity(severity: int) -> Callable[[pd.DataFrame], pd.Series]:
    """A row selection: corrupted data at ``severity``."""
    return lambda df: corrupted(df) & (df["severity"] == severity)


def with_tent_reference(cells: pd.DataFrame, ev: pd.DataFrame, split: str) -> pd.DataFrame:
    """``cells`` and, as mode :data:`TENT_REF`, the ``mode=batch`` rows on ``split`` at the batch
    size of each run's Tent evaluations."""
    tent = cells[cells["mode"] == "tent"].groupby("run")["batch_size"].first()
    batch = ev[(ev["split"] == split) & (ev["mode"] == "batch")]
    ref = batch[batch["batch_size"] == batch["run"].map(tent)]
    ref = ref.drop_duplicates(CELL, keep="last").assign(mode=TENT_REF)
    return pd.concat([cells, ref], ignore_index=True) if len(ref) else cells


def seed_mean(df: pd.DataFrame, keys: list[str], column: str = "error") -> pd.DataFrame:
    """Mean, std and count over runs of ``column`` per ``keys``."""
    g = df.groupby(keys)[column]
    out = g.agg(["mean", "std"]).assign(seeds=g.size()).reset_index()
    return out.fillna({"std": 0.0})
