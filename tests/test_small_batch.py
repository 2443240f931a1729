"""Small-batch study (GN paper Figure 1 / Table 2): verdicts on constructed tables, the report
of a tiny real sweep over norms x images per device x seeds, and scripts/small_batch.sh with
parallel jobs (Hydra's joblib launcher) against one job at a time."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from normbench.config import config_dir
from normbench.norms import VARIANTS, build_norm_spec
from normbench.report.collect import Run
from normbench.studies.small_batch.claims import (
    batch_independent,
    expand_independent,
    paired,
    verdicts,
)

NS = (32, 16, 8, 4, 2)


def _table(errors: dict[str, dict[int, tuple[float, ...]]]) -> pd.DataFrame:
    """Per-seed errors {norm: {N: (seed 0, seed 1, ...)}} as the report's points table."""
    rows = [
        {"norm": norm, "images": n, "seed": s, "error": e, "independent": norm != "batch"}
        for norm, by_n in errors.items()
        for n, seeds in by_n.items()
        for s, e in enumerate(seeds)
    ]
    return pd.DataFrame(rows)


def _verdict(pts: pd.DataFrame, start: str) -> str:
    found = [v.verdict for v in verdicts(pts) if v.claim.startswith(start)]
    assert len(found) == 1, [v.claim for v in verdicts(pts)]
    return found[0]


BN_RISES = {32: (24.0, 24.3), 16: (24.1, 24.3), 8: (25.2, 25.6), 4: (27.5, 27.9), 2: (34.5, 35.1)}
GN_FLAT = {n: (24.4, 24.6) for n in NS}


def test_bn_rises_and_gn_is_flat_is_shown():
    pts = _table({"batch": BN_RISES, "group": GN_FLAT})
    assert _verdict(pts, "BN's error").startswith("shown")
    assert "flat (no significant rise) at N = 16" in _verdict(pts, "BN's error")
    assert _verdict(pts, "GN's error").startswith("shown")
    assert _verdict(pts, "At 2 images").startswith("shown")
    assert _verdict(pts, "At 32 images per GPU, BN beats").startswith(
        "not shown"
    )  # +0.35: too small


def test_bn_flat_and_gn_moving_is_not_shown():
    bn_flat = {n: (24.0 + 0.1 * (n % 3), 24.2) for n in NS}
    gn_moves = {
        32: (24.0, 24.2),
        16: (24.1, 24.4),
        8: (24.9, 25.3),
        4: (25.0, 25.1),
        2: (25.5, 25.2),
    }
    pts = _table({"batch": bn_flat, "group": gn_moves})
    assert _verdict(pts, "BN's error").startswith("not shown")
    assert _verdict(pts, "GN's error").startswith("not shown")
    assert _verdict(pts, "At 2 images").startswith("opposite")  # GN worse than BN at 2


def test_a_rise_within_the_seed_spread_is_not_shown():
    # mean rise of 2 points at N=2, but one seed rises 4 and the other 0: se = 2, 2 < 2 se
    noisy = {32: (24.0, 24.0), 16: (24.0, 24.0), 8: (24.0, 24.0), 4: (24.0, 24.0), 2: (28.0, 24.0)}
    pts = _table({"batch": noisy, "group": GN_FLAT})
    assert paired(pts, ("batch", 32), ("batch", 2)).mean == pytest.approx(2.0)
    assert _verdict(pts, "BN's error").startswith("not shown")
    one_seed = _table({"batch": {n: v[:1] for n, v in BN_RISES.items()}})
    assert _verdict(one_seed, "BN's error").startswith("not shown")  # no spread: nothing counts


def test_an_n_independent_norm_run_once_stands_for_every_n_by_construction():
    pts = expand_independent(_table({"batch": BN_RISES, "group": {32: (24.4, 24.6)}}), list(NS))
    gn = pts[pts["norm"] == "group"]
    assert (
        sorted(set(gn["images"])) == sorted(NS)
        and gn[gn["images"] != 32]["measured"].eq(False).all()
    )
    assert _verdict(pts, "GN's error").startswith("holds by construction, not measured")
    # run at both ends: the others are filled from the largest N, and the ends are compared
    pts = expand_independent(
        _table({"batch": BN_RISES, "group": {32: (24.4, 24.6), 2: (24.4, 24.6)}}), list(NS)
    )
    gn = pts[pts["norm"] == "group"]
    assert sorted(gn[gn["measured"]]["images"].unique()) == [2, 32] and len(gn) == 2 * len(NS)
    assert _verdict(pts, "GN's error").startswith("shown, by construction: identical at N = 32, 2")
    moved = expand_independent(
        _table({"batch": BN_RISES, "group": {32: (24.4, 24.6), 2: (25.4, 25.6)}}), list(NS)
    )
    assert _verdict(moved, "GN's error").startswith("not shown")


