"""The population-statistics study: its phases select runs by the setting their config records;
its claims hold on made-up evaluations built to hold them and fail on the mirror image; and the
declaration runs end to end through ``normbench study run`` on tiny runs (kept steps
evaluated, FrozenBN trained, a report written)."""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from normbench.evaluation.records import COLUMNS
from normbench.report.collect import collect
from normbench.report.verdicts import NOT_ENOUGH, OPPOSITE, SHOWN, read_claims
from normbench.studies import register
from normbench.studies.evaluate import jobs_of, phase_plan
from normbench.studies.population_stats import STUDY
from normbench.studies.population_stats.report import samples_table
from normbench.studies.population_stats.settings import setting_of
from normbench.studies.report import write_report
from tests.conftest import make_idx_dataset, study_cli, tiny_run

SEEDS = (0, 1, 2)
MLP = {  # setting -> (batch, lr, momentum)
    "mlp": (60, 0.5, 0.1),
    "mlp_lr_high": (60, 2.0, 0.1),
    "mlp_big_batch": (960, 8.0, 0.1),
    "mlp_momentum_slow": (60, 0.5, 0.01),
    "mlp_momentum_fast": (60, 0.5, 0.5),
}
RESNET = {"resnet_n32": (32, False), "resnet_n4": (4, False), "resnet_n2": (2, False)}
RESNET |= {"resnet_n4_frozen": (4, True), "resnet_n2_frozen": (2, True)}
#: early EMA gap (points) of each tracked setting in the "good" fixture; it closes to 0.1
EARLY_GAP = {"mlp": 1.0, "mlp_lr_high": 4.0, "mlp_big_batch": 5.0, "mlp_momentum_slow": 3.0}
EARLY_GAP |= {"mlp_momentum_fast": 1.0, "resnet_n32": 4.0}


def config(setting: str, seed: int) -> tuple[dict, int, int]:
    """The saved config of a run of ``setting`` and its steps and keep_every."""
    if setting in MLP:
        batch, lr, momentum = MLP[setting]
        cfg = {
            "model": {"name": "mlp"},
            "dataset": {"name": "fashion_mnist", "batch_size": batch, "val_split": "test"},
            "optim": {"lr": lr},
            "norm": {"name": "batch", "momentum": momentum},
            "per_device": {"images": None},
            "trainer": {"steps": 5000, "keep_every": 250, "freeze_norm_stats_at": None},
        }
        return cfg, 5000, 250
    nbs, frozen = RESNET[setting]
    cfg = {
        "model": {"name": "resnet50"},
        "dataset": {
            "name": "fashion_mnist",
            "batch_size": 64,
            "val_split": "holdout",
            "holdout_size": 1000,
        },
        "optim": {"lr": 0.025},
        "norm": {"name": "batch", "momentum": 0.1},
        "per_device": {"images": nbs},
        "trainer": {
            "steps": 250,
            "keep_every": 25,
            "freeze_norm_stats_at": "${nb_step_at:${trainer.steps},0.8}" if frozen else None,
        },
    }
    return cfg, 250, 25


