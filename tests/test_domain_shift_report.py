"""The domain-shift report on run directories made by hand: evals.csv and kl.csv rows with
made-up numbers, built so that each claim holds in one fixture and fails in another."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from normbench.cli import command as cli
from normbench.studies.domain_shift.data import Baseline

CORRUPTIONS = [  # Hendrycks & Dietterich's 15, written out here
    "gaussian_noise",
    "shot_noise",
    "impulse_noise",
    "defocus_blur",
    "glass_blur",
    "motion_blur",
    "zoom_blur",
    "snow",
    "frost",
    "fog",
    "brightness",
    "contrast",
    "elastic_transform",
    "pixelate",
    "jpeg_compression",
]
SUBSET = CORRUPTIONS[:3]  # where the k and N curves were evaluated
SEVERITIES = [1, 2, 3, 4, 5]
SEEDS = [0, 1, 2]
LAYERS = ["stem.bn", "layer1.0.bn1", "layer1.0.bn2"]
EVAL_HEADER = ["mode", "samples", "batch_size", "prior", "steps", "lr", "data", "corruption"]
EVAL_HEADER += ["severity", "error", "nll", "ece", "status", "applied", "note", "step"]
KEY = EVAL_HEADER[:9]
#: setting name -> (mode, knobs, corruptions it was evaluated on)
SETTINGS = {
    "running": ("running", {}, CORRUPTIONS),
    "adapt": ("adapt", {"samples": 1000}, CORRUPTIONS),
    "adapt_k8": ("adapt", {"samples": 8}, SUBSET),
    "adapt_k64": ("adapt", {"samples": 64}, SUBSET),
    "partial": ("partial", {"prior": 16.0, "batch_size": 8}, CORRUPTIONS),
    "partial_p0": ("partial", {"prior": 0.0, "batch_size": 8}, SUBSET),
    "partial_p64": ("partial", {"prior": 64.0, "batch_size": 8}, SUBSET),
    "partial_n16": ("partial", {"prior": 16.0, "batch_size": 16}, SUBSET),
    "tent": ("tent", {"steps": 1, "lr": 0.001, "batch_size": 128}, CORRUPTIONS),
}


def base(c: str) -> float:
    return 10.0 + CORRUPTIONS.index(c)


def noise(seed: int, c: str, s: int, setting: str) -> float:
    """Small wiggle in [-0.1, 0.1], different per seed, cell and setting."""
    return 0.1 * (((seed * 7 + CORRUPTIONS.index(c) * 3 + s + len(setting)) % 5) - 2) / 2


def error(spec: dict, setting: str, c: str, s: int, seed: int) -> float:
    """Error (%) of a run: base(c) + slope · severity + 0.3 · seed + noise."""
    return base(c) + spec["slopes"][setting] * s + 0.3 * seed + noise(seed, c, s, setting)


def clean_error(spec: dict, mode: str, seed: int) -> float:
    return 8.0 + 0.6 * seed + spec["clean"].get(mode, 0.0)


BN_GOOD = {
    "slopes": {
        "running": 4.0,
        "adapt": 1.0,
        "adapt_k8": 3.5,
        "adapt_k64": 1.5,
        "partial": 2.0,
        "partial_p0": 3.5,
        "partial_p64": 2.5,
        "partial_n16": 1.8,
        "tent": 0.5,
    },
    "clean": {"adapt": 0.1},
    "applied": True,
    "kl": {"running": 0.5, "adapt": 0.05},
}
VGG_GOOD = {**BN_GOOD, "slopes": {**BN_GOOD["slopes"], "running": 5.0}}
GN_GOOD = {
    "slopes": {**{k: 3.0 for k in SETTINGS}, "tent": 2.9},
    "clean": {},
    "applied": False,
    "kl": {"running": 0.3, "adapt": 0.3},
}
BN_BAD = {
    "slopes": {
        **{k: 4.0 for k in SETTINGS},
        "adapt": 4.0,  # adapt = running + 1 (below): the opposite of the claim
        "adapt_k8": 3.0,
        "partial": 5.0,  # partial worse than AdaBN on its 8 samples
        "tent": 5.0,  # worse than AdaBN
    },
    "offsets": {"adapt": 1.0},
    "clean": {"adapt": 5.0},  # far beyond the seed spread (0.6)
    "applied": True,
    "kl": {"running": 0.5, "adapt": 0.5},
}
GN_BAD = {  # a norm without batch statistics whose adapted error moves (made up)
    "slopes": {**{k: 3.0 for k in SETTINGS}, "adapt": 2.0},
    "clean": {},
    "applied": True,
    "kl": {"running": 0.3, "adapt": 0.3},
}


def eval_rows(spec: dict, seed: int, settings: dict = SETTINGS, severities=SEVERITIES) -> list:
    rows = []
    for name, (mode, knobs, corruptions) in settings.items():
        if name not in spec["slopes"]:
            continue
        applied = spec["applied"] or mode in ("running", "tent")
        common = {"mode": mode, **knobs, "data": "fashion_mnist", "status": "ok", "step": 1000}
        common["applied"] = "true" if applied else "false"
        for c in corruptions:
            for s in severities:
                e = error(spec, name, c, s, seed) + spec.get("offsets", {}).get(name, 0.0)
                rows.append({**common, "corruption": c, "severity": s, "error": e / 100})
        if name in ("running", "adapt", "partial", "tent"):
            rows.append(
                {**common, "corruption": "none", "error": clean_error(spec, mode, seed) / 100}
            )
    for row in rows:
        row.update(nll=0.5 + row["error"], ece=row["error"] / 4)
    return rows


def kl_rows(spec: dict, seed: int) -> list:
    rows = []
    for mode, knobs in (("running", {}), ("adapt", {"samples": 1000})):
        for c in CORRUPTIONS:
            for s in SEVERITIES:
                for i, layer in enumerate(LAYERS):
                    value = spec["kl"][mode] * (1 + s) * (i + 1) * (1 + 0.01 * seed)
                    rows.append(
                        {
                            "mode": mode,
                            **knobs,
                            "data": "fashion_mnist",
                            "corruption": c,
                            "severity": s,
                            "layer": layer,
                            "layer_type": "BatchNorm",
                            "kl_mean": value,
                            "kl_median": value,
                            "channels": 16,
                        }
                    )
    return rows


def write_csv(path: Path, rows: list[dict], header: list[str]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=header, restval="")
        writer.writeheader()
        writer.writerows(rows)


def make_run(
    root: Path,
    model: str,
    norm: str,
    seed: int,
    spec: dict,
    dependent: bool,
    evals: list | None = None,
    with_kl: bool = True,
) -> Path:
    run = root / f"{model}_{norm}" / f"seed={seed}"
    (run / ".hydra").mkdir(parents=True)
    config = {
        "name": "domain_shift",
        "seed": seed,
        "norm": {"name": norm},
        "model": {"name": model},
        "dataset": {"name": "fashion_mnist"},
    }
    (run / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    overrides = [
        "experiment=domain_shift",
        f"sweep/domain_shift_source={model}_{norm}",
        f"seed={seed}",
    ]
    (run / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    summary = {
        "status": "complete",
        "norm_batch_dependent": dependent,
        "num_classes": 10,
        "final": {"val_error": 0.1},
        "step": 1000,
        "wall_time_s": 60.0,
        "finished_at": "2026-11-30T10:00:00+00:00",
        "environment": {"device": "cpu", "device_name": "test CPU", "threads": 1},
    }
    (run / "summary.json").write_text(json.dumps(summary))
    (run / "metrics.csv").write_text("step,val_error\n500,0.2\n1000,0.1\n")
    write_csv(run / "evals.csv", evals if evals is not None else eval_rows(spec, seed), EVAL_HEADER)
    if with_kl:
        header = [*KEY, "layer", "layer_type", "kl_mean", "kl_median", "channels"]
        write_csv(run / "kl.csv", kl_rows(spec, seed), header)
    return run


def report(root: Path, out: Path, capsys) -> tuple[str, dict[str, pd.DataFrame]]:
    assert cli.main(["report", str(root), "--out", str(out)]) == 0
    capsys.readouterr()
    tables = {p.stem: pd.read_csv(p) for p in out.glob("*.csv")}
    return (out / "README.md").read_text(), tables


def verdict_lines(readme: str) -> dict[str, str]:
    """claim -> verdict, from the README's claims table."""
    table = readme.split("| claim | ours | verdict |\n|---|---|---|\n")[1].split("\n\n")[0]
    out = {}
    for line in table.splitlines():
        claim, _, text = (c.strip() for c in line.strip("|").split(" | "))
        out[claim] = text
    return out