def test_batch_renorm_recovering_part_of_the_loss_is_shown():
    brn = {32: (24.1, 24.2), 4: (25.5, 25.8), 2: (29.0, 29.4)}
    pts = _table({"batch": BN_RISES, "batch_renorm": brn})
    v = [x for x in verdicts(pts) if x.claim.startswith("Batch Renorm")][0]
    assert v.verdict.startswith("shown") and "BRN ≈ BN at normal batch" in v.verdict
    all_back = _table(
        {"batch": BN_RISES, "batch_renorm": {32: (24.0, 24.3), 4: (24.0, 24.3), 2: (24.0, 24.3)}}
    )
    v = [x for x in verdicts(all_back) if x.claim.startswith("Batch Renorm")][0]
    assert v.verdict.startswith("not shown")


def _run(norm: dict, summary: dict | None = None, mode: str = "ghost") -> Run:
    """A run as the report sees it, from its norm config and summary.json alone."""
    config = {"norm": norm, "per_device": {"images": 4, "mode": mode}}
    return Run(Path("r"), config, [], summary or {}, pd.DataFrame(), pd.DataFrame())


# every shipped variant's config, and the option values that make a variant batch-dependent
NORM_CONFIGS = [
    yaml.safe_load((config_dir() / "norm" / f"{name}.yaml").read_text()) for name in VARIANTS
] + [
    {**yaml.safe_load((config_dir() / "norm" / "weight.yaml").read_text()), "mean_only_bn": True},
    {**yaml.safe_load((config_dir() / "norm" / "evonorm.yaml").read_text()), "version": "B0"},
]


@pytest.mark.parametrize(
    "norm", NORM_CONFIGS, ids=lambda n: "-".join(str(n.get(k, "")) for k in ("name", "version"))
)
def test_summaries_without_the_flag_fall_back_to_what_the_norm_does(norm):
    """Summaries written before 2026-11-29 lack norm_batch_dependent: the report's own table
    must say what the norm's spec says."""
    dependent = build_norm_spec(norm).batch_dependent
    assert _run(norm).batch_dependent == dependent
    assert batch_independent(_run(norm)) == (not dependent)
    assert not batch_independent(_run(norm, mode="real"))  # real mode: N changes batch and lr


def test_the_recorded_flag_wins_over_the_fallback():
    layer = {"name": "layer", "eps": 1e-5, "affine": True}
    assert batch_independent(_run(layer))
    assert not batch_independent(_run(layer, {"norm_batch_dependent": True}))
    assert batch_independent(_run({"name": "batch"}, {"norm_batch_dependent": False}))
    assert not batch_independent(_run({"name": "a_variant_added_later"}))  # unknown: dependent


SWEEP = [
    "dataset=synthetic",
    "dataset.num_train=256",
    "dataset.num_val=128",
    "dataset.batch_size=16",
    "model.hidden=[32,32]",
    "trainer.steps=12",
    "trainer.eval_every=2",
    "trainer.log_every=6",
    "probes.every=0",
    "probes.batch_size=32",
    "trainer.threads=1",
    "optim.lr=0.1",
]


