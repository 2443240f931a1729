"""normbench bench lstm: a tiny run writes its CSV and README section, our cell's outputs equal
torch.nn.LSTM's with the same weights, and --readme-only rewrites the section alone."""

from __future__ import annotations

import csv

import torch

from normbench.bench.lstm import TorchLSTM, Unrolled, cell, main


def test_the_reference_holds_our_weights():
    torch.manual_seed(0)
    ours = Unrolled(cell("none", 6, 2, (1, 5, 4)))
    seq = torch.randn(5, 3, 4)
    torch.testing.assert_close(ours(seq), TorchLSTM(ours)(seq), rtol=1e-5, atol=1e-6)


def test_a_tiny_run_writes_rows_and_the_readme_section(tmp_path):
    argv = ["--batch", "4", "--steps", "3", "--features", "5", "--hidden", "6", "--repeats", "1"]
    argv += ["--warmup", "0", "--threads", "1", "--no-compile", "--norms", "batch:per_step"]
    argv += ["--out", str(tmp_path), "--conditions", "test"]
    assert main(argv) == 0
    with (tmp_path / "lstm-cpu-1t.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["case"] for r in rows] == ["torch.nn.LSTM", "ours", "ours, norm=batch:per_step"]
    assert rows[0]["ratio"] == "1.00" and rows[1]["within_target"] in ("True", "False")
    assert float(rows[1]["max_abs_diff"]) < 1e-5
    readme = (tmp_path / "README.md").read_text()
    assert "<!-- bench lstm -->" in readme and "| ours | False |" in readme
    (tmp_path / "README.md").write_text("notes kept\n")
    assert main(["--readme-only", "--out", str(tmp_path)]) == 0
    text = (tmp_path / "README.md").read_text()
    assert text.startswith("notes kept") and "## LSTM: our cell against torch.nn.LSTM" in text
