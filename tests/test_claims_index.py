"""results/README.md, the claims index: every study folder's claims.csv, one row per claim, a
claim's rows at several scales side by side, and the folders without claims named."""

from __future__ import annotations

from normbench.report.verdicts import Claim, write_claims
from normbench.studies.index import write_index


def _claim(study: str, key: str, verdict: str) -> Claim:
    return Claim(
        study,
        key,
        f"claim {key}",
        "paper §1",
        "1.0",
        "+1.00 ± 0.20 (n = 3)",
        "rule",
        verdict,
        f"scale of {study}",
    )


def test_index_groups_a_claim_across_scales_and_names_missing_folders(tmp_path):
    results = tmp_path / "results"
    for folder, verdicts in (
        ("bn_fig1", {"a": "shown", "b": "not shown (the interval holds 0)"}),
        ("bn_fig1_lr", {"higher_lr": "opposite"}),
    ):
        (results / folder).mkdir(parents=True)
        write_claims([_claim(folder, k, v) for k, v in verdicts.items()], results / folder)
    text = write_index(results).read_text()
    rows = [
        line
        for line in text.splitlines()
        if line.startswith("| claim ") and not line.startswith("| claim |")
    ]
    assert [r.split(" | ")[0] for r in rows] == ["| claim a", "| claim b", "| claim higher_lr"]
    assert "[bn_fig1_lr](bn_fig1_lr/README.md)" in text
    assert "3 claims: 1 shown, 1 not shown, 1 opposite." in text
    assert "small_batch (main): " in text and "domain_shift (main): " in text


def test_index_puts_rows_of_one_claim_key_together(tmp_path):
    results = tmp_path / "results"
    for folder, keys in (
        ("small_batch", ["rise", "gn_wins"]),
        ("small_batch_long", ["gn_wins", "rise"]),
    ):
        (results / folder).mkdir(parents=True)
        write_claims([_claim(folder, k, "shown") for k in keys], results / folder)
    text = write_index(results).read_text()
    order = [
        line.split(" | ")[-1]
        for line in text.splitlines()
        if line.startswith("| claim ") and not line.startswith("| claim |")
    ]
    keys = [
        line.split(" | ")[0]
        for line in text.splitlines()
        if line.startswith("| claim ") and not line.startswith("| claim |")
    ]
    assert keys == ["| claim rise", "| claim rise", "| claim gn_wins", "| claim gn_wins"]
    assert "small_batch_long" in order[1] and "small_batch_long" in order[3]
