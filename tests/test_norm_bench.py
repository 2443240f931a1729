"""``normbench bench norms --quick``: every variant is timed and the outputs are written."""

from __future__ import annotations

import csv
import math

import torch

from normbench.bench import norm_report, norm_timing
from normbench.bench import norms as bench
from normbench.bench.norm_cases import CASES, REFERENCE, build_case

OTHERS = (
    "# Benchmarks\n\nA note written by hand.\n\n"
    "<!-- bench models -->\n## Models\n\n| resnet50 | 1.049 |\n<!-- /bench models -->\n\n"
    "<!-- bench train -->\n## Training step\n\nshare of BN: 12%\n<!-- /bench train -->\n"
)


def run_quick(tmp_path, *extra: str) -> None:
    threads = torch.get_num_threads()
    try:
        compile_flag = [] if "--compile" in extra else ["--no-compile"]
        argv = ["--quick", "--device", "cpu", "--out", str(tmp_path), "--threads", "1"]
        argv += compile_flag + list(extra)
        assert bench.main(argv) == 0
    finally:
        torch.set_num_threads(threads)


def test_quick_bench_writes_csv_png_and_readme(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(bench, "QUICK_SHAPES", [(4, 8, 4, 4), (6, 8)])
    run_quick(tmp_path, "--conditions", "shared VM, 2 cores busy")
    table = capsys.readouterr().out.splitlines()
    (line,) = [t for t in table if t.startswith("6x8 ") and " instance " in t]
    assert "nan" not in line and line.split()[2:] == ["n/a", "n/a", "undefined"], line
    (why,) = [t for t in table if t.startswith("n/a: instance at 6x8: ")]
    assert "spatial" in why, why
    with (tmp_path / "norms-cpu-1t.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert set(norm_report.COLUMNS) <= set(rows[0])
    assert {r["variant"] for r in rows} == {c.label for c in CASES}
    for row in rows:
        if row["variant"] == "instance" and row["shape"] == "6x8":
            assert math.isnan(float(row["ms"])) and "spatial" in row["reason"]
            continue
        assert float(row["ms"]) > 0
        if row["variant"] in REFERENCE.values():
            assert float(row["ratio"]) == 1.0
        if row["within_target"] == "False":
            assert row["reason"]
    assert (tmp_path / "norms-cpu-1t.png").stat().st_size > 1000
    readme = (tmp_path / "README.md").read_text()
    assert "normbench bench norms" in readme and "| 4x8x4x4 | frn |" in readme
    assert "Conditions: shared VM, 2 cores busy" in readme and "load average" in readme
    assert rows[0]["conditions"] == "shared VM, 2 cores busy" and rows[0]["load_start"]
    assert rows[0]["command"].endswith("--conditions 'shared VM, 2 cores busy'")  # shell-quoted


def test_readme_section_replaces_only_its_own_text(tmp_path, monkeypatch):
    monkeypatch.setattr(bench, "QUICK_SHAPES", [(6, 8)])
    monkeypatch.setattr(norm_timing, "CASES", CASES[:2])
    readme = tmp_path / "README.md"
    readme.write_text(OTHERS)
    run_quick(tmp_path)
    first = readme.read_text()
    begin, end = "<!-- bench norms -->", "<!-- /bench norms -->"
    assert first.count(begin) == 1 and first.count(end) == 1
    assert first.startswith(OTHERS.rstrip("\n"))  # everything else kept, section appended
    section = first[first.index(begin) : first.index(end)]
    assert "| 6x8 | batch[closed_form] |" in section and "Models" not in section
    (tmp_path / "norms-cpu-1t.csv").write_text(
        (tmp_path / "norms-cpu-1t.csv").read_text().replace("batch[closed_form]", "renamed")
    )
    png = tmp_path / "norms-cpu-1t.png"
    png.unlink()
    assert bench.main(["--readme-only", "--out", str(tmp_path)]) == 0
    assert png.stat().st_size > 5_000  # redrawn from the CSV
    second = readme.read_text()
    assert second.count(begin) == 1 and "| 6x8 | renamed |" in second
    assert second.replace("renamed", "batch[closed_form]") == first  # nothing else moved


def test_compiled_column(tmp_path, monkeypatch):
    """--compile times each case through torch.compile beside eager: ratio against eager BN."""
    monkeypatch.setattr(bench, "QUICK_SHAPES", [(4, 8, 4, 4)])
    frn = next(c for c in CASES if c.label == "frn")
    monkeypatch.setattr(norm_timing, "CASES", [CASES[0], frn])
    run_quick(tmp_path, "--compile")
    with (tmp_path / "norms-cpu-1t.csv").open() as f:
        rows = {r["variant"]: r for r in csv.DictReader(f)}
    assert set(rows) == {"batch", "frn"}
    eager_bn = float(rows["batch"]["ms"])
    for row in rows.values():
        compiled, eager = float(row["ms_compiled"]), float(row["ms"])
        assert compiled > 0 and float(row["compile_s"]) > 0, row
        assert math.isclose(float(row["ratio_compiled"]), compiled / eager_bn, rel_tol=1e-2)
        assert math.isclose(float(row["compiled_gain"]), eager / compiled, rel_tol=1e-2)
        assert row["within_compiled_target"] == str(
            compiled / eager_bn <= norm_timing.COMPILED_TARGET
        )
    readme = (tmp_path / "README.md").read_text()
    assert "| compiled ms | compiled ratio | gain | within compiled target |" in readme
    assert "| 4x8x4x4 | frn | batch |" in readme


def test_compile_failure_is_recorded_not_fatal(tmp_path, monkeypatch):
    """A case torch.compile cannot build gets a note and n/a, and the other cases are timed."""
    monkeypatch.setattr(bench, "QUICK_SHAPES", [(4, 8, 4, 4)])
    monkeypatch.setattr(norm_timing, "CASES", CASES[:2])
    real, compiled_calls = norm_timing._step_fn, []

    def failing(module, shape, device, compiled=False):
        if compiled:
            compiled_calls.append(module)
            if len(compiled_calls) > 1:  # the first case (BN) compiles, the second fails
                raise RuntimeError("inductor: no C++ compiler")
        return real(module, shape, device, compiled)

    monkeypatch.setattr(norm_timing, "_step_fn", failing)
    run_quick(tmp_path, "--compile")
    with (tmp_path / "norms-cpu-1t.csv").open() as f:
        rows = {r["variant"]: r for r in csv.DictReader(f)}
    other = rows[CASES[1].label]
    assert float(rows["batch"]["ms_compiled"]) > 0
    assert math.isnan(float(other["ms_compiled"])) and float(other["ms"]) > 0
    assert "torch.compile failed: RuntimeError: inductor: no C++ compiler" in other["compile_note"]
    assert "inductor: no C++ compiler" in (tmp_path / "README.md").read_text()


def test_every_registered_variant_is_a_case_with_its_shipped_config():
    from normbench.bench.norm_cases import EXTRA_CASES, TIMED_WITH
    from normbench.bench.variants import shipped_config
    from normbench.norms import known_norms

    base = {}
    for name in known_norms():  # timed as shipped, with the bench's few settings
        cfg = {**shipped_config(name), **TIMED_WITH.get(name, {})}
        base[name] = next(c for c in CASES if c.cfg == cfg and c.label.startswith(name))
    assert base["ghost_batch"].label == "ghost_batch[group_size=4]"
    assert {n for n, c in base.items() if c.kind == "weight"} == {"weight", "normprop", "ws_group"}
    labels = [c.label for c in CASES]
    assert len(labels) == len(set(labels)) == len(known_norms()) + len(EXTRA_CASES)
    kinds = [c.kind for c in CASES]
    assert (
        labels[:2] == ["batch", "batch[closed_form]"]
        and "weight" not in kinds[: kinds.count("slot")]
    )
    assert labels[kinds.index("weight")] == REFERENCE["weight"]


def test_a_new_registered_variant_is_benchmarked_without_an_edit(monkeypatch):
    from normbench.bench.norm_cases import registry_cases
    from normbench.norms import VARIANTS
    from normbench.norms.ws_group import WSGroupNormSpec

    monkeypatch.setitem(VARIANTS, "new_weight", WSGroupNormSpec)  # no YAML: {"name": ...}
    case = next(c for c in registry_cases() if c.cfg["name"] == "new_weight")
    assert (
        case.label == "new_weight" and case.kind == "weight" and case.cfg == {"name": "new_weight"}
    )
    module = build_case(case, (4, 64, 3, 3))
    assert isinstance(module, torch.nn.Sequential) and module[1].num_groups == 32


def test_quick_is_eager_unless_compile_is_asked(tmp_path, monkeypatch):
    """--quick alone times eager mode only (seconds, not a compile per case); --compile adds the
    compiled column to it; without --quick the compiled column is on by default."""
    asked = []

    class Stop(Exception):
        pass

    def time_shape(*args, compiled=False, **kw):
        asked.append(compiled)
        raise Stop

    monkeypatch.setattr(bench, "time_shape", time_shape)
    monkeypatch.setattr(bench, "raise_compile_cache_limit", lambda: None)
    for extra in ([], ["--compile"], ["--no-compile"]):
        for quick in (["--quick"], []):
            try:
                bench.main([*quick, "--device", "cpu", "--out", str(tmp_path), *extra])
            except Stop:
                pass
    assert asked == [False, True, True, True, False, False]
