"""``normbench bench norms --quick``: every variant is timed and the outputs are written."""

from __future__ import annotations

import csv
import math

import torch

from normbench.bench import norms as bench


def test_quick_bench_writes_csv_png_and_readme(tmp_path, monkeypatch):
    monkeypatch.setattr(bench, "QUICK_SHAPES", [(4, 8, 4, 4), (6, 8)])
    threads = torch.get_num_threads()
    try:
        assert (
            bench.main(["--quick", "--device", "cpu", "--out", str(tmp_path), "--threads", "1"])
            == 0
        )
    finally:
        torch.set_num_threads(threads)
    with (tmp_path / "norms-cpu.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert set(bench.COLUMNS) <= set(rows[0])
    assert {r["variant"] for r in rows} == {c.label for c in bench.CASES}
    for row in rows:
        if row["variant"] == "instance" and row["shape"] == "6x8":
            assert math.isnan(float(row["ms"])) and "spatial" in row["reason"]
            continue
        assert float(row["ms"]) > 0
        if row["variant"] in bench.REFERENCE.values():
            assert float(row["ratio"]) == 1.0
        if row["within_target"] == "False":
            assert row["reason"]
    assert (tmp_path / "norms-cpu.png").stat().st_size > 1000
    readme = (tmp_path / "README.md").read_text()
    assert "normbench bench norms" in readme and "| 4x8x4x4 | frn |" in readme
