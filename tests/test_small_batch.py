"""Small-batch study (GN paper Figure 1 / Table 2): its claims on constructed per-seed tables under
the shared verdict rule, its phases' selection, its declaration (variants, plan)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml

from normbench.config import config_dir
from normbench.evaluation.data import DataChoice
from normbench.norms import VARIANTS, build_norm_spec
from normbench.report.collect import Run
from normbench.report.verdicts import BY_CONSTRUCTION, NOT_ENOUGH, NOT_SHOWN, OPPOSITE, SHOWN
from normbench.studies.evaluate import phase_plan
from normbench.studies.small_batch import BN_STATS, STUDY, TEST, belongs
from normbench.studies.small_batch.claims import (
    Setting,
    all_claims,
    bn_beats_gn,
    bn_rise,
    brn_recovers,
    gn_flat,
    gn_wins_small,
    ln_in,
)
from normbench.studies.small_batch.points import (
    batch_independent,
    expand_independent,
    label_of_test_split,
)

SETTING = Setting("test scale", 10000, "the batch and the steps fixed")
BASE = (25.0, 25.4, 24.8)  # one error per seed: seeds differ, as trained models do
EFFECT = (3.0, 3.3, 2.8)  # a clear effect: ~3 points, consistent over seeds
KEYS = ("bn_rise", "gn_flat", "bn_beats_gn", "ln_in", "gn_wins_small", "brn", "brn_normal")
NOISE = (6.0, 0.0, 3.0)  # the same mean effect, with a seed spread as large as the effect


def table(cells: dict[tuple[str, int], tuple[float, ...]], mode: str = "real") -> pd.DataFrame:
    """Per-seed test errors {(norm, N): (seed 0, seed 1, ...)} as the report's points table."""
    rows = [
        {
            "norm": norm,
            "images": n,
            "mode": mode,
            "seed": s,
            "error": e,
            "test_error": e,
            "independent": mode == "ghost" and norm in ("group", "layer", "instance"),
        }
        for (norm, n), seeds in cells.items()
        for s, e in enumerate(seeds)
    ]
    return pd.DataFrame(rows).assign(measured=True)


def shifted(delta: tuple[float, ...], sign: int = 1) -> tuple[float, ...]:
    return tuple(b + sign * d for b, d in zip(BASE, delta, strict=True))


def seeds(cells: dict, k: int) -> dict:
    return {c: v[:k] for c, v in cells.items()}


# (claim builder, cells every scenario has at BASE, the cells moved by the effect, claimed sign)
CASES = {
    "bn_rise": (bn_rise, [("batch", 32), ("group", 32)], [("batch", 2)], +1),
    "bn_beats_gn": (bn_beats_gn, [("batch", 32)], [("group", 32)], +1),
    "gn_wins_small": (gn_wins_small, [("batch", 32), ("batch", 2)], [("group", 2)], -1),
    "ln_in": (ln_in, [("group", 32)], [("layer", 32), ("instance", 32)], +1),
}


def scenario(key: str, delta: tuple[float, ...], sign: int) -> pd.DataFrame:
    _, fixed, moved, _ = CASES[key]
    cells = {c: BASE for c in fixed}
    cells.update({c: shifted(delta, sign) for c in moved})
    if key == "gn_wins_small":
        cells[("group", 32)] = BASE
    return table(cells)


@pytest.mark.parametrize("key", CASES)
def test_a_claim_is_shown_with_three_seeds_and_only_suggestive_with_two(key):
    build, _, _, sign = CASES[key]
    pts = scenario(key, EFFECT, sign)
    claim = build(pts, SETTING)
    assert claim.key == key and claim.outcome == SHOWN, claim.verdict
    two = build(pts[pts["seed"] < 2], SETTING)  # the same two seeds' values
    assert two.outcome == "suggestive" and "(n = 2)" in two.verdict, two.verdict


@pytest.mark.parametrize("key", CASES)
def test_a_claim_is_not_shown_when_the_seed_noise_is_as_large_as_the_effect(key):
    build, _, _, sign = CASES[key]
    claim = build(scenario(key, NOISE, sign), SETTING)
    assert claim.outcome == NOT_SHOWN and "interval holds 0" in claim.verdict, claim.verdict