def verdict(verdicts: dict[str, str], start: str) -> str:
    (key,) = [k for k in verdicts if k.startswith(start)]
    return verdicts[key]


@pytest.fixture
def good(tmp_path: Path) -> Path:
    root = tmp_path / "good"
    for seed in SEEDS:
        make_run(root, "resnet50", "batch", seed, BN_GOOD, True)
        make_run(root, "vgg16", "batch", seed, VGG_GOOD, True)
        make_run(root, "resnet50", "group", seed, GN_GOOD, False)
    return root


def test_every_claim_holds_on_the_good_fixture(good, tmp_path, capsys):
    readme, tables = report(good, tmp_path / "out", capsys)
    verdicts = verdict_lines(readme)
    assert len(verdicts) == 7, verdicts
    for start in (
        "Re-estimating",
        "The gain",
        "With few",
        "Adapting to clean",
        "The per-layer",
        "Tent improves",
    ):
        assert verdict(verdicts, start) == "shown", (start, verdicts)
    assert verdict(verdicts, "Models whose norms").startswith("shown, by construction")
    gaps = [
        error(BN_GOOD, "adapt", c, s, seed) - error(BN_GOOD, "running", c, s, seed)
        for seed in SEEDS
        for c in CORRUPTIONS
        for s in SEVERITIES
    ]
    want = sum(gaps) / len(gaps)  # about -9: slope 4 → 1 at mean severity 3
    assert f"resnet50/batch: adapt − running {want:+.2f} ± 0.0" in readme
    for png in (
        "heatmap_resnet50_batch.png",
        "heatmap_vgg16_batch.png",
        "heatmap_resnet50_group.png",
        "k_curve.png",
        "n_curve.png",
        "kl_per_layer.png",
    ):
        assert (tmp_path / "out" / png).stat().st_size > 1000, png
        assert f"]({png})" in readme
    errors = tables["errors"]
    assert len(errors) == 9 * sum(
        len(cs) * 5 + (name in ("running", "adapt", "partial", "tent"))
        for name, (_, _, cs) in SETTINGS.items()
    )
    row = errors[
        (errors["model"] == "vgg16")
        & (errors["mode"] == "running")
        & (errors["corruption"] == "fog")
        & (errors["severity"] == 4)
        & (errors["seed"] == 2)
    ]
    assert row["error"].item() == pytest.approx(error(VGG_GOOD, "running", "fog", 4, 2))


