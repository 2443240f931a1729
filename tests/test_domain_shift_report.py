"""The domain-shift report on run directories made by hand: evals.csv and kl.csv rows with
made-up numbers, built so that every claim holds on one fixture and fails on another (a verdict
that cannot fail is labelled "by construction", and the tests say which)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from normbench.report.collect import collect
from normbench.report.verdicts import BY_CONSTRUCTION, NOT_ENOUGH, SHOWN, read_claims
from normbench.studies.domain_shift import STUDY
from normbench.studies.domain_shift.data import Baseline
from normbench.studies.domain_shift.paper import BRIGHTNESS_AND_JPEG, NOISE_AND_BLUR
from normbench.studies.report import write_report

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
SEVERITIES = [1, 2, 3, 4, 5]
SEEDS = [0, 1, 2]
LAYERS = ["stem.bn", "layer1.0.bn1", "layer1.0.bn2"]
EVAL_HEADER = ["mode", "samples", "batch_size", "prior", "steps", "lr", "data", "corruption"]
EVAL_HEADER += ["severity", "error", "nll", "ece", "status", "applied", "note", "step"]
EVAL_HEADER += ["num_samples"]
KEY = EVAL_HEADER[:9]
TEST_DATA = "fashion_mnist[val_split=test]"
#: setting name -> (mode, knobs, severities, data); every corruption
SETTINGS = {
    "running": ("running", {}, SEVERITIES, "fashion_mnist"),
    "adapt": ("adapt", {"samples": 960}, SEVERITIES, "fashion_mnist"),
    "adapt_k8": ("adapt", {"samples": 8}, [3], "fashion_mnist"),
    "adapt_k64": ("adapt", {"samples": 64}, [3], "fashion_mnist"),
    "batch": ("batch", {"batch_size": 64}, SEVERITIES, "fashion_mnist"),
    "batch_tent": ("batch", {"batch_size": 128}, SEVERITIES, "fashion_mnist"),
    "partial": ("partial", {"prior": 16.0, "batch_size": 8}, SEVERITIES, "fashion_mnist"),
    "partial_p0": ("partial", {"prior": 0.0, "batch_size": 8}, [3], "fashion_mnist"),
    "partial_p64": ("partial", {"prior": 64.0, "batch_size": 8}, [3], "fashion_mnist"),
    "tent": ("tent", {"steps": 1, "lr": 0.001, "batch_size": 128}, SEVERITIES, "fashion_mnist"),
    "test_batch_tent": ("batch", {"batch_size": 128}, [5], TEST_DATA),
    "test_tent": ("tent", {"steps": 1, "lr": 0.001, "batch_size": 128}, [5], TEST_DATA),
}
#: clean rows: mode -> samples on the held-out and on the test images (whole batches of 64)
CLEAN = {"running": {}, "adapt": {"fashion_mnist": {"samples": 960}, TEST_DATA: {"samples": 9984}}}


def base(c: str) -> float:
    return 10.0 + CORRUPTIONS.index(c)


def noise(seed: int, c: str, s: int, setting: str) -> float:
    """Small wiggle in [-0.1, 0.1], different per seed, cell and setting."""
    return 0.1 * (((seed * 7 + CORRUPTIONS.index(c) * 3 + s + len(setting)) % 5) - 2) / 2


def kind(c: str) -> str:
    return "high" if c in NOISE_AND_BLUR else "low" if c in BRIGHTNESS_AND_JPEG else "other"


def error(spec: dict, setting: str, c: str, s: int, seed: int) -> float:
    """Error (%): base(c) + (slope + kind term) · severity + offset + 0.3 · seed + noise."""
    slope = spec["slopes"][setting.removeprefix("test_")]
    slope += spec.get("kinds", {}).get(setting, {}).get(kind(c), 0.0)
    offset = spec.get("offsets", {}).get(setting, 0.0)
    return base(c) + slope * s + offset + 0.3 * seed + noise(seed, c, s, setting)


def clean_error(spec: dict, mode: str, seed: int) -> float:
    return 8.0 + 0.6 * seed + spec["clean"].get(mode, 0.0)


BN_GOOD = {
    "slopes": {
        "running": 4.0,
        "adapt": 1.0,
        "adapt_k8": 3.5,
        "adapt_k64": 1.5,
        "batch": 1.2,
        "batch_tent": 1.5,
        "partial": 2.0,
        "partial_p0": 3.5,
        "partial_p64": 2.5,
        "tent": -0.5,
    },
    "kinds": {"adapt": {"high": -1.0, "low": 2.0}},  # the gain: largest for noise and blur
    "clean": {"adapt": 0.1},
    "applied": True,
    "kl": {"running": 0.5, "adapt": 0.00001},
}
VGG_GOOD = {**BN_GOOD, "slopes": {**BN_GOOD["slopes"], "running": 5.0}}
GN_GOOD = {  # between unadapted BN (slope 4) and adapted BN (slope 1)
    "slopes": {**{k: 2.5 for k in SETTINGS}, "tent": 2.4},
    "clean": {},
    "applied": False,
    "kl": {"running": 0.3, "adapt": 0.3},
}
BN_BAD = {
    "slopes": {
        **{k: 4.0 for k in SETTINGS},
        "partial": 5.5,  # worse than running, and than the batch's own statistics
        "partial_p0": 3.0,
        "tent": 7.0,  # worse than AdaBN and than test-batch statistics
    },
    "kinds": {"adapt": {"high": 2.0, "low": -2.0}},  # the gain: largest for brightness, jpeg
    "offsets": {"adapt": 4.0},  # adapt = running + 4: the opposite of the claim
    "clean": {"adapt": 5.0},  # far beyond the margin
    "applied": True,
    "kl": {"running": 0.5, "adapt": 0.5},
}
GN_BAD = {  # worse than unadapted BN; its adapted error moves (made up)
    "slopes": {**{k: 5.5 for k in SETTINGS}, "adapt": 2.0},
    "clean": {},
    "applied": True,
    "kl": {"running": 0.3, "adapt": 0.3},
}


def eval_rows(spec: dict, seed: int, settings: dict = SETTINGS) -> list:
    rows = []
    for name, (mode, knobs, severities, data) in settings.items():
        if name.removeprefix("test_") not in spec["slopes"]:
            continue
        applied = spec["applied"] or mode in ("running", "tent")
        images = 10000 if data == TEST_DATA else 1000
        common = {"mode": mode, **knobs, "data": data, "status": "ok", "step": 1000}
        common.update(applied="true" if applied else "false", num_samples=images)
        for c in CORRUPTIONS:
            for s in severities:
                e = error(spec, name, c, s, seed)
                rows.append({**common, "corruption": c, "severity": s, "error": e / 100})
    for mode, knobs in CLEAN.items():
        for data in ("fashion_mnist", TEST_DATA):
            applied = spec["applied"] or mode == "running"
            rows.append(
                {
                    "mode": mode,
                    **knobs.get(data, {}),
                    "data": data,
                    "status": "ok",
                    "step": 1000,
                    "corruption": "none",
                    "applied": "true" if applied else "false",
                    "error": clean_error(spec, mode, seed) / 100,
                    "num_samples": 10000 if data == TEST_DATA else 1000,
                }
            )
    for row in rows:
        row.update(nll=0.5 + row["error"], ece=row["error"] / 4)
    return rows


def kl_rows(spec: dict, seed: int) -> list:
    rows = []
    for mode, knobs in (("running", {}), ("adapt", {"samples": 960})):
        for c in ("gaussian_noise", "contrast", "fog"):
            for i, layer in enumerate(LAYERS):
                value = spec["kl"][mode] * (i + 1) * (1 + 0.01 * seed)
                rows.append(
                    {
                        "mode": mode,
                        **knobs,
                        "data": "fashion_mnist",
                        "corruption": c,
                        "severity": 3,
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


SOURCES = {
    ("resnet50", "batch"): "resnet_batch",
    ("vgg16", "batch"): "vgg_batch",
    ("resnet50", "group"): "resnet_group",
}


def make_run(
    root: Path,
    model: str,
    norm: str,
    seed: int,
    spec: dict,
    dependent: bool,
    evals: list | None = None,
    with_kl: bool = True,
    dir_name: str | None = None,
) -> Path:
    """A complete run directory as `normbench study run domain_shift` leaves it."""
    source = SOURCES[(model, norm)]
    run = root / (dir_name or f"seed={seed},sweep_domain_shift_source={source}")
    (run / ".hydra").mkdir(parents=True)
    config = {
        "name": "domain_shift",
        "seed": seed,
        "norm": {"name": norm},
        "model": {"name": model},
        "dataset": {"name": "fashion_mnist", "val_split": "holdout", "holdout_size": 1000},
    }
    (run / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    overrides = ["experiment=domain_shift", f"sweep/domain_shift_source={source}", f"seed={seed}"]
    (run / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    summary = {
        "status": "complete",
        "norm_batch_dependent": dependent,
        "num_classes": 10,
        "final": {"val_error": 0.1},
        "step": 1000,
        "wall_time_s": 60.0,
        "finished_at": "2026-11-30T10:00:00+00:00",
        "environment": {"device": "cpu", "device_name": "test CPU", "threads": 1, "git": "abc"},
    }
    (run / "summary.json").write_text(json.dumps(summary))
    (run / "metrics.csv").write_text("step,val_error\n500,0.2\n1000,0.1\n")
    write_csv(run / "evals.csv", evals if evals is not None else eval_rows(spec, seed), EVAL_HEADER)
    if with_kl:
        header = [*KEY, "layer", "layer_type", "kl_mean", "kl_median", "channels"]
        write_csv(run / "kl.csv", kl_rows(spec, seed), header)
    return run


def report(root: Path, out: Path) -> tuple[str, dict[str, pd.DataFrame], dict]:
    """README, tables and {claim key: verdict} of the study's report on the runs under root."""
    write_report(STUDY, None, collect([root]), [str(root)], out, "normbench study run domain_shift")
    tables = {p.stem: pd.read_csv(p) for p in out.glob("*.csv") if p.stat().st_size > 1}
    verdicts = {c.key: c for c in read_claims(out / "claims.csv")}
    return (out / "README.md").read_text(), tables, verdicts


