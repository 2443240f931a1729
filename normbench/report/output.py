"""What the reports write besides figures: markdown tables and the CSVs behind them."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

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