def make_run(root: Path, setting: str, seed: int, rows: list[dict]) -> Path:
    cfg, steps, _ = config(setting, seed)
    run = root / f"r{seed}" / f"setting_{setting}"  # the name is not what selects it
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "config.yaml").write_text(
        yaml.safe_dump({"name": "population_stats", "seed": seed, **cfg})
    )
    overrides = [f"sweep/population_stats_setting={setting}", f"seed={seed}"]
    (run / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    summary = {
        "status": "complete",
        "step": steps,
        "norm_batch_dependent": True,
        "final": {"val_error": 0.2},
        "num_classes": 10,
        "wall_time_s": 1.0,
        "environment": {"device": "cpu", "device_name": "test", "git": "abc"},
    }
    (run / "summary.json").write_text(json.dumps(summary))
    (run / "metrics.csv").write_text(f"step,val_error\n{steps},0.2\n")
    with (run / "evals.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS, restval="")
        writer.writeheader()
        writer.writerows(rows)
    return run


def row(mode: str, step: int, error: float, images: int, *, samples=None, kept=True) -> dict:
    request = f"mode={mode}" + (f" samples={samples}" if samples else "")
    request += f" step={step}" if kept else ""
    return {
        "mode": mode,
        "data": "fashion_mnist",
        "corruption": "none",
        "status": "ok",
        "error": error / 100,
        "step": step,
        "num_samples": images,
        "requests": request,
    }


def fixture_rows(setting: str, seed: int, sign: int) -> list[dict]:
    """Evaluations where each claim holds (sign=+1) or is reversed (sign=-1)."""
    _, steps, every = config(setting, seed)
    images = 10000 if setting in MLP else 1000
    base = 15.0 + 0.3 * seed + (0 if setting in MLP else 10.0)
    wiggle = 0.05 * ((seed * 7 + len(setting)) % 3 - 1)
    rows = []
    precise_n = 1000 if setting == "resnet_n32" else None
    for step in range(every, steps + 1, every):
        early = step <= 0.2 * steps
        gap = EARLY_GAP.get(setting, 0.0) if early else 0.1
        gap = sign * gap + wiggle
        precise = base + 5.0 * (1 - step / steps)
        rows.append(row("precise", step, precise, images, samples=precise_n))
        rows.append(row("running", step, precise + gap, images))
        rows.append(row("batch", step, precise + 0.5, images))
    final = base
    if setting in ("mlp", "resnet_n32"):
        for n, extra in ((10, 6.0), (100, 1.0), (1000, 0.05), (10000, 0.0)):
            if n == 1000 and setting in RESNET:
                continue  # the ResNet's final precise(1000) is below (one evaluation)
            e = final + sign * extra + (0.0 if n == 10000 else wiggle / 5)
            rows.append(
                row(
                    "precise",
                    steps,
                    e if sign > 0 or n != 1000 else e + 3.0,
                    images,
                    samples=n,
                    kept=False,
                )
            )
    if setting in RESNET:
        nbs, frozen = RESNET[setting]
        inconsistent = {32: 0.2, 4: 8.0, 2: 12.0}[nbs]
        running = final + inconsistent * (0.5 if frozen and sign > 0 else 1.0)
        if frozen and sign < 0:
            running += 3.0
        rows.append(row("running", steps, running + wiggle, images, kept=False))
        # the final precise(1000): the NBS gap, or (NBS 32) as good as 10,000 samples, or not
        precise = final + (sign * inconsistent if nbs != 32 else (0.05 if sign > 0 else 3.0))
        rows.append(row("precise", steps, precise + wiggle / 5, images, samples=1000, kept=False))
        rows.append(row("batch", steps, final, images, kept=False))
    return rows


def fixture(root: Path, sign: int) -> Path:
    for setting in [*MLP, *RESNET]:
        for seed in SEEDS:
            make_run(root, setting, seed, fixture_rows(setting, seed, sign))
    return root


def claims_of(root: Path, out: Path) -> dict:
    write_report(
        STUDY, None, collect([root]), [str(root)], out, "normbench study run population_stats"
    )
    return {c.key: c for c in read_claims(out / "claims.csv")}


def test_phases_select_runs_by_their_recorded_setting(tmp_path):
    fixture(tmp_path / "runs", +1)
    runs = collect([tmp_path / "runs"])
    assert {setting_of(r) for r in runs} == {*MLP, *RESNET}
    plan = {setting_of(item.run): item for item in phase_plan(STUDY.phases, runs)}
    assert plan["mlp"].phases == ["mlp_track", "mlp_samples"]
    assert plan["mlp_lr_high"].phases == ["mlp_track"]
    assert plan["resnet_n32"].phases == ["resnet_track", "resnet_final", "resnet_samples"]
    assert plan["resnet_n2_frozen"].phases == ["resnet_final"]
    # step=kept: the steps the run kept (trainer.keep_every), 20 for the MLP, 10 for the ResNet
    assert len(jobs_of(plan["mlp_lr_high"])) == 3 * 20
    assert len(jobs_of(plan["resnet_n32"])) == 2 * 10 + 3 + 4 - 1  # precise(1000) once


def test_every_claim_holds_on_the_good_fixture_and_fails_on_its_mirror(tmp_path):
    good = claims_of(fixture(tmp_path / "good", +1), tmp_path / "out_good")
    bad = claims_of(fixture(tmp_path / "bad", -1), tmp_path / "out_bad")
    assert set(good) == set(bad) and len(good) == 19
    for key, claim in good.items():
        assert claim.outcome == SHOWN, (key, claim.verdict, claim.ours)
    for key, claim in bad.items():
        assert claim.outcome != SHOWN, (key, claim.verdict, claim.ours)
    assert bad["ema_lag:mlp_lr_high"].outcome == OPPOSITE
    assert bad["inconsistency:nbs2"].outcome == OPPOSITE
    assert "%" in good["frozen:nbs2"].ours  # the share of the gap FrozenBN closes
    readme = (tmp_path / "out_good" / "README.md").read_text()
    assert readme.count("## Claims") == 1  # one heading: the claims section brings its own
    for png in ("ema_gap.png", "precise_samples.png", "nbs.png"):
        assert (tmp_path / "out_good" / png).stat().st_size > 1000 and f"({png})" in readme


def test_missing_evaluations_give_not_enough_runs(tmp_path):
    make_run(tmp_path / "runs", "mlp", 0, fixture_rows("mlp", 0, +1)[:6])
    claims = claims_of(tmp_path / "runs", tmp_path / "out")
    assert claims["frozen:nbs2"].outcome == NOT_ENOUGH
    assert claims["precise_saturates:mlp"].outcome == NOT_ENOUGH


TINY = register(
    dataclasses.replace(
        STUDY,
        name="population_stats_tiny",
        params={"sweep/population_stats_setting": "mlp,resnet_n2,resnet_n2_frozen", "seed": "0,1"},
        overrides=(*tiny_run(10, 5, eval_batch=100), "trainer.keep_every=5"),
        # Precise BN from at most 100 of the tiny training set's images
        phases=tuple(
            dataclasses.replace(p, grid={**p.grid, "samples": "10,100"})
            if "samples" in p.grid
            else p
            for p in STUDY.phases
        ),
        variants={},
        results="results/population_stats_tiny",
    )
)


@pytest.mark.slow
def test_the_declared_study_trains_evaluates_and_reports(tmp_path):
    make_idx_dataset(tmp_path / "data" / "fashion_mnist", n_train=600, n_val=200)
    done = study_cli(
        tmp_path, "tests.test_population_stats_study", "run", "population_stats_tiny", "jobs=2"
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    runs = collect([tmp_path / "runs" / "population_stats_tiny"])
    assert sorted(setting_of(r) for r in runs) == sorted(
        ["mlp", "resnet_n2", "resnet_n2_frozen"] * 2
    )
    frozen = [r for r in runs if setting_of(r) == "resnet_n2_frozen"][0]
    assert (frozen.path / "ckpt" / "step_00000005.pt").is_file()
    mlp = [r for r in runs if setting_of(r) == "mlp"][0]
    with (mlp.path / "evals.csv").open() as f:
        requests = {r["requests"] for r in csv.DictReader(f)}
    assert {"mode=running step=5", "mode=precise step=10", "mode=precise samples=100"} <= {
        q for r in requests for q in r.split(" | ")
    }
    out = tmp_path / "results" / "population_stats_tiny"
    assert len(read_claims(out / "claims.csv")) == 19
    assert "## How this was made" in (out / "README.md").read_text()


def test_the_samples_table_keeps_the_sweep_not_the_tracks():
    """Kept models evaluated at one count (the EMA tracks) stay out of the samples sweep."""
    rows = [
        {"setting": "mlp", "step": 5000, "mode": "precise", "samples": n, "error": e, "seed": s}
        for n, e in ((10.0, 18.0), (1000.0, 14.0))
        for s in (0, 1)
    ] + [
        {"setting": "resnet_n32", "step": 25, "mode": "precise", "samples": 1000.0, "error": 70.0,
         "seed": s}
        for s in (0, 1)
    ]  # fmt: skip
    got = samples_table(pd.DataFrame(rows))
    assert list(zip(got["setting"], got["step"], got["samples"], strict=True)) == [
        ("mlp", 5000, 10.0),
        ("mlp", 5000, 1000.0),
    ]
    assert list(got["mean"]) == [18.0, 14.0] and list(got["seeds"]) == [2, 2]