def good_runs(root: Path) -> Path:
    for seed in SEEDS:
        make_run(root, "resnet50", "batch", seed, BN_GOOD, True)
        make_run(root, "vgg16", "batch", seed, VGG_GOOD, True)
        make_run(root, "resnet50", "group", seed, GN_GOOD, False)
    return root


@pytest.fixture
def good(tmp_path: Path) -> Path:
    """The good runs, for a test that changes them."""
    return good_runs(tmp_path / "runs" / "domain_shift")


@pytest.fixture(scope="module")
def good_report(tmp_path_factory) -> tuple[str, dict[str, pd.DataFrame], dict, Path]:
    """The report of the good runs (made once: the tests below only read it)."""
    tmp = tmp_path_factory.mktemp("good")
    root = good_runs(tmp / "runs" / "domain_shift")
    return (*report(root, tmp / "out"), tmp / "out")


BN_CLAIMS = ("adapt", "severity", "pattern", "partial_prior", "partial", "clean", "tent")
BN_CLAIMS += ("tent_adapt",)
GROUPS = ("resnet50/batch", "vgg16/batch")


def test_every_claim_holds_on_the_good_fixture(good_report):
    readme, tables, claims, out = good_report
    want = {f"{k}:{g}" for k in BN_CLAIMS for g in GROUPS}
    want |= {"norm_vs_bn:resnet50/group", "bn_adapt_vs_norm:resnet50/group", "batch_free", "kl"}
    assert set(claims) == want
    for key, c in claims.items():
        if key in ("batch_free", "kl"):
            assert c.outcome == BY_CONSTRUCTION, (key, c.verdict)
        else:
            assert c.outcome == SHOWN, (key, c.verdict, c.ours)
    # the headline at severity 5, on the held-out images: slope 4 → 1 (and the kind terms)
    gaps = [
        error(BN_GOOD, "adapt", c, 5, s) - error(BN_GOOD, "running", c, 5, s)
        for s in SEEDS
        for c in CORRUPTIONS
    ]
    assert (
        f"adapt − running {sum(gaps) / len(gaps):+.2f} ± 0.0" in claims["adapt:resnet50/batch"].ours
    )
    assert (
        "15 corruptions at severity 5, 1,000 held-out images" in claims["adapt:resnet50/batch"].ours
    )
    assert "43.5 → norm 20.4" in claims["adapt:resnet50/batch"].paper
    # small differences are measured on the 10,000 test images where they were evaluated
    assert "10,000 test images" in claims["tent:resnet50/batch"].ours
    assert "clean, 10,000 test images" in claims["clean:resnet50/batch"].ours
    assert "1,000 held-out images" in claims["tent_adapt:resnet50/batch"].ours
    assert "## Claims" in readme and "Verdict rule" in readme
    for png in (
        "heatmap_resnet50_batch.png",
        "heatmap_vgg16_batch.png",
        "heatmap_resnet50_group.png",
        "k_curve.png",
        "n_curve.png",
        "kl_per_layer.png",
    ):
        assert (out / png).stat().st_size > 1000, png
        assert f"]({png})" in readme
    errors = tables["errors"]
    row = errors[
        (errors["model"] == "vgg16")
        & (errors["mode"] == "running")
        & (errors["corruption"] == "fog")
        & (errors["severity"] == 4)
        & (errors["seed"] == 2)
    ]
    assert row["error"].item() == pytest.approx(error(VGG_GOOD, "running", "fog", 4, 2))
    assert set(errors["split"]) == {"val", "test"}