def test_report_of_a_tiny_small_batch_sweep(run_cli, tmp_path):
    code, out, err = run_cli(
        "train", "-m", "name=sb", "norm=batch,layer", "per_device.images=8,4", "seed=0,1", *SWEEP
    )
    assert code == 0, out + err
    # an unfinished run: listed in the report, left out of the numbers
    code, out, err = run_cli(
        "train",
        "name=sb",
        "norm=batch",
        "per_device.images=2",
        "seed=0",
        "trainer.stop_after=4",
        *SWEEP,
    )
    assert code == 0, out + err
    code, out, err = run_cli("report", "runs/sb", "--out", "rep")
    assert code == 0, out + err
    rep = tmp_path / "rep"
    for name in (
        "small_batch.png",
        "small_batch_curve.csv",
        "small_batch_points.csv",
        "runs.csv",
        "README.md",
    ):
        assert (rep / name).is_file(), name
    cur = pd.read_csv(rep / "small_batch_curve.csv")
    assert sorted(zip(cur["norm"], cur["images"], strict=True)) == [
        ("batch", 4),
        ("batch", 8),
        ("layer", 4),
        ("layer", 8),
    ]
    assert (cur["seeds"] == 2).all() and cur["measured"].all()
    # a run's error is the median of its last 5 evaluations (after step 0), in %
    pts = pd.read_csv(rep / "small_batch_points.csv")
    assert len(pts) == 8 and (pts["evals"] == 5).all()
    for _, p in pts.iterrows():
        m = pd.read_csv(f"{p['run']}/metrics.csv")
        assert len(m) == 7  # steps 0, 2, ..., 12
        assert p["error"] == pytest.approx(100 * m["val_error"].iloc[-5:].median(), abs=1e-3)
    row = cur[(cur["norm"] == "batch") & (cur["images"] == 4)].iloc[0]
    assert row["mean"] == pytest.approx(
        pts[(pts["norm"] == "batch") & (pts["images"] == 4)]["error"].mean(), abs=1e-3
    )
    # LN ignores the other samples: in ghost mode its runs at N=8 and N=4 are the same computation
    ln = pts[pts["norm"] == "layer"].pivot(index="seed", columns="images", values="error")
    assert (ln[8] == ln[4]).all()
    # which runs are N-independent comes from what the runs recorded in summary.json
    assert pts.groupby("norm")["independent"].agg(set).to_dict() == {
        "batch": {False},
        "layer": {True},
    }
    recorded = {
        json.loads(p.read_text())["norm"]: json.loads(p.read_text())["norm_batch_dependent"]
        for p in (tmp_path / "runs" / "sb").rglob("summary.json")
    }
    assert recorded == {"batch": True, "layer": False}
    readme = (rep / "README.md").read_text()
    for text in (
        "| BN, paper | 24.8 | 27.3 |",
        "| BN, ours |",
        "| LN, paper | – | – |",
        "| LN, ours |",
        "largest difference between N for the same seed: 0.000",
        "| claim (paper) | ours | verdict |",
        "Hardware:",
        "normbench train -m",
        "per_device.images=8,4 seed=0,1",
        "Runs not complete",
        "stopped",
        "wall time (s)",
    ):
        assert text in readme, text
    stopped = [json.loads(p.read_text()) for p in (tmp_path / "runs" / "sb").rglob("summary.json")]
    assert sum(s["status"] == "stopped" for s in stopped) == 1
    assert "Where BN's penalty comes from" not in readme  # no bn_stats.csv yet

    # scripts/bn_stats_check.py's table, when present, gets its section: means over seeds, in %
    pd.DataFrame(
        {
            "norm": ["batch"] * 4,
            "images_per_device": [8, 8, 4, 4],
            "seed": [0, 1, 0, 1],
            "running": [0.10, 0.12, 0.20, 0.30],
            "precise": [0.11, 0.13, 0.21, 0.24],
            "batch": [0.15, 0.17, 0.40, 0.50],
            "precise_images": [64] * 4,
        }
    ).to_csv(rep / "bn_stats.csv", index=False)
    code, out, err = run_cli("report", "runs/sb", "--out", "rep")
    assert code == 0, out + err
    readme = (rep / "README.md").read_text()
    assert "| BN | 8 | 2 | 11.0 | 12.0 | 16.0 |" in readme
    assert "| BN | 4 | 2 | 25.0 | 22.5 | 45.0 |" in readme
    assert readme.index("| BN | 8 | 2 |") < readme.index("| BN | 4 | 2 |")  # N descending


def test_two_jobs_through_joblib_make_the_runs_and_report_of_one(tmp_path):
    """scripts/small_batch.sh with JOBS=2 (Hydra's joblib launcher, two worker processes) and
    with JOBS=1 (one job after another): the same run directories, the same metrics in each,
    byte-identical report tables."""
    script = Path(__file__).parents[1] / "scripts" / "small_batch.sh"
    wrapper = tmp_path / "normbench"
    wrapper.write_text(f'#!/bin/sh\nexec {sys.executable} -m normbench.cli "$@"\n')
    wrapper.chmod(0o755)

    def study(jobs: int) -> tuple[Path, str]:
        cwd = tmp_path / f"jobs{jobs}"
        cwd.mkdir()
        env = {
            **os.environ,
            "NORMBENCH": str(wrapper),
            "EXPERIMENT": "bn_fig1",  # norm=none,batch x SEEDS=0,1: 4 jobs
            "JOBS": str(jobs),
            "RESULTS": "results",
            "PYTHONUNBUFFERED": "1",
        }
        env.pop("NORMBENCH_JOBS", None)
        done = subprocess.run(
            ["bash", str(script), *SWEEP], cwd=cwd, env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return cwd, done.stdout + done.stderr

    serial, out = study(1)
    assert "Joblib" not in out and "multirun: 4 jobs: 4 complete" in out
    parallel, out = study(2)
    assert "Joblib.Parallel(n_jobs=2" in out and "multirun: 4 jobs: 4 complete" in out
    runs = sorted(p.parent.name for p in (serial / "runs" / "bn_fig1").glob("*/summary.json"))
    assert len(runs) == 4
    assert runs == sorted(
        p.parent.name for p in (parallel / "runs" / "bn_fig1").glob("*/summary.json")
    )
    for run in runs:
        a, b = (root / "runs" / "bn_fig1" / run / "metrics.csv" for root in (serial, parallel))
        pd.testing.assert_frame_equal(
            pd.read_csv(a).drop(columns=["time"]), pd.read_csv(b).drop(columns=["time"])
        )
    a, b = serial / "results", parallel / "results"
    assert sorted(p.name for p in a.iterdir()) == sorted(p.name for p in b.iterdir())
    tables = [p.name for p in a.glob("*.csv") if p.name != "runs.csv"]
    assert tables and all((a / t).read_bytes() == (b / t).read_bytes() for t in tables), tables

    def results(path: Path) -> pd.DataFrame:  # runs.csv less its timings
        table = pd.read_csv(path)
        timing = [c for c in table if c == "wall_time_s" or c.startswith(("ms_", "share_"))]
        return table.drop(columns=timing)

    pd.testing.assert_frame_equal(results(a / "runs.csv"), results(b / "runs.csv"))
