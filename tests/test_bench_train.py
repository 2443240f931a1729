"""`normbench bench train`: CSV rows and columns, shares, norm attribution, README sections."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile, record_function

from normbench.bench.attribution import STEP_SCOPE, ModuleScopes, module_share
from normbench.bench.readme_sections import read_section, update_section
from normbench.bench.train_report import COLUMNS

TINY = [
    "--width",
    "0.0625",
    "--batch",
    "4",
    "--image-size",
    "8",
    "--train-size",
    "32",
    "--steps",
    "1",
    "--repeats",
    "1",
    "--warmup",
    "1",
    "--threads",
    "1",
]


def _rows(path):
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_bench_train_writes_csv_png_and_its_readme_section(run_cli, tmp_path):
    out = tmp_path / "bench"
    out.mkdir()
    other = "<!-- bench norms -->\n## Norms\n\n| a | b |\n<!-- /bench norms -->\n"
    (out / "README.md").write_text("# Benchmarks\n\nA note by hand.\n\n" + other)
    # 16x16 images, batch 8: steps long enough that the attribution's own overhead (a few µs of
    # hooks per norm slot) is a small share of them
    code, stdout, err = run_cli(
        "bench",
        "train",
        *TINY,
        "--batch",
        "8",
        "--image-size",
        "16",
        "--variants",
        "none,batch,group",
        "--modes",
        "eager-fp32,eager-bf16",
        "--out",
        str(out),
    )
    assert code == 0, stdout + err
    assert "repeat 1/1 [eager-bf16]" in err and "[eager-fp32] batch: profiling" in err  # progress
    rows = _rows(out / "iteration-cpu.csv")
    assert list(rows[0]) == COLUMNS
    got = [(r["mode"], r["variant"]) for r in rows]
    assert got == [
        (m, v)
        for m in ("eager-fp32", "eager-bf16")
        for v in ("identity", "none", "batch", "group[num_groups=4]")
    ]
    for r in rows:
        for key in ("norm_share_profiled", "norm_share_differential", "data_share"):
            assert 0.0 <= float(r[key]) <= 1.0, (key, r)
        assert float(r["step_ms"]) > 0 and float(r["images_per_s"]) > 0
        # one repeat: its own time is the median
        assert float(r["step_ms_repeats"]) == pytest.approx(float(r["step_ms"]), abs=0.01)
        assert r["precision"] == r["mode"].split("-")[1] and r["device"] == "cpu"
    for r in rows:
        if r["variant"] in (
            "identity",
            "none",
        ):  # identity slots: no backward in the ranges (their forward share is only timing
            # noise around the subtracted hook cost: no bound on it here, tests time nothing)
            assert float(r["norm_bwd_ms"]) == 0.0
            assert float(r["hook_overhead_ms"]) > 0
            if r["variant"] == "identity":  # the baseline of both measures
                assert (
                    float(r["norm_share_differential"]) == 0.0 == float(r["norm_ms_differential"])
                )
                assert float(r["norm_share_profiled"]) < 1e-6
        else:  # the backward of the norm layers was found
            assert float(r["norm_bwd_ms"]) > 0 and float(r["norm_share_profiled"]) > 0
    assert (out / "iteration-cpu.png").stat().st_size > 0
    readme = (out / "README.md").read_text()
    assert readme.startswith("# Benchmarks\n\nA note by hand.\n\n" + other)
    section = read_section(out / "README.md", "bench train")
    assert section is not None and "normbench bench train" in section and "quarter" in section
    assert "| eager-bf16 | batch |" in section and "### cpu:" in section
    # a second run replaces its own section only, and --append keeps earlier rows
    code, _, err = run_cli(
        "bench", "train", *TINY, "--modes", "eager-fp32", "--out", str(out), "--append"
    )
    assert code == 0, err
    assert len(_rows(out / "iteration-cpu.csv")) == len(rows) + 2  # identity and batch
    readme = (out / "README.md").read_text()
    assert readme.count("<!-- bench train -->") == 1 and other in readme


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--variants", "batch,bogus"],
            "unknown variant 'bogus' in --variants; known variants: batch, batch_detached,",
        ),
        (
            ["--modes", "jit-fp64"],
            "--modes: unknown jit-fp64; known modes: eager-fp32, eager-bf16,",
        ),
        (["--batch", "0"], "--batch must be >= 1"),
        (
            ["--variants", "weight[mean_only_bn]"],
            "option 'mean_only_bn' of weight must be key=value",
        ),
        (["--variants", "weight[data_init=false"], "must end with ']'"),
    ],
)
def test_bad_options_are_clear_errors(run_cli, tmp_path, args, message):
    code, out, err = run_cli("bench", "train", *TINY, *args, "--out", str(tmp_path / "o"))
    assert code == 2 and message in out + err
    assert "Traceback" not in out + err and not (tmp_path / "o").exists()


BENCHES = ("norms", "models", "train", "corruptions")


@pytest.mark.parametrize("bench", BENCHES)
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--repeats", "0"], "argument --repeats: must be >= 1, got 0"),
        (["--threads", "0"], "argument --threads: must be >= 1, got 0"),
        (["--threads", "two"], "argument --threads: expected an integer, got 'two'"),
        (["--device", "cuda"], "--device cuda: no CUDA device is available; use --device cpu"),
    ],
)
def test_every_bench_shares_the_options_and_their_errors(
    run_cli, tmp_path, monkeypatch, bench, args, message
):
    """The shared options (normbench/bench/options.py) reject the same mistakes with the same
    message in every bench command, before anything is timed or written."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    code, out, err = run_cli("bench", bench, *args, "--out", str(tmp_path / "o"))
    assert code == 2 and message in out + err, out + err
    assert "Traceback" not in out + err and not (tmp_path / "o").exists()