def test_every_claim_fails_on_the_bad_fixture(tmp_path):
    root = tmp_path / "bad"
    for seed in SEEDS:
        make_run(root, "resnet50", "batch", seed, BN_BAD, True)
        make_run(root, "resnet50", "group", seed, GN_BAD, False)
    _, _, claims = report(root, tmp_path / "out")
    assert claims["kl"].outcome == BY_CONSTRUCTION  # the one claim no data can fail
    judged = {k: c for k, c in claims.items() if k != "kl"}
    assert len(judged) == len(BN_CLAIMS) + 3
    for key, c in judged.items():
        assert c.outcome not in (SHOWN, BY_CONSTRUCTION, NOT_ENOUGH), (key, c.verdict, c.ours)
    for key in ("adapt", "pattern", "partial", "tent", "tent_adapt"):
        assert claims[f"{key}:resnet50/batch"].outcome == "opposite", key
    assert claims["batch_free:resnet50/group"].verdict.startswith("not shown (the interval")
    assert claims["norm_vs_bn:resnet50/group"].outcome == "opposite"


def test_two_seeds_are_only_suggestive(tmp_path):
    root = tmp_path / "two"
    for seed in SEEDS[:2]:
        make_run(root, "resnet50", "batch", seed, BN_GOOD, True)
    _, _, claims = report(root, tmp_path / "out")
    assert claims["adapt:resnet50/batch"].verdict == "suggestive (n = 2)"


