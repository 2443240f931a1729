"""A study's report folder: the study's own tables, figures and claims, and what every study
README states the same way (the command, the verdict rule, the revisions of the runs)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

from normbench.report.collect import Run, runs_table
from normbench.report.flags import chance_messages
from normbench.report.output import create_out_dir
from normbench.report.verdicts import RULE, claims_table, write_claims
from normbench.studies.study import CLAIMS_HERE, ReportInput, Study, Variant

if TYPE_CHECKING:
    from normbench.studies.run import Selection


def revisions(runs: list[Run]) -> list[str]:
    """The git revisions the runs (and their evaluations) were made at, sorted."""
    found = {str((r.summary.get("environment") or {}).get("git") or "unknown") for r in runs}
    for r in runs:
        found |= set(evaluation_revisions(r.path))
    return sorted(found)


def evaluation_revisions(run_dir: Path) -> list[str]:
    """The ``git`` column of ``run_dir/evals.csv`` (rows written before it existed: none)."""
    import csv

    path = run_dir / "evals.csv"
    if not path.is_file():
        return []
    with path.open(newline="", encoding="utf-8") as f:
        return [row["git"] for row in csv.DictReader(f) if row.get("git")]


def revision_note(runs: list[Run]) -> str:
    """One line: the revision of the study, or a warning that there are several / a dirty tree."""
    revs = revisions(runs)
    dirty = [r for r in revs if r.endswith("-dirty")]
    if len(revs) == 1 and not dirty:
        return f"All runs and evaluations from one revision: git {revs[0]}."
    shown = ", ".join(revs[:6]) + (" …" if len(revs) > 6 else "")
    text = (
        f"one git revision ({shown})" if len(revs) == 1 else f"{len(revs)} git revisions ({shown})"
    )
    if dirty:
        text += (
            f", {len(dirty)} of them from a modified (dirty) tree"
            if len(revs) > 1
            else (", from a modified (dirty) tree")
        )
    return f"**Runs and evaluations come from {text}.**"


def made_line(runs: list[Run]) -> str:
    """Hardware, dates and wall time of the runs, as their summary.json files record them."""
    from datetime import datetime, timedelta

    spans, hardware, loads = [], set(), []
    for r in runs:
        s = r.summary
        env = s.get("environment") or {}
        if isinstance(env.get("load_average"), int | float):
            loads.append((float(env["load_average"]), env.get("cpu_count")))
        hardware.add(
            f"{env.get('device_name', '?')} ({env.get('device', '?')}, {env.get('threads', '?')} "
            f"thread(s) per run, torch {env.get('torch', '?')})"
        )
        if s.get("finished_at") and isinstance(s.get("wall_time_s"), int | float):
            end = datetime.fromisoformat(s["finished_at"])
            spans.append((end - timedelta(seconds=float(s["wall_time_s"])), end))
    if not spans:
        return f"Hardware: {'; '.join(sorted(hardware)) or 'unknown'}."
    first, last = min(a for a, _ in spans), max(b for _, b in spans)
    per_run = [(b - a).total_seconds() for a, b in spans]
    return (
        f"Hardware: {'; '.join(sorted(hardware))}. Runs trained {first:%Y-%m-%d %H:%M} to "
        f"{last:%Y-%m-%d %H:%M} UTC ({(last - first).total_seconds() / 60:.0f} min, pauses "
        f"included) for {len(spans)} runs: {sum(per_run) / 60:.0f} min of training wall time "
        f"in all ({min(per_run):.0f}–{max(per_run):.0f} s each, a resumed run's parts added; "
        "evaluation phases not included, their times are in each run's evals.csv)."
        + (
            f" Load average when the runs ended: {min(a for a, _ in loads):.1f}–"
            f"{max(a for a, _ in loads):.1f} on {loads[0][1]} cores (other work slows wall times)."
            if loads
            else ""
        )
    )


def write_study_report(sel: Selection, runs: list[Run]) -> Path:
    """The report of ``normbench study report|run``: into the study's results folder."""
    return write_report(
        sel.study, sel.variant, runs, [str(sel.runs_root)], sel.out_dir, sel.command()
    )


def write_report(
    study: Study,
    variant: Variant | None,
    runs: list[Run],
    dirs: list[str],
    out_dir: Path,
    command: str,
) -> Path:
    """Write ``out_dir``: runs.csv, the study's own files, README.md and claims.csv."""
    create_out_dir(out_dir)
    runs_table(runs).to_csv(out_dir / "runs.csv", index=False)
    output = study.report(ReportInput(study, variant, runs, dirs, out_dir, command))
    note = revision_note(runs)
    several = len(revisions(runs)) > 1 or "dirty" in note
    claims = [
        dataclasses.replace(
            c,
            study=out_dir.name,
            scale=(c.scale or study.scale) + (f" ({note.strip('*')})" if several else ""),
        )
        for c in output.claims
    ]
    section = ("## Claims\n\n" + claims_table(claims) + "\n" + RULE + "\n") if claims else ""
    text = output.text.rstrip() + "\n\n"
    if CLAIMS_HERE in text:
        text = text.replace(CLAIMS_HERE, section)
    elif section:
        text += section + "\n"
    text += f"## How this was made\n\n```\n{command}\n```\n\n{made_line(runs)}\n\n{note}\n"
    (out_dir / "README.md").write_text(text, encoding="utf-8")
    write_claims(claims, out_dir)
    for line in chance_messages(runs):
        print(line)
    done = sum(1 for r in runs if r.status == "complete")
    print(f"report: {done}/{len(runs)} complete runs -> {out_dir}/README.md ({len(claims)} claims)")
    return out_dir