TINY_RUNS = {
    "norms": (["--quick", "--no-compile", "--threads", "1"], "norms-cpu-1t.csv"),
    "models": (
        ["--batch", "1", "--size", "32", "--repeats", "1", "--warmup", "0"],
        "models-cpu.csv",
    ),
    "train": ([*TINY, "--modes", "eager-fp32", "--no-profile"], "iteration-cpu.csv"),
    "corruptions": (
        ["--images", "4", "--batch", "4", "--repeats", "1", "--width", "0.0625"]
        + ["--corruptions", "contrast", "--threads", "1"],
        "corruptions-cpu.csv",
    ),
}


@pytest.mark.parametrize("bench", BENCHES)
def test_every_bench_writes_runs_bench_by_default_and_leaves_results_alone(
    run_cli, tmp_path, monkeypatch, bench
):
    """Run from a checkout, a bench must not overwrite the committed results/bench: without
    --out it writes runs/bench (git-ignored) and says so."""
    from normbench.bench import norm_timing, norms
    from normbench.bench.norm_cases import CASES

    monkeypatch.setattr(norms, "QUICK_SHAPES", [(4, 8, 4, 4)])
    monkeypatch.setattr(norm_timing, "CASES", CASES[:2])
    committed = tmp_path / "results" / "bench"
    committed.mkdir(parents=True)
    (committed / "README.md").write_text("<!-- bench norms -->\ncommitted\n<!-- /bench norms -->\n")
    before = {p: p.read_bytes() for p in (tmp_path / "results").rglob("*") if p.is_file()}
    args, name = TINY_RUNS[bench]
    threads = torch.get_num_threads()
    try:
        code, out, err = run_cli("bench", bench, *args)
    finally:
        torch.set_num_threads(threads)
    assert code == 0, out + err
    after = {p: p.read_bytes() for p in (tmp_path / "results").rglob("*") if p.is_file()}
    assert after == before  # nothing written, nothing changed under results/
    written = Path("runs") / "bench" / name
    assert (tmp_path / written).stat().st_size > 0
    assert f"{written}" in out + err  # it says where it wrote