def mean_over_seeds(spec: dict, setting: str, c: str, s: int) -> float:
    return sum(error(spec, setting, c, s, seed) for seed in SEEDS) / len(SEEDS)


def test_mce_is_the_hendrycks_ratio_on_shared_cells(good_report):
    readme, tables, _, _ = good_report
    mce = tables["mce"].set_index(["model", "norm", "mode"])
    ces, rces = [], []
    clean_vgg = sum(clean_error(VGG_GOOD, "running", s) for s in SEEDS) / 3
    clean_base = sum(clean_error(BN_GOOD, "running", s) for s in SEEDS) / 3
    for c in CORRUPTIONS:
        mine = [mean_over_seeds(VGG_GOOD, "running", c, s) for s in SEVERITIES]
        theirs = [mean_over_seeds(BN_GOOD, "running", c, s) for s in SEVERITIES]
        ces.append(sum(mine) / sum(theirs))
        rces.append(sum(m - clean_vgg for m in mine) / sum(t - clean_base for t in theirs))
    vgg = ("vgg16", "batch", "running")
    assert mce.loc[vgg, "mce"] == pytest.approx(100 * sum(ces) / 15, rel=1e-5)
    assert mce.loc[vgg, "relative_mce"] == pytest.approx(100 * sum(rces) / 15, rel=1e-5)
    assert mce.loc[("resnet50", "batch", "running"), "mce"] == pytest.approx(100)
    assert (mce["corruptions"] == 15).all() and (mce["severities"] == "1–5").all()
    # the mode that does not apply to GN is no row; the one that does (tent) is
    assert ("resnet50", "group", "adapt") not in mce.index
    assert ("resnet50", "group", "tent") in mce.index
    assert "left out: resnet50/group mode=adapt: not applied" in readme
    norms = tables["norms"].set_index("norm")
    assert norms.loc["group", "adapt − running"] == "not applied"


def test_a_mode_on_fewer_seeds_and_corruptions_is_left_out_of_mce(good, tmp_path):
    run = good / "seed=0,sweep_domain_shift_source=resnet_batch"
    few = {"precise": ("precise", {"samples": 960}, SEVERITIES, "fashion_mnist")}
    rows = [
        r
        for r in eval_rows({**BN_GOOD, "slopes": {"precise": 0.0}}, 0, few)
        if r["corruption"] in CORRUPTIONS[:6]
    ]
    with open(run / "evals.csv", "a", newline="") as f:
        csv.DictWriter(f, fieldnames=EVAL_HEADER, restval="").writerows(rows)
    readme, tables, _ = report(good, tmp_path / "out")
    assert "precise" not in set(tables["mce"]["mode"])
    assert (
        "resnet50/batch mode=precise: 30 of the 225 corrupted cells of running (runs: 1)" in readme
    )


