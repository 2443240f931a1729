"""What a report flags instead of judging: comparisons with nothing to compare, runs that ended
at chance level, the warnings runs recorded, and runs that did not complete.

A run at chance level stays in the tables (its numbers are real results) but is marked in the
README and named on stdout, so that a figure made of failed trainings does not pass unnoticed.
"""

from __future__ import annotations

from normbench.report.collect import CHANCE_FACTOR, Run

NOT_ENOUGH = "not enough runs"
CHANCE_MARK = "⚠ at chance level"


def not_enough(needs: str) -> str:
    """The verdict of a claim whose comparison has nothing to compare: what it needs."""
    return f"{NOT_ENOUGH}: needs {needs}"


def chance_detail(run: Run) -> str:
    """Why ``run`` counts as at chance level, e.g. ``val error 0.90 with 10 classes``."""
    err, classes = run.final_val_error, run.num_classes
    parts = [
        f"val error {err:.2f}" if err is not None else "",
        f"with {classes} classes" if classes else "",
    ]
    return " ".join(p for p in parts if p) or "as its summary.json records"


def at_chance(runs: list[Run]) -> list[Run]:
    """The runs that ended at chance level."""
    return [r for r in runs if r.at_chance]


def chance_messages(runs: list[Run]) -> list[str]:
    """One stdout line per run that ended at chance level."""
    return [f"report: {r.path} ended at chance level ({chance_detail(r)})" for r in at_chance(runs)]


def chance_banner(runs: list[Run]) -> list[str]:
    """A README line under the title when some runs ended at chance level (else nothing)."""
    flagged = at_chance(runs)
    if not flagged:
        return []
    return [
        f"**{CHANCE_MARK}: {len(flagged)} of {len(runs)} runs** ended with a validation accuracy "
        f"below {CHANCE_FACTOR} / classes: they are in the tables and figures, but they learned "
        "next to nothing (see the list of runs below).\n"
    ]


def flag_lines(runs: list[Run]) -> list[str]:
    """The README's list of runs at chance level and of the warnings runs recorded."""
    lines = []
    flagged = at_chance(runs)
    if flagged:
        lines += [
            f"Runs that ended at chance level (final accuracy below {CHANCE_FACTOR} / classes; "
            "kept in the tables: check their learning rate, data and norm):\n"
        ]
        lines += [f"- {CHANCE_MARK}: {r.path} ({chance_detail(r)})" for r in flagged]
        lines.append("")
    warned = [r for r in runs if r.warnings]
    if warned:
        lines += ["Warnings the runs recorded:\n"]
        lines += [f"- ⚠ {r.path}: {w}" for r in warned for w in r.warnings]
        lines.append("")
    return lines


def run_cells(run: Run, final_error: bool = False) -> dict[str, str]:
    """A run's cells in a report's table of runs: its status (marked at chance level), steps
    done of planned, the final validation error (with ``final_error``) and the wall time."""
    err = run.final_val_error
    wall = run.summary.get("wall_time_s")
    return {
        "status": run.status + (f" {CHANCE_MARK}" if run.at_chance else ""),
        "steps": f"{run.summary.get('step', '?')}/{run.summary.get('steps', '?')}",
        **(
            {"final val error (%)": f"{100 * err:.2f}" if err is not None else "–"}
            if final_error
            else {}
        ),
        "wall time (s)": f"{wall:.0f}" if wall else "–",
    }


def incomplete_lines(runs: list[Run], left_out_of: str) -> list[str]:
    """The README's list of runs that did not complete (left out of ``left_out_of``), if any."""
    failed = [r for r in runs if r.status != "complete"]
    if not failed:
        return []
    return [f"Runs not complete (left out of {left_out_of}):\n"] + [
        f"- {r.path}: {r.status} {r.summary.get('error', '')}" for r in failed
    ]


def runs_section(
    runs: list[Run],
    rows: list[dict[str, object]],
    sort_by: list[str],
    files: str,
    left_out_of: str = "the table and claims",
) -> list[str]:
    """A study README's "Runs" section: one row per run (``rows``, with each run's
    :func:`run_cells`) sorted by ``sort_by``, the flags, the runs not complete, and ``files``
    (the line naming the study's CSV files)."""
    import pandas as pd

    from normbench.report.output import md_table

    lines = ["## Runs\n"]
    if rows:
        lines.append(md_table(pd.DataFrame(rows).sort_values(sort_by)))
    lines += flag_lines(runs)
    lines += incomplete_lines(runs, left_out_of) or ["All runs complete."]
    lines.append(f"\n{files}\n")
    return lines
