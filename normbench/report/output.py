"""What the reports write besides figures: markdown tables and the CSVs behind them."""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from normbench.errors import NormbenchError

# The head of every study's table of the paper's setup beside our runs' (rows: | what | paper | ours |)
SCALE_HEADER = (
    "## Scale of our runs and how they differ from the paper\n",
    "| | paper | ours |",
    "|---|---|---|",
)


def md_table(df: pd.DataFrame) -> str:
    """A pandas table as GitHub markdown (no optional dependency)."""
    cols = list(df.columns)
    lines = ["| " + " | ".join(map(str, cols)) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def write_tables(tables: dict[str, pd.DataFrame], out_dir: Path) -> None:
    """Each table as ``out_dir/<name>.csv`` (6 significant digits)."""
    for name, df in tables.items():
        df.to_csv(out_dir / f"{name}.csv", index=False, float_format="%.6g")


def check_out_dir(out_dir: Path, given: bool) -> Path:
    """``out_dir`` if it is a directory or can be made one (checked before reading any run)."""
    fix = "pass --out a directory (it is made if missing)"
    if out_dir.exists() and not out_dir.is_dir():
        what = "--out " if given else "the report directory "
        raise NormbenchError(f"{what}{out_dir} is a file, not a directory; {fix}")
    above = next((p for p in out_dir.parents if p.exists()), None)
    if above is not None and not above.is_dir():
        raise NormbenchError(
            f"cannot make the report directory {out_dir}: {above} is a file; {fix}"
        )
    return out_dir


def create_out_dir(out_dir: Path) -> None:
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise NormbenchError(
            f"cannot make the report directory {out_dir} ({err.strerror}); pass --out a "
            "directory you can write to"
        ) from None
    if not os.access(out_dir, os.W_OK | os.X_OK):
        raise NormbenchError(
            f"cannot write into the report directory {out_dir} (permission denied); pass --out "
            "a directory you can write to"
        )


def mean_sd(values: Iterable[float], fmt: str = ".3g", sd_fmt: str = ".2g") -> str:
    """``mean ± std`` (sample std; 0 for one value) of the finite ``values``, or ``–`` for none;
    a report's cell for a number over seeds."""
    xs = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not xs:
        return "–"
    mean = sum(xs) / len(xs)
    sd = math.sqrt(sum((x - mean) ** 2 for x in xs) / (len(xs) - 1)) if len(xs) > 1 else 0.0
    return f"{mean:{fmt}} ± {sd:{sd_fmt}}"
