"""The `normbench` dispatcher: usage, unknown commands, and every listed benchmark importable."""

from __future__ import annotations

import importlib

from normbench.cli.command import BENCHMARKS


def test_usage_and_unknown_command(run_cli):
    code, out, _ = run_cli()
    assert code == 0 and "normbench <command>" in out and "train" in out
    code, _, err = run_cli("trian")
    assert code == 2 and "unknown command 'trian'" in err
    code, _, err = run_cli("bench", "nope")
    assert code == 2 and "usage: normbench bench" in err


def test_every_benchmark_has_a_main():
    assert {"norms", "models", "train"} <= set(BENCHMARKS)
    for module in BENCHMARKS.values():
        assert callable(importlib.import_module(module).main)


def test_usage_lists_the_benchmarks(run_cli):
    code, out, _ = run_cli("--help")
    names = ("norms", "models", "train", "corruptions", "inference", "lstm")
    assert code == 0 and all(f"{name}  " in out for name in names)
    code, _, err = run_cli("bench")
    assert code == 2 and "{norms,models,train,corruptions,inference,lstm}" in err
