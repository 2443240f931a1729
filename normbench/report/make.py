"""``normbench report``: runs -> CSV + PNG + README.md beside the paper's claims.

Every number in the README is computed from the run directories; the README also records
the commands, the hardware, the scale of the runs and the date. This module picks the study
(each has its own module: ``domain_shift``, ``bn_fig1_report``, ``small_batch_report``) and
writes the generic report of any other sweep.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from normbench.errors import NormbenchError
from normbench.report.bn_fig1_report import is_bn_fig1_study, write_bn_fig1_report
from normbench.report.collect import Run, collect, runs_table, varying_keys
from normbench.report.commands import runs_section
from normbench.report.ddp_compare import is_ddp_comparison, write_ddp_report
from normbench.report.domain_shift import is_domain_shift_study, write_domain_shift_report
from normbench.report.figures import val_error_curves
from normbench.report.flags import chance_banner, chance_messages
from normbench.report.output import md_table, write_tables
from normbench.report.small_batch import is_small_batch_study
from normbench.report.small_batch_report import write_small_batch_report


def make_report(dirs: list[str], out: str | None) -> Path:
    """Collect the runs under ``dirs`` and write the study's report into ``out``.

    Raises:
        NormbenchError: ``out`` is a file or cannot be created, or a run directory holds a file
            that cannot be read; nothing is written then.
    """
    out_dir = _check_out_dir(Path(out) if out else Path(dirs[0]) / "report", out is not None)
    runs = collect(dirs)
    _create_out_dir(out_dir)
    runs_table(runs).to_csv(out_dir / "runs.csv", index=False)
    if is_domain_shift_study(runs):
        text = write_domain_shift_report(runs, dirs, out_dir)
    elif is_ddp_comparison(runs):
        text = write_ddp_report(runs, dirs, out_dir)
    elif is_small_batch_study(runs):
        text = write_small_batch_report(runs, dirs, out_dir)
    elif is_bn_fig1_study(runs):
        text = write_bn_fig1_report(runs, dirs, out_dir)
    else:
        text = write_generic_report(runs, dirs, out_dir)
    (out_dir / "README.md").write_text(text)
    for line in chance_messages(runs):
        print(line)
    done = [r for r in runs if r.status == "complete"]
    print(f"report: {len(done)}/{len(runs)} complete runs -> {out_dir}/README.md")
    return out_dir


def write_generic_report(runs: list[Run], dirs: list[str], out_dir: Path) -> str:
    """Any other sweep: validation error curves and the final error per configuration."""
    done = [r for r in runs if r.status == "complete"]
    tables = val_error_curves(done, out_dir / "val_error.png")
    tables["final"] = final_by_configuration(done)
    write_tables(tables, out_dir)
    varying = ", ".join(sorted(varying_keys(done) - {"seed"})) or "nothing but the seed"
    return (
        f"# Report: {', '.join(sorted({r.name for r in done})) or 'no complete runs'} — runs "
        f"differ in {varying}\n\n"
        + "".join(line + "\n" for line in chance_banner(runs))
        + "![](val_error.png)\n\n"
        "Final validation error per configuration (mean ± std over seeds):\n\n"
        + md_table(tables["final"])
        + "\n"
        + runs_section(runs, dirs, out_dir)
    )


def _check_out_dir(out_dir: Path, given: bool) -> Path:
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


def _create_out_dir(out_dir: Path) -> None:
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


def final_by_configuration(runs: list[Run]) -> pd.DataFrame:
    """Final and best validation error per configuration (runs differing only in seed pooled)."""
    keys = sorted(varying_keys(runs) - {"seed"})
    rows = []
    for r in runs:
        o = r.override_values
        rows.append(
            {
                **{k: o.get(k, "") for k in keys},
                "val_error": r.final_val_error,
                "best": r.summary.get("best_val_error"),
            }
        )
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    g = df.groupby(keys, sort=True) if keys else df.groupby(lambda _: "all")
    out = g.agg(
        seeds=("val_error", "size"),
        final_mean=("val_error", "mean"),
        final_std=("val_error", "std"),
        best_mean=("best", "mean"),
    ).reset_index()
    return out.round(4)
