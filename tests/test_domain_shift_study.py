"""The domain-shift study's declaration: its phases select runs by what they record (never by
their directory names), ``normbench study plan`` prints its counts, and ``normbench study
report`` finds its runs through the registry."""

from __future__ import annotations

from pathlib import Path

import pytest

from normbench.cli import main
from normbench.data.corruptions.names import CORRUPTIONS
from normbench.report.collect import collect
from normbench.report.verdicts import read_claims
from normbench.studies import get_study
from normbench.studies.domain_shift import STUDY
from normbench.studies.evaluate import jobs_of, phase_plan
from tests.test_domain_shift_report import BN_GOOD, GN_GOOD, SEEDS, VGG_GOOD, make_run

BN_PHASES = ["clean", "bn", "k_curve", "n_curve", "kl", "tent_reference", "test_clean"]
BN_PHASES += ["test_severity5"]
FREE_PHASES = ["clean", "batch_free", "kl"]
#: evaluations per run of each phase: modes x corruptions x severities (+ knob values)
PER_RUN = {
    "clean": 2,
    "bn": 5 * 15 * 5,
    "batch_free": 3 * 15 * 5,
    "k_curve": 11 * 15,
    "n_curve": 10 * 15,
    "kl": 2 * (1 + 3),
    "tent_reference": 15 * 5,
    "test_clean": 2,
    "test_severity5": 2 * 15,
}


def test_the_study_is_registered_with_the_benchmark_corruptions():
    assert get_study("domain_shift") is STUDY
    bn = {p.name: p for p in STUDY.phases}["bn"]
    assert bn.grid["corruption"].split(",") == list(CORRUPTIONS)
    assert bn.grid["severity"] == "1,2,3,4,5"
    assert {p.name for p in STUDY.phases} == set(PER_RUN)


def test_phases_select_runs_by_what_summary_json_records(tmp_path):
    root = tmp_path / "runs"
    # a BN run in a directory whose name says "group", and a GN run whose name says "batch"
    make_run(root, "resnet50", "batch", 0, BN_GOOD, True, dir_name="source=resnet_group")
    make_run(root, "resnet50", "group", 0, GN_GOOD, False, dir_name="source=resnet_batch")
    plan = {item.run.path.name: item for item in phase_plan(STUDY.phases, collect([root]))}
    assert plan["source=resnet_group"].phases == BN_PHASES
    assert plan["source=resnet_batch"].phases == FREE_PHASES
    for name, phases in (("source=resnet_group", BN_PHASES), ("source=resnet_batch", FREE_PHASES)):
        jobs = [j.describe() for j in jobs_of(plan[name])]
        assert len(jobs) == len(set(jobs))
        # phases overlap in a few jobs (adapt on all images at severity 3, running and adapt
        # on clean data): each runs once
        assert len(jobs) <= sum(PER_RUN[p] for p in phases)
    tent = [j for j in jobs_of(plan["source=resnet_group"]) if "val_split=test" in j.describe()]
    assert len(tent) == PER_RUN["test_clean"] + PER_RUN["test_severity5"]


def plan_lines(capsys) -> dict[str, str]:
    assert main(["study", "plan", "domain_shift"]) == 0
    out = capsys.readouterr().out
    lines = {}
    for line in out.splitlines():
        if line.startswith("training:"):
            lines["training"] = line
        elif line.startswith("evaluation phase "):
            lines[line.split()[2].rstrip(":")] = line
    return lines


def test_plan_prints_the_counts_with_no_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    lines = plan_lines(capsys)
    assert lines["training"] == "training: 18 runs under runs/domain_shift/ (0 done)"
    for phase in PER_RUN:
        want = f"evaluation phase {phase}: {PER_RUN[phase]} per selected run; 0 on the 0 runs"
        assert lines[phase].startswith(want), lines[phase]


def make_study_runs(root: Path, evaluated: bool = True) -> None:
    """Three of the six sources of the grid, three seeds each (evaluated or not yet)."""
    evals = None if evaluated else []
    for seed in SEEDS:
        make_run(root, "resnet50", "batch", seed, BN_GOOD, True, evals, evaluated)
        make_run(root, "vgg16", "batch", seed, VGG_GOOD, True, evals, evaluated)
        make_run(root, "resnet50", "group", seed, GN_GOOD, False, evals, evaluated)


def test_plan_counts_the_evaluations_of_each_phase(tmp_path, monkeypatch, capsys):
    make_study_runs(tmp_path / "runs" / "domain_shift", evaluated=False)
    monkeypatch.chdir(tmp_path)
    lines = plan_lines(capsys)
    assert lines["training"] == "training: 18 runs under runs/domain_shift/ (9 done)"
    runs = {phase: 6 for phase in BN_PHASES} | {"clean": 9, "kl": 9, "batch_free": 3}
    for phase, n in runs.items():
        want = (
            f"evaluation phase {phase}: {PER_RUN[phase]} per selected run; "
            f"{n * PER_RUN[phase]} on the {n} runs selected so far (0 done)"
        )
        assert lines[phase].startswith(want), lines[phase]


@pytest.mark.slow
def test_study_report_finds_the_runs_through_the_registry(tmp_path, monkeypatch, capsys):
    make_study_runs(tmp_path / "runs" / "domain_shift")
    monkeypatch.chdir(tmp_path)
    assert main(["study", "report", "domain_shift"]) == 0
    out = tmp_path / "results" / "domain_shift"
    claims = read_claims(out / "claims.csv")
    assert len(claims) == 20 and {c.study for c in claims} == {"domain_shift"}
    readme = (out / "README.md").read_text()
    assert "normbench study run domain_shift" in readme.split("## How this was made")[1]