def mean_over_seeds(spec: dict, setting: str, c: str, s: int) -> float:
    return sum(error(spec, setting, c, s, seed) for seed in SEEDS) / len(SEEDS)


def test_mce_is_the_hendrycks_ratio_against_the_baseline(good, tmp_path, capsys):
    _, tables = report(good, tmp_path / "out", capsys)
    mce = tables["mce"].set_index(["model", "norm", "mode"])
    ces, rces = [], []
    clean_vgg = sum(clean_error(VGG_GOOD, "running", s) for s in SEEDS) / 3
    clean_base = sum(clean_error(BN_GOOD, "running", s) for s in SEEDS) / 3
    for c in CORRUPTIONS:
        mine = [mean_over_seeds(VGG_GOOD, "running", c, s) for s in SEVERITIES]
        theirs = [mean_over_seeds(BN_GOOD, "running", c, s) for s in SEVERITIES]
        ces.append(sum(mine) / sum(theirs))
        rces.append(sum(m - clean_vgg for m in mine) / sum(t - clean_base for t in theirs))
    assert mce.loc[("vgg16", "batch", "running"), "mce"] == pytest.approx(
        100 * sum(ces) / 15, rel=1e-5
    )
    assert mce.loc[("vgg16", "batch", "running"), "relative_mce"] == pytest.approx(
        100 * sum(rces) / 15, rel=1e-5
    )
    assert mce.loc[("resnet50", "batch", "running"), "mce"] == pytest.approx(100)
    adapt = [
        sum(mean_over_seeds(BN_GOOD, "adapt", c, s) for s in SEVERITIES)
        / sum(mean_over_seeds(BN_GOOD, "running", c, s) for s in SEVERITIES)
        for c in CORRUPTIONS
    ]
    assert mce.loc[("resnet50", "batch", "adapt"), "mce"] == pytest.approx(
        100 * sum(adapt) / 15, rel=1e-5
    )
    assert (mce["corruptions"] == 15).all() and (mce["severities"] == "1–5").all()


