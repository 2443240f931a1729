"""`normbench bench corruptions` on a few tiny images: one CSV row per corruption, with times."""

from __future__ import annotations

import pandas as pd


def test_bench_corruptions_writes_a_row_per_corruption(run_cli, tmp_path):
    code, out, err = run_cli(
        "bench",
        "corruptions",
        "--images",
        "16",
        "--batch",
        "8",
        "--repeats",
        "1",
        "--width",
        "0.0625",
        "--corruptions",
        "gaussian_noise,contrast,jpeg_compression",
        "--threads",
        "1",
        "--out",
        str(tmp_path / "bench"),
        "--conditions",
        "two words",
    )
    assert code == 0, out + err
    rows = pd.read_csv(tmp_path / "bench" / "corruptions-cpu.csv")
    assert rows["corruption"].tolist() == ["gaussian_noise", "contrast", "jpeg_compression"]
    assert (rows["ms_corrupt"] > 0).all() and (rows["ms_forward"] > 0).all()
    expected = rows["ms_corrupt"] / rows["ms_forward"]
    assert ((rows["ratio"] - expected).abs() <= 0.05 * expected + 0.001).all()
    assert rows["command"].str.startswith("normbench bench corruptions").all()
    assert rows["command"].str.endswith("--conditions 'two words'").all()  # shell-quoted
