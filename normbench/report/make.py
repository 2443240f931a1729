"""``normbench report``: runs -> CSV + PNG + README.md beside the paper's claims.

Every number in the README is computed from the run directories; the README also records
the commands, the hardware, the scale of the runs and the date. This module picks the study
(BN Figure 1, small batch, or any other sweep) and writes what all reports share.
"""

from __future__ import annotations

import os
import shlex
import sys
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from normbench.errors import NormbenchError
from normbench.report.bn_fig1_report import write_bn_fig1_report
from normbench.report.collect import Run, collect, runs_table
from normbench.report.commands import training_command
from normbench.report.figures import val_error_curves
from normbench.report.flags import chance_banner, chance_messages, flag_lines
from normbench.report.output import md_table as _md
from normbench.report.output import write_tables
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
    done = [r for r in runs if r.status == "complete"]
    table = runs_table(runs)
    table.to_csv(out_dir / "runs.csv", index=False)
    basis = done or runs  # which study: the complete runs, else every run
    names = {r.name for r in basis}
    if is_small_batch_study(runs):
        text = write_small_batch_report(runs, dirs, out_dir)
    elif names == {"bn_fig1"} and varying_keys(basis) <= {"norm", "seed"}:
        text = write_bn_fig1_report(done, basis, out_dir) + _runs_section(runs, dirs, out_dir)
    else:
        tables = val_error_curves(done, out_dir / "val_error.png")
        tables["final"] = final_by_configuration(done)
        write_tables(tables, out_dir)
        varying = ", ".join(sorted(varying_keys(done) - {"seed"})) or "nothing but the seed"
        text = (
            f"# Report: {', '.join(sorted({r.name for r in done})) or 'no complete runs'} — runs "
            f"differ in {varying}\n\n"
            + "".join(line + "\n" for line in chance_banner(runs))
            + "![](val_error.png)\n\n"
            "Final validation error per configuration (mean ± std over seeds):\n\n"
            + _md(tables["final"])
            + "\n"
            + _runs_section(runs, dirs, out_dir)
        )
    (out_dir / "README.md").write_text(text)
    for line in chance_messages(runs):
        print(line)
    print(f"report: {len(done)}/{len(runs)} complete runs -> {out_dir}/README.md")
    return out_dir


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


def _overrides(run: Run) -> dict[str, str]:
    return dict(o.partition("=")[::2] for o in run.overrides)


def varying_keys(runs: list[Run]) -> set[str]:
    """Override keys whose value is not the same in every run."""
    keys = {k for r in runs for k in _overrides(r)}
    return {k for k in keys if len({_overrides(r).get(k) for r in runs}) > 1}


def final_by_configuration(runs: list[Run]) -> pd.DataFrame:
    """Final and best validation error per configuration (runs differing only in seed pooled)."""
    keys = sorted(varying_keys(runs) - {"seed"})
    rows = []
    for r in runs:
        o = _overrides(r)
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


def _runs_section(runs: list[Run], dirs: list[str], out_dir: Path) -> str:
    table = runs_table(runs)
    env = [r.summary.get("environment", {}) for r in runs if r.summary.get("environment")]
    hardware = sorted(
        {
            f"{e.get('device_name')} ({e.get('device')}, {e.get('threads')} threads, "
            f"torch {e.get('torch')}, git {e.get('git')})"
            for e in env
        }
    )
    dates = sorted(r.summary.get("finished_at", "") for r in runs if r.summary.get("finished_at"))
    lines = ["## Commands, hardware, time\n", "Training:\n", "```", training_command(runs)]
    lines += [
        "```\n",
        "This report:\n",
        "```",
        "normbench report " + " ".join(map(shlex.quote, dirs)) + f" --out {out_dir}",
        "```\n",
    ]
    lines += [
        f"- Hardware: {'; '.join(hardware) or 'unknown'}",
        f"- Runs finished: {dates[0] if dates else '?'} … {dates[-1] if dates else '?'}; report made "
        f"{datetime.now(timezone.utc).isoformat(timespec='seconds')} "
        f"(python {sys.version.split()[0]})\n",
    ]
    if not table.empty and pd.to_numeric(table["wall_time_s"]).notna().any():
        shares = [c for c in table.columns if c.startswith("share_")]
        agg = table.groupby("norm").agg(
            runs=("seed", "size"),
            wall_time_s=("wall_time_s", "mean"),
            **{c: (c, "mean") for c in shares + [c for c in table.columns if c.startswith("ms_")]},
        )
        agg = agg.reset_index()
        fmt = agg.copy()
        fmt["wall_time_s"] = agg["wall_time_s"].map("{:.1f}".format)
        for c in shares:
            fmt[c] = agg[c].map(lambda v: f"{100 * v:.1f}%")
        for c in (c for c in agg.columns if c.startswith("ms_")):
            fmt[c] = agg[c].map("{:.3f}".format)
        lines += [
            "Wall time per run and where it went (mean over runs; `train_step` = forward, backward "
            "and optimizer step; `data` = batch indexing; `eval`, `probe`, `checkpoint`, `logging`; "
            "`other` = setup and everything untimed):\n",
            _md(fmt),
        ]
    lines += flag_lines(runs)
    failed = [r for r in runs if r.status != "complete"]
    if failed:
        lines += ["Runs not complete (left out of the figures):\n"]
        lines += [f"- {r.path}: {r.status} {r.summary.get('error', '')}" for r in failed]
    lines += ["\nPer-run numbers: [runs.csv](runs.csv).\n"]
    return "\n".join(lines) + "\n"
