"""The "Commands, hardware, time" part of a report's README: the ``normbench train`` commands
that make its runs again, the ``normbench report`` command, dates and hardware."""

from __future__ import annotations

import shlex
import sys
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from normbench.report.collect import Run, runs_table
from normbench.report.flags import flag_lines, incomplete_lines
from normbench.report.output import md_table

SECTION = "## Commands, hardware, time\n"


def training_command(runs: list[Run]) -> str:
    """The ``normbench train`` command that makes these runs: one run, or one multirun whose
    swept keys list every value the runs took."""
    values: dict[str, list[str]] = {}
    for r in runs:
        for override in r.overrides:
            key, _, value = override.partition("=")
            if value not in values.setdefault(key, []):
                values[key].append(value)
    multi = len(runs) > 1
    args = [shlex.quote(f"{k}={','.join(v)}") for k, v in values.items()]
    return "normbench train " + ("-m " if multi else "") + " ".join(args)


def training_commands(runs: list[Run]) -> list[str]:
    """``normbench train -m`` commands that make these runs: runs whose overrides differ only in
    per_device.images and seed share one command."""
    groups: dict[tuple[str, ...], dict[str, list[str]]] = {}
    for r in runs:
        fixed = tuple(
            o for o in r.overrides if o.partition("=")[0] not in ("per_device.images", "seed")
        )
        values = groups.setdefault(fixed, {"per_device.images": [], "seed": []})
        for o in r.overrides:
            key, _, value = o.partition("=")
            if key in values and value not in values[key]:
                values[key].append(value)
    cmds = []
    for fixed, values in groups.items():
        swept = [
            f"{k}={','.join(sorted(v, key=_number, reverse=k == 'per_device.images'))}"
            for k, v in values.items()
            if v
        ]
        args = sorted(fixed, key=lambda o: not o.startswith("experiment=")) + swept
        cmds.append("normbench train -m " + " ".join(shlex.quote(a) for a in args))
    return sorted(cmds)


def _number(value: str) -> float:
    try:
        return float(value)
    except ValueError:
        return float("inf")


def command_lines(training: str, commands: list[str], dirs: list[str], out_dir: Path) -> list[str]:
    """The section's heading, the training ``commands`` under the line ``training``, and the
    ``normbench report`` command that made this report."""
    report = "normbench report " + " ".join(map(shlex.quote, dirs)) + f" --out {out_dir}"
    return [SECTION, f"{training}\n", "```", *commands, "```\n", "This report:\n", "```", report]


def dates_line(runs: list[Run]) -> str:
    """When ``runs`` finished and when this report was made (with which python)."""
    dates = sorted(r.summary.get("finished_at", "") for r in runs if r.summary.get("finished_at"))
    made = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return (
        f"- Runs finished: {dates[0] if dates else '?'} … {dates[-1] if dates else '?'}; report made "
        f"{made} (python {sys.version.split()[0]})\n"
    )


def runs_section(runs: list[Run], dirs: list[str], out_dir: Path) -> str:
    """The section of any study: commands, hardware, dates, where each run's time went, flags
    and unfinished runs."""
    table = runs_table(runs)
    env = [r.summary.get("environment", {}) for r in runs if r.summary.get("environment")]
    hardware = sorted(
        {
            f"{e.get('device_name')} ({e.get('device')}, {e.get('threads')} threads, "
            f"torch {e.get('torch')}, git {e.get('git')})"
            for e in env
        }
    )
    lines = command_lines("Training:", [training_command(runs)], dirs, out_dir)
    lines += ["```\n", f"- Hardware: {'; '.join(hardware) or 'unknown'}", dates_line(runs)]
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
            md_table(fmt),
        ]
    lines += flag_lines(runs)
    lines += incomplete_lines(runs, "the figures")
    lines += ["\nPer-run numbers: [runs.csv](runs.csv).\n"]
    return "\n".join(lines) + "\n"
