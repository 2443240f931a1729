"""`normbench bench inference` on a tiny model: a row per case and batch size, BN folded away
(none of its layers left), the no-norm network also as an fx graph (the folded networks' form),
every ratio to the `none` case of the same batch."""

from __future__ import annotations

import pandas as pd


def test_bench_inference_writes_a_row_per_case_and_batch(run_cli, tmp_path):
    code, out, err = run_cli(
        "bench",
        "inference",
        "--width",
        "0.0625",
        "--size",
        "16",
        "--batches",
        "1,4",
        "--norms",
        "batch,layer",
        "--calls",
        "2",
        "--repeats",
        "1",
        "--threads",
        "1",
        "--out",
        str(tmp_path / "bench"),
    )
    assert code == 0, out + err
    rows = pd.read_csv(tmp_path / "bench" / "inference-cpu.csv")
    cases = ["none", "none+fx", "batch", "batch+folded", "layer"]
    assert rows["case"].tolist() == cases * 2 and rows["batch"].tolist() == [1] * 5 + [4] * 5
    assert (rows["ms_per_image"] > 0).all()
    folded = rows[rows["folded"]]
    assert (folded["norm_layers_left"] == 0).all() and (folded["norm"] == "batch").all()
    for _, group in rows.groupby("batch"):
        floor = group.loc[group["case"] == "none", "ms_per_image"].item()
        expected = group["ms_per_image"] / floor
        assert ((group["ratio_to_none"] - expected).abs() <= 0.01 * expected + 0.002).all()
    assert rows["command"].str.startswith("normbench bench inference").all()


def test_bench_inference_refuses_an_unknown_norm(run_cli, tmp_path):
    code, out, err = run_cli("bench", "inference", "--norms", "batch,bogus")
    assert code == 2 and "--norms: unknown bogus" in err


def test_without_a_folded_case_there_is_no_fx_floor(run_cli, tmp_path):
    args = ["--width", "0.0625", "--size", "16", "--calls", "1", "--repeats", "1"]
    code, out, err = run_cli(
        "bench", "inference", *args, "--norms", "layer", "--out", str(tmp_path / "b")
    )
    assert code == 0, out + err
    assert pd.read_csv(tmp_path / "b" / "inference-cpu.csv")["case"].tolist() == ["none", "layer"]
