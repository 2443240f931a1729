"""What the study's other settings found for the same claims (their claims.csv, where written).

The variants share claim keys, so a verdict here can be set beside the verdict at another scale
(0.27 against 2.2 epochs, simulated devices against processes): a reader of one README learns
when another scale overturns it.
"""

from __future__ import annotations

from pathlib import Path

from normbench.report.output import md_table
from normbench.report.verdicts import CLAIMS_FILE, Claim, read_claims
from normbench.studies.study import Study


def other_settings(study: Study, out_dir: Path) -> list[tuple[Path, dict[str, Claim]]]:
    """Each other results folder of the study that holds a claims.csv, with its claims by key."""
    found = []
    for variant in [None, *study.variants.values()]:
        folder = study.results_dir(variant)
        path = folder / CLAIMS_FILE
        if folder.resolve() == Path(out_dir).resolve() or not path.is_file():
            continue
        found.append((folder, {c.key: c for c in read_claims(path)}))
    return found


def other_scale_lines(study: Study, out_dir: Path, claims: list[Claim]) -> list[str]:
    """The README section: each claim's verdict here beside the other settings' verdicts."""
    import pandas as pd

    head = "## The same claims at the study's other settings\n"
    others = [
        (f, by_key)
        for f, by_key in other_settings(study, out_dir)
        if set(by_key) & {c.key for c in claims}
    ]
    if not others:
        folders = ", ".join(
            str(study.results_dir(v))
            for v in [None, *study.variants.values()]
            if study.results_dir(v).resolve() != Path(out_dir).resolve()
        )
        return [
            head,
            f"No other setting of the study has a claims.csv with these claims yet (looked in "
            f"{folders}); once one has, this section sets its verdicts beside these.\n",
        ]
    rows, differ = [], []
    for c in claims:
        row = {"claim": c.key, "here": c.outcome}
        for folder, by_key in others:
            other = by_key.get(c.key)
            row[str(folder)] = f"{other.outcome}: {other.ours}" if other else "–"
            if other and other.outcome != c.outcome:
                differ.append(f"{c.key} ({folder}: {other.outcome}, here: {c.outcome})")
        rows.append(row)
    scales = [f"- {folder}: {next(iter(by_key.values())).scale}" for folder, by_key in others]
    note = (
        f"**The verdict differs at another setting for {len(differ)} claim(s): "
        + "; ".join(differ)
        + ".**"
        if differ
        else "Every claim has the same verdict at the other settings."
    )
    return [
        head,
        "Claims of the same key, read from the other settings' claims.csv (their verdict and "
        "their numbers). Their scales:\n",
        *scales,
        "",
        md_table(pd.DataFrame(rows)),
        note + "\n",
    ]
