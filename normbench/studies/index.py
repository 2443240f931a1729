"""The claims index, results/README.md: one row per claim of every study, the page a researcher
reads first. Made from each study folder's claims.csv (written with the study's report), so it
needs no run directory; a claim made at several scales (a study and its variants) has its rows
side by side."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

from normbench.report.verdicts import CLAIMS_FILE, RULE, Claim, read_claims
from normbench.studies import get_study, names

HEAD = """# normbench results: the claims index

One row per claim of every study: the paper's claim and its source (sections of
[docs/papers.md](../docs/papers.md)), the paper's number at the paper's setting, ours at the same
setting where we have it (mean ± 95% interval half-width, n seeds), the verdict, the scale of our
runs and the study's folder (its README says how each number was made: command, hardware, date,
wall time, git revision). Rows of one claim at several scales stand together.

{rule}

Made by `normbench study report all` (`make results`) on {date} from the committed claims.csv files.
"""


def study_folders(results: Path) -> list[tuple[str, str, Path]]:
    """(study, setting, folder) of every registered study and variant, main setting first."""
    out = []
    for name in names():
        study = get_study(name)
        out.append((name, "main", results / Path(study.results_dir(None)).name))
        for variant in study.variants.values():
            out.append((name, variant.name, results / Path(variant.results).name))
    return out


def index_rows(results: Path) -> tuple[list[tuple[str, Claim]], list[str]]:
    """The claims (with their folder's name), grouped by study then claim key; and the study
    folders that have no claims.csv yet."""
    missing = []
    by_study: dict[str, list[tuple[str, Claim]]] = {}
    for study, setting, folder in study_folders(results):
        path = folder / CLAIMS_FILE
        if not path.is_file():
            missing.append(f"{study} ({setting}): {folder}/ has no {CLAIMS_FILE}")
            continue
        by_study.setdefault(study, []).extend((folder.name, c) for c in read_claims(path))
    rows: list[tuple[str, Claim]] = []
    for claims in by_study.values():
        order = list(dict.fromkeys(c.key for _, c in claims))
        rows += sorted(claims, key=lambda fc: order.index(fc[1].key))
    return rows, missing


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def render(rows: list[tuple[str, Claim]], missing: list[str]) -> str:
    date = datetime.now(timezone.utc).date().isoformat()
    lines = [HEAD.format(rule=RULE, date=date)]
    tally = Counter(c.outcome for _, c in rows)
    lines.append(
        f"{len(rows)} claims: "
        + ", ".join(f"{n} {what}" for what, n in tally.most_common())
        + ".\n"
    )
    lines += [
        "| claim | source | paper | ours | verdict | scale | study |",
        "|---|---|---|---|---|---|---|",
    ]
    for folder, c in rows:
        cells = (c.claim, c.source, c.paper, c.ours, f"**{c.verdict}**", c.scale)
        link = f"[{folder}]({folder}/README.md)"
        lines.append("| " + " | ".join(map(_cell, cells)) + f" | {link} |")
    if missing:
        lines += ["", "Not in this index yet (no claims.csv: run `normbench study run NAME`):", ""]
        lines += [f"- {m}" for m in missing]
    return "\n".join(lines) + "\n"


def write_index(results: Path) -> Path:
    """Write ``results/README.md`` from the study folders' claims.csv."""
    rows, missing = index_rows(results)
    results.mkdir(parents=True, exist_ok=True)
    path = results / "README.md"
    path.write_text(render(rows, missing), encoding="utf-8")
    print(
        f"claims index: {len(rows)} claims of {len({f for f, _ in rows})} study folders -> {path}"
    )
    return path