def test_module_share_links_backward_nodes_to_the_scoped_modules():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1),
        nn.GroupNorm(2, 8),
        nn.Flatten(),
        nn.Linear(8 * 8 * 8, 10),
    )
    x, y = torch.randn(4, 3, 8, 8), torch.randint(0, 10, (4,))
    with ModuleScopes([model[1], model[4]]), profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(2):
            with record_function(STEP_SCOPE):
                nn.functional.cross_entropy(model(x), y).backward()
    share = module_share(prof.events(), cuda=False)
    # BN's running-statistics update creates no autograd node; the conv after it must not be
    # taken for the norm's backward, nor the ReLU.
    assert sorted(set(share.backward_nodes)) == [
        "NativeBatchNormBackward0",
        "NativeGroupNormBackward0",
    ]
    assert len(share.backward_nodes) == 4  # two layers, two steps
    assert 0 < share.share < 1 and share.forward_s > 0 and share.backward_s > 0
    assert not model[1]._forward_hooks and not model[1]._forward_pre_hooks  # hooks removed
    empty = module_share([], cuda=False)
    assert math.isnan(empty.share)


def test_readme_sections_replace_only_their_own_text(tmp_path):
    path = tmp_path / "README.md"
    update_section(path, "bench train", "first")
    assert path.read_text() == "<!-- bench train -->\nfirst\n<!-- /bench train -->\n"
    path.write_text(
        "# Title\n\n"
        + path.read_text()
        + "\nhand note\n\n<!-- bench norms -->\nN\n<!-- /bench norms -->\n"
    )
    update_section(path, "bench train", "second\nline")
    update_section(path, "bench models", "M")
    text = path.read_text()
    assert text.startswith(
        "# Title\n\n<!-- bench train -->\nsecond\nline\n<!-- /bench train -->\n\nhand note"
    )
    assert "<!-- bench norms -->\nN\n<!-- /bench norms -->" in text
    assert text.endswith("<!-- bench models -->\nM\n<!-- /bench models -->\n")
    assert read_section(path, "bench norms") == "N" and read_section(path, "nope") is None


@pytest.mark.slow
def test_compiled_mode_reports_the_differential_share_only(run_cli, tmp_path):
    code, out, err = run_cli(
        "bench", "train", *TINY, "--modes", "compiled-fp32", "--out", str(tmp_path)
    )
    if code != 0 and "could not build" in out + err:
        pytest.skip("torch.compile cannot build here")
    assert code == 0, out + err
    rows = _rows(tmp_path / "iteration-cpu.csv")
    assert [r["variant"] for r in rows] == ["identity", "batch"]
    assert all(
        r["norm_share_profiled"] == "" and "differential share only" in r["note"] for r in rows
    )
    assert all(0 <= float(r["norm_share_differential"]) <= 1 for r in rows)


def test_bench_models_rewrites_only_its_marked_section(run_cli, tmp_path):
    (tmp_path / "models-cpu.csv").write_text(
        "date,device_name,torch,threads,model,batch,image_size,repeats,ms_ours,ms_torchvision,ratio,"
        "within_target,max_abs_diff,conditions,command\n"
        "2026-01-01,Some CPU,2.0,1,resnet50,8,224,15,110.0,100.0,1.100,True,0.00e+00,idle,"
        "normbench bench models\n"
    )
    (tmp_path / "README.md").write_text("<!-- bench train -->\nT\n<!-- /bench train -->\n")
    code, out, err = run_cli("bench", "models", "--readme-only", "--out", str(tmp_path))
    assert code == 0, out + err
    section = read_section(tmp_path / "README.md", "bench models")
    assert (
        "| 2026-01-01 | Some CPU | 2.0 | 1 | resnet50 | 8 | 3x224x224 | 110.0 | 100.0 | 1.100 |"
        in section
    )
    assert read_section(tmp_path / "README.md", "bench train") == "T"


def test_readme_commands_elide_the_conditions_text():
    from normbench.bench.train_report import _short

    command = "normbench bench train --threads 1 --conditions 'other agents'\"'\"' jobs' --steps 2"
    assert _short(command) == "normbench bench train --threads 1 --conditions ... --steps 2"


