"""docs/papers.md holds the papers' numbers; normbench/report/papers.py must say the same."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from normbench.report import papers
from normbench.report.papers import BN_FIG1, GN_PAPER

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "papers.md"
NORMS = {"BN": "batch", "GN": "group", "LN": "layer", "IN": "instance", "BRN": "batch_renorm"}
# a number as written in prose: 50,000 · 23.6 · 1803.08494 (thousands separators dropped)
NUMBER = re.compile(r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?")


def table(name: str) -> list[list[str]]:
    """The markdown table right under ``<!-- report table: name -->`` in docs/papers.md, as rows
    of cells (header first, separator row left out)."""
    lines = DOC.read_text(encoding="utf-8").splitlines()
    marker = f"<!-- report table: {name} -->"
    assert marker in lines, f"docs/papers.md has no {marker}"
    rows = []
    for line in lines[lines.index(marker) + 1 :]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if all(set(c) <= set("-: ") for c in cells):
            continue
        rows.append(cells)
    assert len(rows) >= 2, f"the {name} table in docs/papers.md has no rows"
    return rows


def number(cell: str) -> float:
    """A table cell as a number: ``+0.5``, ``−0.8`` (unicode minus), ``23.6``."""
    return float(cell.replace("−", "-").replace("+", ""))


def numbers_in(text: str) -> set[str]:
    return {m.replace(",", "") for m in NUMBER.findall(text)}


def strings(value: Any) -> list[str]:
    """Every string inside nested dicts and lists (keys included)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in strings(k) + strings(v)]
    if isinstance(value, list | tuple):
        return [s for v in value for s in strings(v)]
    return []


def test_gn_table1_is_the_documented_one():
    header, values = table("gn_table1")
    assert {NORMS[h]: number(v) for h, v in zip(header, values, strict=True)} == GN_PAPER["table1"]


def test_gn_table2_is_the_documented_one():
    header, *rows = table("gn_table2")
    sizes = [int(n) for n in header[1:]]
    doc = {row[0]: dict(zip(sizes, map(number, row[1:]), strict=True)) for row in rows}
    assert {NORMS[k]: doc[k] for k in ("BN", "GN")} == GN_PAPER["table2"]
    # the documented GN − BN row is the difference of the two rows above it
    gn, bn = GN_PAPER["table2"]["group"], GN_PAPER["table2"]["batch"]
    assert doc["GN − BN"] == {n: round(gn[n] - bn[n], 1) for n in sizes}


def test_gn_batch_renorm_is_the_documented_one():
    header, *rows = table("gn_batch_renorm")
    assert header[:2] == ["images per GPU", "BRN"]
    doc = {int(row[0]): dict(zip(header[1:], map(number, row[1:]), strict=True)) for row in rows}
    assert {n: r["BRN"] for n, r in doc.items()} == GN_PAPER["batch_renorm"]
    for n, r in doc.items():  # the BN and GN beside it are Table 2's
        assert (r["BN"], r["GN"]) == (
            GN_PAPER["table2"]["batch"][n],
            GN_PAPER["table2"]["group"][n],
        )


@pytest.mark.parametrize("name, constant", [("BN_FIG1", BN_FIG1), ("GN_PAPER", GN_PAPER)])
def test_every_number_papers_py_writes_is_in_the_doc(name, constant):
    """Setups and claims are prose: each number they state must be one docs/papers.md states."""
    documented = numbers_in(DOC.read_text(encoding="utf-8"))
    missing = {
        n: text for text in strings(constant) for n in numbers_in(text) if n not in documented
    }
    assert not missing, f"{name} states numbers docs/papers.md does not: {missing}"


def test_papers_py_points_to_the_doc():
    assert "docs/papers.md" in (papers.__doc__ or "")


def test_no_reference_to_the_old_papers_sheet():
    """The sheet the numbers were first gathered in is not in the repository: cite docs/papers.md."""
    places = [ROOT / "README.md", *(ROOT / "results").rglob("README.md")]
    places += [*(ROOT / "normbench" / "report").rglob("*.py"), *(ROOT / "docs").rglob("*.md")]
    cited = [str(p.relative_to(ROOT)) for p in places if "PAPERS.md" in p.read_text("utf-8")]
    assert not cited
