"""``normbench report``: runs -> CSV + PNG + README.md beside the paper's claims.

Every number in the README is computed from the run directories; the README also records
the commands, the hardware, the scale of the runs and the date. Runs recording a study's
name get that study's report (normbench/studies/); any other sweep gets the generic report.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from normbench.report.collect import Run, collect, runs_table, varying_keys
from normbench.report.commands import runs_section
from normbench.report.figures import val_error_curves
from normbench.report.flags import chance_banner, chance_messages
from normbench.report.output import check_out_dir, create_out_dir, md_table, write_tables


def make_report(dirs: list[str], out: str | None) -> Path:
    """Collect the runs under ``dirs`` and write their report into ``out``.

    Runs whose recorded ``name`` is a study's (or a study variant's) get that study's report
    and claims; any other runs get the generic report.

    Raises:
        NormbenchError: ``out`` is a file or cannot be created, or a run directory holds a file
            that cannot be read; nothing is written then.
    """
    out_dir = check_out_dir(Path(out) if out else Path(dirs[0]) / "report", out is not None)
    runs = collect(dirs)
    create_out_dir(out_dir)
    found = study_of_runs(runs)
    if found is not None:
        from normbench.studies.report import write_report

        study, variant = found
        command = "normbench report " + " ".join(dirs) + (f" --out {out}" if out else "")
        write_report(study, variant, runs, dirs, out_dir, command)
        return out_dir
    runs_table(runs).to_csv(out_dir / "runs.csv", index=False)
    (out_dir / "README.md").write_text(write_generic_report(runs, dirs, out_dir))
    for line in chance_messages(runs):
        print(line)
    done = [r for r in runs if r.status == "complete"]
    print(f"report: {len(done)}/{len(runs)} complete runs -> {out_dir}/README.md")
    return out_dir


def study_of_runs(runs: list[Run]):
    """The (study, variant) whose name every run records, or None (several names, none, or the
    runs of an ablation sweep, ``+sweep=…``, which record ``ablation``)."""
    from normbench.studies import study_of_run_name

    names = {r.name for r in runs}
    if len(names) != 1 or any(r.config.get("ablation") for r in runs):
        return None
    found = study_of_run_name(names.pop())
    if found is None:
        return None
    study, variant = found
    return study, study.variant(variant)


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