def test_the_k_and_n_curves_and_kl_per_layer(good, tmp_path, capsys):
    _, tables = report(good, tmp_path / "out", capsys)
    k = tables["k_curve"]
    k = k[(k["model"] == "resnet50") & (k["norm"] == "batch") & (k["severity"] == "all")]
    cells = [(c, s) for c in SUBSET for s in SEVERITIES]
    for setting, samples in (("adapt_k8", 8), ("adapt_k64", 64), ("adapt", 1000)):
        want = sum(mean_over_seeds(BN_GOOD, setting, c, s) for c, s in cells) / len(cells)
        assert k[k["samples"] == samples]["mean"].item() == pytest.approx(want, rel=1e-5)
    running = sum(mean_over_seeds(BN_GOOD, "running", c, s) for c, s in cells) / len(cells)
    assert k[k["mode"] == "running"]["mean"].item() == pytest.approx(running, rel=1e-5)
    assert (k["seeds"] == 3).all()
    n = tables["n_curve"]
    n = n[(n["model"] == "resnet50") & (n["norm"] == "batch") & (n["mode"] == "partial")]
    got = {(r.batch_size, r.prior): r.mean for r in n.itertuples()}
    for setting in ("partial", "partial_p0", "partial_p64", "partial_n16"):
        _, knobs, _ = SETTINGS[setting]
        want = sum(mean_over_seeds(BN_GOOD, setting, c, s) for c, s in cells) / len(cells)
        assert got[(knobs["batch_size"], knobs["prior"])] == pytest.approx(want, rel=1e-5)
    kl = tables["kl_per_layer"]
    kl = kl[(kl["model"] == "vgg16")].set_index(["layer", "mode"])["mean"]
    for i, layer in enumerate(LAYERS):
        for mode in ("running", "adapt"):
            want = sum(BN_GOOD["kl"][mode] * (1 + s) * (i + 1) for s in SEVERITIES) / 5
            assert kl[(layer, mode)] == pytest.approx(want * 1.01, rel=1e-5)  # seeds 0-2 average


def test_every_claim_fails_on_the_bad_fixture(tmp_path, capsys):
    root = tmp_path / "bad"
    for seed in SEEDS:
        make_run(root, "resnet50", "batch", seed, BN_BAD, True)
        make_run(root, "resnet50", "group", seed, GN_BAD, False)
    readme, _ = report(root, tmp_path / "out", capsys)
    verdicts = verdict_lines(readme)
    assert len(verdicts) == 7, verdicts
    assert verdict(verdicts, "Re-estimating").startswith("opposite")
    assert verdict(verdicts, "The gain").startswith("not shown")
    assert verdict(verdicts, "With few").startswith("opposite")
    assert verdict(verdicts, "Models whose norms").startswith("not shown: resnet50/group")
    assert verdict(verdicts, "Adapting to clean").startswith("not shown for resnet50/batch")
    assert verdict(verdicts, "The per-layer").startswith("not shown")
    assert verdict(verdicts, "Tent improves").startswith("opposite")


def test_missing_data_gives_not_enough_runs_and_no_verdict(tmp_path, capsys):
    root = tmp_path / "thin"
    only = {"running": ("running", {}, ["gaussian_noise"]), "adapt": SETTINGS["adapt"]}
    rows = eval_rows(BN_GOOD, 0, settings={"running": only["running"]}, severities=[3])
    rows += [
        r
        for r in eval_rows(BN_GOOD, 0, only, severities=[3])
        if r["mode"] == "adapt" and r["corruption"] == "gaussian_noise"
    ]
    make_run(root, "vgg16", "batch", 0, BN_GOOD, True, evals=rows, with_kl=False)
    readme, tables = report(root, tmp_path / "out", capsys)
    verdicts = verdict_lines(readme)
    assert len(verdicts) == 7
    for claim, text in verdicts.items():
        assert text.startswith("not enough runs: needs "), (claim, text)
    assert "two or more seeds of vgg16/batch" in verdict(verdicts, "Re-estimating")
    assert "not enough runs: needs corrupted evaluations of the baseline resnet50/batch" in readme
    assert tables["mce"].empty or tables["mce"]["mce"].isna().all()


def test_only_clean_evaluations_are_not_a_domain_shift_study(tmp_path, capsys):
    root = tmp_path / "clean_only"
    rows = [r for r in eval_rows(BN_GOOD, 0) if r["corruption"] == "none"]
    make_run(root, "resnet50", "batch", 0, BN_GOOD, True, evals=rows, with_kl=False)
    assert cli.main(["report", str(root), "--out", str(tmp_path / "out")]) == 0
    assert not (tmp_path / "out" / "README.md").read_text().startswith("# Domain shift")
    assert not (tmp_path / "out" / "mce.csv").exists()


def test_the_baseline_is_a_parameter(good, tmp_path):
    from normbench.report.collect import collect
    from normbench.studies.domain_shift.report import write_domain_shift_report

    out = tmp_path / "out"
    out.mkdir()
    runs = collect([good])
    write_domain_shift_report(runs, [str(good)], out, Baseline("vgg16", "batch", "running"))
    mce = pd.read_csv(out / "mce.csv").set_index(["model", "norm", "mode"])["mce"]
    assert mce[("vgg16", "batch", "running")] == pytest.approx(100)
    assert mce[("resnet50", "batch", "running")] < 100


def test_a_broken_kl_csv_is_one_message(good, tmp_path, capsys):
    run = good / "resnet50_batch" / "seed=0"
    (run / "kl.csv").write_text('mode,layer\n"unterminated\n')
    code = cli.main(["report", str(good), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and "kl.csv" in err and "normbench eval" in err