def test_identity_baseline_is_the_normalized_network_without_its_norm_layers():
    import argparse

    from normbench.bench.train_setup import build_setup, synthetic_data

    args = argparse.Namespace(
        model="resnet50",
        width=0.0625,
        stem="cifar",
        batch=4,
        image_size=8,
        train_size=8,
        channels_last=False,
    )
    data = synthetic_data(args, torch.device("cpu"))
    base = build_setup(args, "identity", "eager-fp32", data, torch.device("cpu")).model
    bn = build_setup(args, "batch", "eager-fp32", data, torch.device("cpu"))
    plain = build_setup(args, "none", "eager-fp32", data, torch.device("cpu")).model
    assert base.conv1.bias is None and bn.model.conv1.bias is None and plain.conv1.bias is not None
    assert isinstance(base.bn1, nn.Identity)
    slots = [bn.model.bn1] + [getattr(b, f"bn{i}") for b in bn.model.blocks() for i in (1, 2, 3)]
    slots += [b.downsample[1] for b in bn.model.blocks() if b.downsample is not None]
    assert len(bn.norm_modules) == 53 and {id(m) for m in bn.norm_modules} == {id(m) for m in slots}


@pytest.mark.parametrize("stem", ["cifar", "imagenet"])
def test_reference_model_is_ours_layer_for_layer(stem):
    """torchvision's ResNet-50 (CIFAR stem swapped in) loads into ours strictly and computes the
    same outputs: the reference loop times the same network."""
    import argparse

    from omegaconf import OmegaConf

    from normbench.bench.train_setup import reference_model
    from normbench.engine.build import build_network, build_norm

    torch.manual_seed(0)
    theirs = reference_model(argparse.Namespace(stem=stem), 10).eval()
    cfg = OmegaConf.create({"name": "resnet50", "width": 1.0, "stem": stem})
    ours = build_network(cfg, build_norm({"name": "batch"}), 10, (3, 32, 32)).eval()
    ours.load_state_dict(theirs.state_dict(), strict=True)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x), rtol=1e-4, atol=1e-5)


def test_reference_rows_and_the_ratio(run_cli, tmp_path):
    args = [a if a != "0.0625" else "1" for a in TINY]  # the reference is width 1
    code, out, err = run_cli(
        "bench",
        "train",
        *args,
        "--variants",
        "batch",
        "--modes",
        "eager-fp32",
        "--reference",
        "--out",
        str(tmp_path),
    )
    assert code == 0, out + err
    rows = {r["variant"]: r for r in _rows(tmp_path / "iteration-cpu.csv")}
    assert list(rows) == ["identity", "batch", "torchvision-reference"]
    ref, ours = rows["torchvision-reference"], rows["batch"]
    assert float(ref["images_per_s"]) > 0 and "reference training loop" in ref["note"]
    ours_ips, ref_ips = float(ours["images_per_s"]), float(ref["images_per_s"])
    expected = ours_ips / ref_ips
    # the CSV rounds images/s to 0.1 and the ratio to 0.001: the ratio of the rounded values
    # agrees within what that rounding allows (slow steps under load give small images/s)
    rounding = expected * (0.05 / ours_ips + 0.05 / ref_ips) + 5e-4
    assert abs(float(ours["vs_reference"]) - expected) <= rounding
    assert rows["identity"]["vs_reference"] in ("", "nan")
    readme = (tmp_path / "README.md").read_text()
    assert "Against torchvision's reference training loop" in readme
    assert f"{float(ours['vs_reference']):.3f}x the reference" in readme


def test_reference_needs_resnet50_at_width_1(run_cli, tmp_path):
    code, out, err = run_cli("bench", "train", *TINY, "--reference", "--out", str(tmp_path / "o"))
    assert code == 2 and "--reference compares with torchvision's ResNet-50" in out + err


