"""The domain-shift study's declaration: its phases select runs by what they record (never by
their directory names), ``normbench study plan`` prints its counts, and ``normbench study
report`` finds its runs through the registry."""

from __future__ import annotations

from pathlib import Path

import pytest

from normbench.cli import main
from normbench.data.corruptions.names import CORRUPTIONS
from normbench.report.collect import collect
from normbench.report.verdicts import BY_CONSTRUCTION, SHOWN, read_claims
from normbench.studies import get_study
from normbench.studies.domain_shift import STUDY
from normbench.studies.evaluate import jobs_of, phase_plan
from tests.test_domain_shift_report import BN_GOOD, GN_GOOD, SEEDS, VGG_GOOD, make_run

BN_PHASES = ["clean", "bn", "tent", "tent_reference", "k_curve", "n_curve", "kl", "test_clean"]
FREE_PHASES = ["clean", "batch_free", "tent", "kl"]
#: evaluations per run of each phase: modes x corruptions x severities (+ knob values)
PER_RUN = {
    "clean": 2,
    "bn": 3 * 15 * 3,
    "batch_free": 2 * 15 * 3,
    "tent": 15,
    "tent_reference": 15,
    "k_curve": 6 * 4,
    "n_curve": 6 * 4,
    "kl": 2 * (1 + 3),
    "test_clean": 2,
}
FULL_BN_PHASES = ["clean", "bn", "k_curve", "n_curve", "kl", "tent_reference", "test_clean"]
FULL_BN_PHASES += ["test_severity5"]
FULL_FREE_PHASES = ["clean", "batch_free", "kl"]
FULL_PER_RUN = {
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
FULL = STUDY.variant("full")


def test_the_study_is_registered_with_the_benchmark_corruptions():
    assert get_study("domain_shift") is STUDY
    bn = {p.name: p for p in STUDY.phases}["bn"]
    assert bn.grid["corruption"].split(",") == list(CORRUPTIONS)
    assert bn.grid["severity"] == "1,3,5"
    assert {p.name for p in STUDY.phases} == set(PER_RUN)
    full_bn = {p.name: p for p in FULL.phases}["bn"]
    assert full_bn.grid["corruption"].split(",") == list(CORRUPTIONS)
    assert full_bn.grid["severity"] == "1,2,3,4,5"
    assert {p.name for p in FULL.phases} == set(FULL_PER_RUN)


@pytest.mark.parametrize(
    "phases,bn_phases,free_phases,per_run,test_jobs",
    [
        (STUDY.phases, BN_PHASES, FREE_PHASES, PER_RUN, 2),
        (FULL.phases, FULL_BN_PHASES, FULL_FREE_PHASES, FULL_PER_RUN, 2 + 2 * 15),
    ],
    ids=["main", "full"],
)
def test_phases_select_runs_by_what_summary_json_records(
    tmp_path, phases, bn_phases, free_phases, per_run, test_jobs
):
    root = tmp_path / "runs"
    # a BN run in a directory whose name says "group", and a GN run whose name says "batch"
    make_run(root, "resnet50", "batch", 0, BN_GOOD, True, dir_name="source=resnet_group")
    make_run(root, "resnet50", "group", 0, GN_GOOD, False, dir_name="source=resnet_batch")
    plan = {item.run.path.name: item for item in phase_plan(phases, collect([root]))}
    assert plan["source=resnet_group"].phases == bn_phases
    assert plan["source=resnet_batch"].phases == free_phases
    for name, names in (("source=resnet_group", bn_phases), ("source=resnet_batch", free_phases)):
        jobs = [j.describe() for j in jobs_of(plan[name])]
        assert len(jobs) == len(set(jobs))
        # phases overlap in a few jobs (adapt on all images at severity 3, running and adapt
        # on clean data): each runs once
        assert len(jobs) <= sum(per_run[p] for p in names)
    tent = [j for j in jobs_of(plan["source=resnet_group"]) if "val_split=test" in j.describe()]
    assert len(tent) == test_jobs


def plan_lines(capsys, *variant: str) -> dict[str, str]:
    assert main(["study", "plan", "domain_shift", *variant]) == 0
    out = capsys.readouterr().out
    lines = {}
    for line in out.splitlines():
        if line.startswith("training:"):
            lines["training"] = line
        elif line.startswith("evaluation phase "):
            lines[line.split()[2].rstrip(":")] = line
    return lines


@pytest.mark.parametrize(
    "variant,runs,per_run",
    [((), "9 runs under runs/domain_shift/", PER_RUN)]
    + [(("--variant", "full"), "18 runs under runs/domain_shift_full/", FULL_PER_RUN)],
    ids=["main", "full"],
)
def test_plan_prints_the_counts_with_no_runs(tmp_path, monkeypatch, capsys, variant, runs, per_run):
    monkeypatch.chdir(tmp_path)
    lines = plan_lines(capsys, *variant)
    assert lines["training"] == f"training: {runs} (0 done)"
    for phase in per_run:
        want = f"evaluation phase {phase}: {per_run[phase]} per selected run; 0 on the 0 runs"
        assert lines[phase].startswith(want), lines[phase]


def make_study_runs(root: Path, evaluated: bool = True) -> None:
    """The three sources of the main grid, three seeds each (evaluated or not yet)."""
    evals = None if evaluated else []
    for seed in SEEDS:
        make_run(root, "resnet50", "batch", seed, BN_GOOD, True, evals, evaluated)
        make_run(root, "vgg16", "batch", seed, VGG_GOOD, True, evals, evaluated)
        make_run(root, "resnet50", "group", seed, GN_GOOD, False, evals, evaluated)


def test_plan_counts_the_evaluations_of_each_phase(tmp_path, monkeypatch, capsys):
    make_study_runs(tmp_path / "runs" / "domain_shift", evaluated=False)
    monkeypatch.chdir(tmp_path)
    lines = plan_lines(capsys)
    assert lines["training"] == "training: 9 runs under runs/domain_shift/ (9 done)"
    runs = {phase: 6 for phase in BN_PHASES} | {"clean": 9, "kl": 9, "batch_free": 3, "tent": 9}
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


def main_grid_rows(rows: list[dict]) -> list[dict]:
    """The fixture's evaluations that the main setting's phases ask for (severities 1, 3, 5;
    Tent and its batch reference at 5; the curves on one corruption per family; test: clean)."""
    family = {"gaussian_noise", "defocus_blur", "fog", "contrast"}
    kept = []
    for row in rows:
        corruption, severity = row["corruption"], row.get("severity")
        curve = row.get("samples") in (8, 64) or row.get("prior") in (0.0, 64.0)
        if corruption == "none":
            kept.append(row)
        elif row["data"] != "fashion_mnist" or severity not in (1, 3, 5):
            continue
        elif row["mode"] in ("tent", "batch") and (severity != 5 or row["batch_size"] != 128):
            continue
        elif not curve or corruption in family:
            kept.append(row)
    return kept


def test_the_main_grid_decides_every_claim(tmp_path):
    """The claims need no evaluation the main setting leaves to the full variant."""
    from tests.test_domain_shift_report import BN_CLAIMS, GROUPS, eval_rows, report

    root = tmp_path / "runs" / "domain_shift"
    for seed in SEEDS:
        for model, norm, spec, dependent in (
            ("resnet50", "batch", BN_GOOD, True),
            ("vgg16", "batch", VGG_GOOD, True),
            ("resnet50", "group", GN_GOOD, False),
        ):
            rows = main_grid_rows(eval_rows(spec, seed))
            make_run(root, model, norm, seed, spec, dependent, rows)
    _, tables, claims = report(root, tmp_path / "out")
    assert set(tables["errors"]["severity"].dropna()) == {0, 1, 3, 5}  # 0: clean
    want = {f"{k}:{g}" for k in BN_CLAIMS for g in GROUPS}
    want |= {"norm_vs_bn:resnet50/group", "bn_adapt_vs_norm:resnet50/group", "batch_free", "kl"}
    assert set(claims) == want
    for key, claim in claims.items():
        assert claim.outcome in (SHOWN, BY_CONSTRUCTION), (key, claim.verdict, claim.ours)
    assert "1,000 held-out images" in claims["tent:resnet50/batch"].ours