@pytest.mark.parametrize("key", CASES)
def test_a_claim_against_the_data_is_opposite(key):
    build, _, _, sign = CASES[key]
    claim = build(scenario(key, EFFECT, -sign), SETTING)
    assert claim.outcome == OPPOSITE, claim.verdict


def test_an_effect_below_the_minimum_is_not_shown_however_consistent():
    pts = table({("batch", 32): BASE, ("batch", 2): shifted((0.3, 0.31, 0.29))})
    claim = bn_rise(pts, SETTING)
    assert claim.outcome == NOT_SHOWN and "minimum" in claim.verdict, claim.verdict


def test_bn_rise_is_judged_at_n_4_and_below_and_lists_the_others():
    pts = table(
        {("batch", 32): BASE, ("batch", 8): BASE, ("batch", 4): shifted(EFFECT), ("batch", 2): BASE}
    )
    claim = bn_rise(pts, SETTING)
    assert "judged here at N = 4, 2" in claim.claim and "N = 8: +0.00" in claim.ours
    assert claim.outcome == NOT_SHOWN and "N = 4: shown" in claim.verdict, claim.verdict
    assert "N = 4: +3.7; N = 2: +11.1" in claim.paper and "N = 8: +1.2" in claim.paper


def test_gn_flat_holds_by_construction_in_ghost_mode_and_is_tested_in_real_mode():
    ghost = expand_independent(
        table({("batch", 32): BASE, ("batch", 2): BASE, ("group", 32): BASE}, "ghost").drop(
            columns="measured"
        ),
        [32, 2],
    )
    assert gn_flat(ghost, SETTING).verdict.startswith(BY_CONSTRUCTION)
    assert "run at N = 32 only" in gn_flat(ghost, SETTING).ours
    broken = table({("group", 32): BASE, ("group", 2): shifted((0.1, 0.1, 0.1))}, "ghost")
    assert gn_flat(broken, SETTING).outcome == NOT_SHOWN  # the same computation differed
    flat = table({("group", 32): BASE, ("group", 2): shifted((0.05, -0.05, 0.0))})
    claim = gn_flat(flat, SETTING)
    assert claim.outcome == SHOWN and "within ±0." in claim.verdict, claim.verdict
    assert gn_flat(flat[flat["seed"] < 2], SETTING).outcome == "suggestive"
    moved = table({("group", 32): BASE, ("group", 2): shifted(EFFECT, -1)})
    claim = gn_flat(moved, SETTING)
    assert claim.outcome == NOT_SHOWN and "leaves ±" in claim.verdict, claim.verdict
    assert "the batch and the steps fixed" in claim.claim


def test_brn_share_of_bns_loss_is_given_only_when_that_loss_is_shown():
    cells = {
        ("batch", 32): BASE,
        ("batch", 4): shifted((6.0, 6.2, 5.9)),
        ("batch_renorm", 4): shifted(EFFECT),
    }
    claim = brn_recovers(table(cells), SETTING)
    assert claim.outcome == SHOWN and "% of BN's loss" in claim.ours, claim
    cells[("batch", 4)] = shifted((8.0, 0.0, 4.0))  # BN's loss within the noise
    claim = brn_recovers(table(cells), SETTING)
    assert "% of BN's loss" not in claim.ours and "no share of it is given" in claim.ours
    assert claim.outcome != SHOWN


def test_claims_without_runs_or_test_errors_say_not_enough_runs():
    empty = pd.DataFrame(columns=[*table({("batch", 32): BASE}).columns])
    for claim in all_claims(empty, SETTING):
        assert claim.outcome == NOT_ENOUGH, (claim.key, claim.verdict)
    untested = table({("batch", 32): BASE, ("batch", 2): BASE}).assign(test_error=float("nan"))
    assert bn_rise(untested, SETTING).outcome == NOT_ENOUGH


def test_pairs_need_a_common_seed():
    pts = table({("batch", 32): BASE, ("batch", 2): shifted(EFFECT)})
    pts.loc[pts["images"] == 2, "seed"] += 10  # the N = 2 runs share no seed with N = 32's
    claim = bn_rise(pts, SETTING)
    assert claim.outcome == NOT_ENOUGH and "not measured" in claim.ours, claim


def test_claim_keys_are_the_same_in_every_setting():
    pts = table({c: BASE for c in [("batch", 32), ("batch", 2), ("group", 32), ("group", 2)]})
    assert tuple(c.key for c in all_claims(pts, SETTING)) == KEYS


