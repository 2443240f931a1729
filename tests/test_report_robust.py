"""`normbench report` on run directories made by hand: empty comparisons get no verdict, runs at
chance level are flagged, and bad files or a bad --out give one line and exit code 2."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

STEPS = (0, 20, 40)
LAYERS = ("hidden.0.act", "hidden.1.act")


def _config(name: str, norm: str, seed: int, images: int | None) -> dict:
    """A run's resolved config, with the keys the reports read."""
    return {
        "name": name,
        "seed": seed,
        "norm": {"name": norm},
        "per_device": {"images": images, "mode": "ghost"},
        "dataset": {"name": "synthetic", "batch_size": 16, "val_split": "test"},
        "model": {"name": "mlp", "hidden": [32, 32], "activation": "sigmoid", "init_std": 1.0},
        "optim": {"lr": 0.1, "momentum": 0.9, "weight_decay": 0.0, "schedule": "constant"},
        "trainer": {"steps": STEPS[-1], "eval_every": 20},
        "probes": {"every": 20, "batch_size": 32, "mode": "train"},
    }


def make_run(
    root: Path,
    norm: str = "batch",
    seed: int = 0,
    *,
    name: str = "bn_fig1",
    images: int | None = None,
    final_error: float = 0.2,
    summary: dict | None = None,
    metrics: bool = True,
    activations: bool = True,
) -> Path:
    """Write one run directory under ``root/name`` the way the trainer lays it out."""
    overrides = [f"experiment={name}", f"norm={norm}", f"seed={seed}"]
    if images is not None:
        overrides.insert(2, f"per_device.images={images}")
    run = root / name / ",".join(overrides[1:])
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "config.yaml").write_text(yaml.safe_dump(_config(name, norm, seed, images)))
    (run / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    base = {
        "status": "complete",
        "step": STEPS[-1],
        "steps": STEPS[-1],
        "final": {"val_error": final_error},
        "best_val_error": final_error,
        "num_classes": 10,
        "at_chance": 1 - final_error < 1.2 / 10,
        "wall_time_s": 2.0,
        "time_share": {"train_step": 0.8, "eval": 0.1},
        "ms_per_step": {"train_step": 1.5},
        "finished_at": "2024-05-01T12:00:00+00:00",
    }
    (run / "summary.json").write_text(json.dumps(base if summary is None else summary))
    shift = 0.1 if norm == "batch" else 0.0  # BN ahead: lower error early on
    errors = [0.9, 0.5 - shift, final_error]
    if not metrics:  # the header only: no evaluation recorded
        (run / "metrics.csv").write_text("step,epoch,train_loss,val_error,val_loss,lr,time\n")
    else:
        pd.DataFrame(
            {
                "step": STEPS,
                "epoch": [s / 16 for s in STEPS],
                "train_loss": [2.3, 1.0, 0.5],
                "val_error": errors,
                "val_loss": [2.3, 1.1, 0.6],
                "lr": [0.1] * 3,
                "time": [0.0, 1.0, 2.0],
            }
        ).to_csv(run / "metrics.csv", index=False)
    if activations:
        rows = [
            {"step": s, "layer": layer, "unit_p15": -1 - k, "unit_p50": 0.0, "unit_p85": 1 + k}
            for s in STEPS
            for k, layer in enumerate(LAYERS)
        ]
        pd.DataFrame(rows).to_csv(run / "activations.csv", index=False)
    return run


def _report(run_cli, *args: str) -> tuple[int, str, str]:
    code, out, err = run_cli("report", *args)
    assert "Traceback" not in out + err
    return code, out, err


# --- 1. no verdict on an empty comparison ---------------------------------------------------


def _claims(rep: Path) -> list[str]:
    """The verdicts of the report's claims.csv, in order (fewer steps, higher, stabler)."""
    return list(pd.read_csv(rep / "claims.csv")["verdict"])


def test_bn_fig1_with_only_batch_runs_says_not_enough_runs(run_cli, tmp_path):
    for seed in (0, 1):
        make_run(tmp_path / "runs", "batch", seed)
    code, out, err = _report(run_cli, "runs/bn_fig1", "--out", "rep")
    assert code == 0, out + err
    verdicts = _claims(tmp_path / "rep")
    assert len(verdicts) == 3 and all(v.startswith("not enough runs") for v in verdicts), verdicts


@pytest.mark.parametrize("case", ["no metrics rows", "all failed", "no activations"])
def test_bn_fig1_with_nothing_to_compare_says_not_enough_runs(run_cli, tmp_path, case):
    for norm in ("none", "batch"):
        for seed in (0, 1, 2):
            make_run(
                tmp_path / "runs",
                norm,
                seed,
                metrics=case != "no metrics rows",
                activations=case != "no activations",
                summary={"status": "failed", "error": "RuntimeError: boom"}
                if case == "all failed"
                else None,
            )
    code, out, err = _report(run_cli, "runs/bn_fig1", "--out", "rep")
    assert code == 0, out + err
    verdicts = _claims(tmp_path / "rep")
    expected = {"no metrics rows": [0, 1], "all failed": [0, 1, 2], "no activations": [2]}[case]
    lacking = [i for i, v in enumerate(verdicts) if v.startswith("not enough runs")]
    assert lacking == expected, verdicts


@pytest.mark.parametrize(
    ("seeds", "verdict"), [(3, "shown at all 2 evaluations"), (2, "suggestive")]
)
def test_bn_fig1_with_both_norms_gives_verdicts(run_cli, tmp_path, seeds, verdict):
    for norm in ("none", "batch"):
        for seed in range(seeds):
            make_run(tmp_path / "runs", norm, seed, final_error=0.1 if norm == "batch" else 0.2)
    code, out, err = _report(run_cli, "runs/bn_fig1", "--out", "rep")
    assert code == 0, out + err
    verdicts = _claims(tmp_path / "rep")
    assert not any(v.startswith("not enough runs") for v in verdicts)
    assert verdicts[1].startswith(verdict), verdicts  # BN ahead by 10 points at every evaluation
    assert verdicts[2].startswith("not shown")  # the same percentiles with and without BN


# --- 2. runs at chance level are flagged ------------------------------------------------------


def test_runs_at_chance_level_are_flagged(run_cli, tmp_path):
    ok = make_run(tmp_path / "runs", "batch", 0, final_error=0.1)
    new = make_run(tmp_path / "runs", "none", 0, final_error=0.9)  # summary has at_chance: true
    summary = {"status": "complete", "step": 40, "final": {"val_error": 0.91}, "num_classes": 10}
    old = make_run(tmp_path / "runs", "none", 1, summary=summary)  # no at_chance key: computed
    summary = {"status": "complete", "step": 40, "final": {"val_error": 0.95}}
    unknown = make_run(tmp_path / "runs", "batch", 1, summary=summary)  # no class count: unknown
    warned = json.loads((ok / "summary.json").read_text())
    warned["warnings"] = ["loss spiked at step 20"]
    (ok / "summary.json").write_text(json.dumps(warned))
    rel = {p: str(p.relative_to(tmp_path)) for p in (ok, new, old, unknown)}

    code, out, err = _report(run_cli, "runs/bn_fig1", "--out", "rep")
    assert code == 0, out + err
    assert f"report: {rel[new]} ended at chance level (val error 0.90 with 10 classes)" in out
    assert f"report: {rel[old]} ended at chance level (val error 0.91 with 10 classes)" in out
    assert out.count("ended at chance level") == 2

    table = pd.read_csv(tmp_path / "rep" / "runs.csv").set_index("run")
    assert table.loc[rel[new], "at_chance"] == True  # noqa: E712 (a CSV cell, not a bool)
    assert table.loc[rel[old], "at_chance"] == True  # noqa: E712
    assert table.loc[rel[ok], "at_chance"] == False  # noqa: E712
    assert pd.isna(table.loc[rel[unknown], "at_chance"])
    assert table.loc[rel[ok], "warnings"] == "loss spiked at step 20"

    readme = (tmp_path / "rep" / "README.md").read_text()
    flagged = [line for line in readme.splitlines() if line.startswith("- ⚠ at chance level")]
    assert len(flagged) == 2 and any(rel[new] in f for f in flagged)
    assert any(rel[old] in f for f in flagged)
    assert not any(rel[ok] in f or rel[unknown] in f for f in flagged)
    assert "2 of 4 runs" in readme and "loss spiked at step 20" in readme
    acc = pd.read_csv(tmp_path / "rep" / "fig1_accuracy.csv")  # kept in the tables
    assert (acc[acc["norm"] == "none"]["seeds"] == 2).all()


def test_a_normal_run_is_not_flagged(run_cli, tmp_path):
    make_run(tmp_path / "runs", "batch", 0, final_error=0.1)
    code, out, err = _report(run_cli, "runs/bn_fig1", "--out", "rep")
    assert code == 0, out + err
    assert "chance" not in out and "⚠" not in (tmp_path / "rep" / "README.md").read_text()


# --- 3. bad run directories: one line naming the file, exit 2 --------------------------------

RUN = "runs/bn_fig1/norm=batch,seed=0"
BAD = [
    ("summary.json", '{"status": "complete", "final": {"val_', "is not valid JSON (truncated?"),
    ("summary.json", b"\xff\xfe\x00garbage", "is not text"),
    ("summary.json", "[1, 2]", "holds a JSON list, not an object"),
    (".hydra/config.yaml", "name: bn_fig1\nnorm: {name: batch\n", "is not valid YAML"),
    (".hydra/config.yaml", "- a\n- b\n", "holds a list, not a run's config"),
    (".hydra/config.yaml", "", "holds nothing, not a run's config"),
    (".hydra/config.yaml", "name: bn_fig1\nseed: 0\nnorm: {}\n", "has no norm.name"),
    (
        ".hydra/config.yaml",
        "name: bn_fig1\nseed: x\nnorm: {name: batch}\n",
        "has seed 'x', not an integer",
    ),
    (".hydra/overrides.yaml", "[norm=batch", "is not valid YAML"),
    ("metrics.csv", b"\x00\x9f\x92\x96 not, a csv\xff", "is not text"),
    ("metrics.csv", 'step,val_error\n0,0.5\n1,0.4,9,9\n"x', "is not valid CSV"),
    ("metrics.csv", "epoch,val_error\n0,0.5\n", "has no step column"),
    ("metrics.csv", "step,val_error\nfirst,0.5\n", "has a step column that does not hold numbers"),
    ("activations.csv", "layer,unit_p15\nh,0.1\n", "has no step column"),
    ("activations.csv", "\n\n", "is not valid CSV"),
]


@pytest.mark.parametrize(("name", "content", "problem"), BAD, ids=[f"{b[0]}: {b[2]}" for b in BAD])
def test_a_bad_run_file_is_one_line_naming_it(run_cli, tmp_path, name, content, problem):
    for norm in ("none", "batch"):
        make_run(tmp_path / "runs", norm, 0)
    path = tmp_path / RUN / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    code, out, err = _report(run_cli, "runs/bn_fig1", "--out", "rep")
    assert code == 2, out + err
    assert err.startswith("normbench report: error: ") and err.count("\n") == 1, err
    assert f"{RUN}/{name} {problem}" in err
    assert f"move {RUN} out of runs/bn_fig1" in err
    if name != ".hydra/overrides.yaml":
        assert "rerun `normbench train experiment=bn_fig1 norm=batch seed=0`" in err
    assert not (tmp_path / "rep").exists()  # nothing written


def test_a_bad_run_passed_directly_and_a_second_bad_run(run_cli, tmp_path):
    make_run(tmp_path / "runs", "none", 0)
    make_run(tmp_path / "runs", "batch", 0)
    (tmp_path / RUN / "summary.json").write_text("{")
    code, _, err = _report(run_cli, RUN)
    assert code == 2 and f"leave {RUN} out of the report's directories" in err
    (tmp_path / "runs/bn_fig1/norm=none,seed=0/metrics.csv").write_text("a\n1\n")
    code, _, err = _report(run_cli, "runs")
    assert code == 2 and err.count("\n") == 1
    assert "norm=batch,seed=0/summary.json is not valid JSON" in err
    assert "[1 more unreadable run directories]" in err


# --- 4. a bad --out --------------------------------------------------------------------------


def test_out_is_an_existing_file(run_cli, tmp_path):
    make_run(tmp_path / "runs", "batch", 0)
    (tmp_path / "notes.txt").write_text("mine")
    code, _, err = _report(run_cli, "runs/bn_fig1", "--out", "notes.txt")
    assert code == 2 and err.count("\n") == 1
    assert "--out notes.txt is a file, not a directory" in err
    assert (tmp_path / "notes.txt").read_text() == "mine"
    assert not (tmp_path / "runs/bn_fig1/report").exists()


def test_out_cannot_be_created(run_cli, tmp_path):
    make_run(tmp_path / "runs", "batch", 0)
    (tmp_path / "notes.txt").write_text("mine")
    code, _, err = _report(run_cli, "runs/bn_fig1", "--out", "notes.txt/rep")
    assert code == 2 and err.count("\n") == 1
    assert "cannot make the report directory notes.txt/rep: notes.txt is a file" in err