def test_the_k_curve_is_labelled_with_its_severity(good_report):
    readme, tables, _, _ = good_report
    k = tables["k_curve"]
    assert set(k["severity"]) == {3}  # the only severity with more than one k
    k = k[(k["model"] == "resnet50") & (k["norm"] == "batch")]
    for setting, samples in (("adapt_k8", 8), ("adapt_k64", 64), ("adapt", 960)):
        want = sum(mean_over_seeds(BN_GOOD, setting, c, 3) for c in CORRUPTIONS) / 15
        assert k[k["samples"] == samples]["mean"].item() == pytest.approx(want, rel=1e-5)
    assert (k["seeds"] == 3).all() and (k["corruptions"] == 15).all()
    assert "severity 3 only" in readme and "all severities pooled" not in readme
    n = tables["n_curve"]
    n = n[(n["model"] == "resnet50") & (n["norm"] == "batch") & (n["mode"] == "partial")]
    got = {(r.batch_size, r.prior): r.mean for r in n.itertuples()}
    for setting in ("partial", "partial_p0", "partial_p64"):
        knobs = SETTINGS[setting][1]
        want = sum(mean_over_seeds(BN_GOOD, setting, c, 3) for c in CORRUPTIONS) / 15
        assert got[(knobs["batch_size"], knobs["prior"])] == pytest.approx(want, rel=1e-5)


def test_tent_is_set_against_test_batch_statistics_at_its_batch_size(good_report):
    readme, tables, claims, _ = good_report
    t = tables["tent_test"].set_index(["model", "norm", "severity"])
    row = t.loc[("resnet50", "batch", "5")]
    want = sum(mean_over_seeds(BN_GOOD, "test_batch_tent", c, 5) for c in CORRUPTIONS) / 15
    assert row["batch@tent"] == pytest.approx(want, rel=1e-5)
    assert "8 updates (batches of 128 over 1000 images)" in readme
    assert "79 updates (batches of 128 over 10000 images)" in readme
    assert "50 updates per corruption" in claims["tent:resnet50/batch"].paper
    sev5 = tables["severity5"]
    paper = sev5[(sev5["model"] == "resnet50") & (sev5["mode"] == "batch@tent")]
    assert set(paper["paper (CIFAR-10-C)"]) == {20.4}


def test_missing_data_gives_not_enough_runs(tmp_path):
    root = tmp_path / "thin"
    only = {
        "running": ("running", {}, [3], "fashion_mnist"),
        "adapt": ("adapt", {"samples": 960}, [3], "fashion_mnist"),
    }
    rows = [r for r in eval_rows(BN_GOOD, 0, only) if r["corruption"] in ("gaussian_noise", "none")]
    make_run(root, "vgg16", "batch", 0, BN_GOOD, True, evals=rows, with_kl=False)
    readme, tables, claims = report(root, tmp_path / "out")
    for key, c in claims.items():
        assert c.outcome == NOT_ENOUGH, (key, c.verdict)
    assert "n = 1" in claims["clean:vgg16/batch"].verdict
    assert "needs corrupted evaluations of the baseline resnet50/batch" in readme
    assert "mce" not in tables or tables["mce"].empty


def test_the_baseline_is_a_parameter(good, tmp_path):
    from normbench.studies.domain_shift.report import write_domain_shift_report

    out = tmp_path / "out"
    out.mkdir()
    write_domain_shift_report(collect([good]), [str(good)], out, Baseline("vgg16", "batch"))
    mce = pd.read_csv(out / "mce.csv").set_index(["model", "norm", "mode"])["mce"]
    assert mce[("vgg16", "batch", "running")] == pytest.approx(100)
    assert mce[("resnet50", "batch", "running")] < 100


def test_a_broken_kl_csv_is_one_message(good, tmp_path):
    from normbench.errors import NormbenchError

    run = good / "seed=0,sweep_domain_shift_source=resnet_batch"
    (run / "kl.csv").write_text('mode,layer\n"unterminated\n')
    with pytest.raises(NormbenchError, match="kl.csv.*normbench eval"):
        report(good, tmp_path / "out")