def test_the_test_phase_label_is_the_one_normbench_eval_writes():
    choice = DataChoice(overrides=(("val_split", "test"),))
    assert choice.label("fashion_mnist") == label_of_test_split("fashion_mnist")
    assert dict(TEST.grid) == {"mode": "running", "data.val_split": "test"}
    assert dict(BN_STATS.grid) == {"mode": "running,precise,batch", "samples": "10000"}


def run(
    directory: str, norm: str, summary: dict, name: str = "small_batch", mode: str = "ghost"
) -> Run:
    """A run as the study sees it: config, summary.json, path (and nothing else)."""
    config = {"name": name, "norm": {"name": norm}, "per_device": {"images": 4, "mode": mode}}
    return Run(
        Path(directory),
        config,
        [],
        {"status": "complete", **summary},
        pd.DataFrame(),
        pd.DataFrame(),
    )


def test_the_bn_stats_phase_selects_by_what_summary_json_records_not_the_directory():
    named_bn = run("runs/x/sweep_small_batch_norm=batch", "batch", {"norm_batch_dependent": False})
    named_gn = run("runs/x/sweep_small_batch_norm=group", "group", {"norm_batch_dependent": True})
    assert not BN_STATS.select(named_bn) and BN_STATS.select(named_gn)
    assert TEST.select(named_bn) and TEST.select(named_gn)
    plan = {item.run.norm: item.phases for item in phase_plan(STUDY.phases, [named_bn, named_gn])}
    assert plan == {"batch": ["test"], "group": ["test", "bn_stats"]}


def test_a_setting_takes_the_runs_of_its_name_and_mode_only():
    real = STUDY.variants["real"]
    assert belongs(run("a", "batch", {}), STUDY, None)
    assert not belongs(run("a", "batch", {}, mode="real"), STUDY, None)
    assert belongs(run("a", "batch", {}, name="small_batch_real", mode="real"), STUDY, real)
    assert not belongs(run("a", "batch", {}, name="small_batch", mode="real"), STUDY, real)
    ddp = STUDY.variants["ddp"]
    for mode in ("ddp", "real"):
        assert belongs(run("a", "sync_batch", {}, name="small_batch_ddp", mode=mode), STUDY, ddp)


def test_plan_of_the_ddp_variant_prints_its_grid_with_sync_bn(run_cli):
    code, out, err = run_cli("study", "plan", "small_batch", "--variant", "ddp")
    assert code == 0, out + err
    assert "variant ddp:" in out and "runs/small_batch_ddp/" in out
    assert "sweep/small_batch_norm=batch,sync_batch" in out
    assert "per_device.mode=ddp,real" in out and "per_device.images=32,16,8" in out
    assert "seed=0,1,2" in out and "training: 36 runs" in out  # 2 norms x 2 modes x 3 N x 3 seeds
    assert "results/small_batch_ddp/" in out


def test_every_variant_records_its_own_name_and_results_folder(run_cli):
    from normbench.studies import study_of_run_name

    for name, variant in STUDY.variants.items():
        found = study_of_run_name(f"small_batch_{name}")
        assert found is not None and found[1] == name
        assert variant.results == f"results/small_batch_{name}"
    code, out, _ = run_cli("study", "plan", "small_batch", "--variant", "long")
    assert code == 0 and "experiment=small_batch_long" in out and "training: 12 runs" in out


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
    config = {"norm": norm, "per_device": {"images": 4, "mode": "ghost"}}
    ghost = Run(Path("r"), config, [], {}, pd.DataFrame(), pd.DataFrame())
    assert ghost.batch_dependent == dependent
    assert batch_independent(ghost) == (not dependent)
    real = {**config, "per_device": {"images": 4, "mode": "real"}}
    assert not batch_independent(
        Run(Path("r"), real, [], {}, pd.DataFrame(), pd.DataFrame())
    )  # real mode: N changes batch and lr


def test_the_recorded_flag_wins_over_the_fallback():
    assert batch_independent(run("r", "layer", {}))
    assert not batch_independent(run("r", "layer", {"norm_batch_dependent": True}))
    assert batch_independent(run("r", "batch", {"norm_batch_dependent": False}))
    assert not batch_independent(run("r", "a_variant_added_later", {}))  # unknown: dependent