def test_compare_ops_counts_every_operator_of_both_steps(run_cli, tmp_path):
    """Both networks are ResNet-50: 53 convolutions and 53 BN layers a step, each way. They
    differ in the residual sum: ours is out-of-place (``aten::add``, 16 blocks), torchvision's
    in place (``aten::add_``), so 16 more ``add`` calls and 16 fewer ``add_``."""
    args = [a if a != "0.0625" else "1" for a in TINY]
    code, out, err = run_cli(
        "bench", "train", *args, "--modes", "eager-fp32", "--compare-ops", "--out", str(tmp_path)
    )
    assert code == 0, out + err
    rows = {r["op"]: r for r in _rows(tmp_path / "ops-vs-reference-cpu.csv")}
    assert not (tmp_path / "iteration-cpu.csv").exists()  # no timing table in this mode
    for op in ("aten::convolution_backward", "aten::native_batch_norm"):
        assert float(rows[op]["calls_ours"]) == float(rows[op]["calls_reference"]) == 53
    add, add_ = rows["aten::add"], rows["aten::add_"]
    assert float(add["calls_ours"]) - float(add["calls_reference"]) == 16
    assert float(add_["calls_reference"]) - float(add_["calls_ours"]) == 16
    diffs = [abs(float(r["cpu_ms_diff"])) for r in rows.values()]
    assert diffs == sorted(diffs, reverse=True)  # the largest difference first
    assert "[eager-fp32] wall ms/step under the profiler" in out + err


def test_compare_ops_counts_compiled_graphs_under_one_name():
    from normbench.bench.reference_ops import op_name

    ours = op_name("## Call CompiledFxGraph fwutnm4togwrknsoq7g4qmusezthoxsn7g42 ##")
    theirs = op_name("## Call CompiledFxGraph foigoa7le3cgvzummpzuz47gaznaphmjpuc3 ##")
    assert ours == theirs == "## Call CompiledFxGraph ##"
    assert op_name("Torch-Compiled Region: 1/0") == op_name("Torch-Compiled Region: 0/0")
    assert op_name("aten::add_") == "aten::add_"


def test_compare_ops_needs_resnet50_at_width_1(run_cli, tmp_path):
    code, out, err = run_cli("bench", "train", *TINY, "--compare-ops", "--out", str(tmp_path))
    assert code == 2 and "--compare-ops compares with torchvision's ResNet-50" in out + err


def test_no_profile_gives_the_differential_only(run_cli, tmp_path):
    code, out, err = run_cli(
        "bench", "train", *TINY, "--modes", "eager-fp32", "--no-profile", "--out", str(tmp_path)
    )
    assert code == 0, out + err
    rows = _rows(tmp_path / "iteration-cpu.csv")
    assert [r["variant"] for r in rows] == ["identity", "batch"] and "profiling" not in err
    assert all(r["norm_share_profiled"] == "" and "--no-profile" in r["note"] for r in rows)
    assert all(0 <= float(r["norm_share_differential"]) <= 1 for r in rows)


def test_variant_options_replace_the_shipped_config():
    from normbench.bench.variants import parse_variant, split_variants, variant_config

    text = "batch,normprop[activation=leaky_relu],weight[mean_only_bn=true,max_v_norm=1.5]"
    items = split_variants(text)
    assert items == [
        "batch",
        "normprop[activation=leaky_relu]",
        "weight[mean_only_bn=true,max_v_norm=1.5]",
    ]
    assert parse_variant(items[2]) == ("weight", {"mean_only_bn": True, "max_v_norm": 1.5})
    cfg, label = variant_config(items[2], "convpool", 0.125)
    assert cfg["mean_only_bn"] is True and cfg["max_v_norm"] == 1.5 and cfg["data_init"] is True
    assert label == items[2]


def test_convpool_trains_in_the_bench_with_its_own_nonlinearity(run_cli, tmp_path):
    out = tmp_path / "o"
    args = ["--model", "convpool", "--width", "0.0625", "--batch", "4", "--image-size", "28"]
    args += ["--steps", "1", "--repeats", "1", "--warmup", "1", "--train-size", "8"]
    args += ["--modes", "eager-fp32", "--no-profile", "--out", str(out)]
    code, _, err = run_cli("bench", "train", *args, "--variants", "normprop[activation=leaky_relu]")
    assert code == 0, err
    rows = _rows(out / "iteration-cpu.csv")
    assert [r["variant"] for r in rows] == ["identity", "normprop[activation=leaky_relu]"]
    assert "convpool width 0.0625, batch 4" in (out / "README.md").read_text()
