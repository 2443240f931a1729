"""Bad seeds, norm options, unknown keys and run names: one line each, naming the fix."""

from __future__ import annotations

import inspect

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from normbench.config import (
    SCHEMAS,
    check_run_name,
    check_seed,
    config_dir,
    register_resolvers,
    unknown_key_message,
    validate,
)
from normbench.errors import ConfigError
from normbench.norms import VARIANTS, build_norm_spec
from normbench.norms.registry import RANGES

FAST = ["dataset=synthetic", "dataset.num_train=64", "dataset.num_val=32", "trainer.steps=1"]
SEED_RANGE = "seed must be an integer in 0..4294967295"
BAD_NAME = "must be a plain directory name under runs/ (letters, digits, _ - . + = ,)"


def _compose(overrides: list[str]):
    register_resolvers()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return compose("train", overrides=overrides)


def _refusal(overrides: list[str]) -> str:
    with pytest.raises(ConfigError) as err:
        validate(_compose(overrides))
    return str(err.value)


# --- seed ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("-1", "-1"),
        ("99999999999", "99999999999"),
        ("abc", "'abc'"),
        ("1.5", "1.5"),
        ("true", "true"),
    ],
)
def test_a_bad_seed_names_the_range(value, shown):
    assert _refusal([f"seed={value}"]) == f"{SEED_RANGE}, got {shown}."


@pytest.mark.parametrize("seed", [0, 7, 2**32 - 1])
def test_seeds_numpy_takes_are_accepted(seed):
    assert check_seed(seed) == seed
    validate(_compose([f"seed={seed}"]))


def test_one_past_numpys_largest_seed_is_refused():
    with pytest.raises(ConfigError, match=f"{SEED_RANGE}, got 4294967296"):
        check_seed(2**32)


# --- unknown keys -------------------------------------------------------------------------


def test_unknown_key_message_suggests_the_close_match_and_no_plus():
    message = unknown_key_message("trainer", "stepz", ["steps", "eval_every", "device"])
    assert message == (
        "trainer.stepz is not an option of trainer (did you mean trainer.steps?); "
        "`normbench train --cfg job` lists every option."
    )
    assert "+" not in message and "\n" not in message


def test_unknown_key_message_without_a_close_match_lists_the_options():
    message = unknown_key_message("probes", "zzz", ["every", "mode"])
    assert "probes.zzz is not an option of probes (its options are: every, mode)" in message
    assert "it takes no options" in unknown_key_message("norm", "x", [], owner="norm=none")


@pytest.mark.parametrize(
    ("override", "key", "match"),
    [
        ("+trainer.stepz=5", "trainer.stepz", "trainer.steps"),
        ("+probes.evry=5", "probes.evry", "probes.every"),
        ("+logging.tensorbord=false", "logging.tensorbord", "logging.tensorboard"),
        ("+optim.lrr=0.1", "optim.lrr", "optim.lr"),
    ],
)
def test_an_unknown_key_of_a_schemad_section_names_the_close_match(override, key, match):
    section = key.split(".")[0]
    assert section in SCHEMAS
    assert _refusal([override]) == (
        f"{key} is not an option of {section} (did you mean {match}?); "
        "`normbench train --cfg job` lists every option."
    )


def test_an_unknown_norm_option_names_the_close_match():
    with pytest.raises(ConfigError) as err:
        build_norm_spec(_compose(["norm=group", "+norm.groups=7"]).norm)
    assert str(err.value) == (
        "norm.groups is not an option of norm=group (did you mean norm.num_groups?); "
        "`normbench train --cfg job` lists every option."
    )


def test_norm_none_takes_no_options():
    with pytest.raises(ConfigError, match=r"norm.foo is not an option of norm=none \(it takes no"):
        build_norm_spec({"name": "none", "foo": 1})


# --- norm option ranges -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"name": "batch", "eps": -1}, "norm.eps must be > 0, got -1.0."),
        ({"name": "layer", "eps": 0}, "norm.eps must be > 0, got 0.0."),
        ({"name": "frn", "eps": "abc"}, "norm.eps must be a number > 0, got 'abc'."),
        ({"name": "ws_group", "ws_eps": -1e-5}, "norm.ws_eps must be > 0, got -1e-05."),
        (
            {"name": "batch", "momentum": 2},
            "norm.momentum must be in [0, 1], or null for the cumulative average, got 2.0.",
        ),
        (
            {"name": "weight", "momentum": -0.1},
            "norm.momentum must be in [0, 1], or null for the cumulative average, got -0.1.",
        ),
        ({"name": "group", "num_groups": 0}, "norm.num_groups must be a positive integer, got 0."),
        (
            {"name": "group", "num_groups": 2.5},
            "norm.num_groups must be a positive integer, got 2.5.",
        ),
        ({"name": "evonorm", "groups": -4}, "norm.groups must be a positive integer, got -4."),
        ({"name": "batch_renorm", "r_max": 0.5}, "norm.r_max must be >= 1, got 0.5."),
        ({"name": "batch_renorm", "d_max": -1}, "norm.d_max must be >= 0, got -1.0."),
        (
            {"name": "batch_renorm", "warmup_steps": -1},
            "norm.warmup_steps must be an integer >= 0, got -1.",
        ),
        (
            {"name": "ghost_batch", "group_size": None},
            "norm.group_size must be a positive integer, got null.",
        ),
        ({"name": "group", "affine": 2}, "norm.affine must be true or false, got 2."),
    ],
)
def test_an_out_of_range_norm_option_names_key_and_range(options, message):
    with pytest.raises(ConfigError) as err:
        build_norm_spec(options)
    assert str(err.value) == message


def test_validate_then_build_refuse_the_override_as_typed():
    cfg = _compose(["norm=batch", "norm.eps=-1"])
    validate(cfg)  # the norm's options are the spec's to check
    with pytest.raises(ConfigError, match=r"^norm\.eps must be > 0, got -1\.0\.$"):
        build_norm_spec(cfg.norm)


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_every_ranged_option_of_every_variant_is_checked(name):
    params = inspect.signature(VARIANTS[name].__init__).parameters
    for key in sorted(set(params) & set(RANGES)):
        low = RANGES[key].low
        assert low is not None
        with pytest.raises(ConfigError, match=rf"^norm\.{key} must be "):
            build_norm_spec({"name": name, key: low - 1})


@pytest.mark.parametrize(
    "options",
    [
        {"name": "batch", "momentum": None},
        {"name": "batch", "momentum": 0, "eps": 1},
        {"name": "sync_batch", "momentum": 1.0},
        {"name": "batch_renorm", "r_max": 1, "d_max": 0, "warmup_steps": 0, "group_size": None},
        {"name": "group", "num_groups": 1, "affine": False},
    ],
)
def test_values_at_the_edge_of_the_range_are_accepted(options):
    build_norm_spec(options)


# --- run name -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["my_study", "bn_fig1", "lr=0.1,bs+2-x.y", "étude", "a..b"])
def test_plain_names_are_accepted(name):
    assert check_run_name(name) == name


def test_a_numeric_name_becomes_its_text():
    assert check_run_name(123) == "123"


@pytest.mark.parametrize(
    "name", ["../../x", "..", ".", ".hidden", "", "a/b", "a\\b", "/abs", "a b", "x\n", None, True]
)
def test_a_name_that_is_not_one_plain_directory_is_refused(name):
    with pytest.raises(ConfigError) as err:
        check_run_name(name)
    assert BAD_NAME in str(err.value) and "choose e.g. name=my_study" in str(err.value)


def test_the_refusal_quotes_the_name_as_typed():
    with pytest.raises(ConfigError) as err:
        check_run_name("../../x")
    assert str(err.value) == (
        "name='../../x' must be a plain directory name under runs/ (letters, digits, "
        "_ - . + = ,); choose e.g. name=my_study"
    )


def test_validate_refuses_a_bad_name():
    assert BAD_NAME in _refusal(["name=../../x"])


def test_run_and_sweep_dirs_go_through_the_name_check():
    hydra_yaml = (config_dir() / "hydra" / "default.yaml").read_text()
    cfg = OmegaConf.to_container(OmegaConf.create(hydra_yaml), resolve=False)
    assert cfg["run"]["dir"].startswith("runs/${nb_run_name:${name}}/")
    assert cfg["sweep"]["dir"] == "runs/${nb_run_name:${name}}"
    register_resolvers()
    ok = OmegaConf.create({"name": "study", "dir": "runs/${nb_run_name:${name}}"})
    assert ok.dir == "runs/study"
    bad = OmegaConf.create({"name": "../../x", "dir": "runs/${nb_run_name:${name}}"})
    with pytest.raises(Exception, match="must be a plain directory name"):
        _ = bad.dir


# --- through the CLI ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("seed=-1", f"{SEED_RANGE}, got -1."),
        ("seed=abc", f"{SEED_RANGE}, got 'abc'."),
        ("norm.eps=-1", "norm.eps must be > 0, got -1.0."),
        (
            "norm.momentum=2",
            "norm.momentum must be in [0, 1], or null for the cumulative average, got 2.0.",
        ),
        ("+norm.groups=7", "did you mean norm.num_groups?"),
        ("+trainer.stepz=5", "did you mean trainer.steps?"),
    ],
)
def test_cli_answers_a_bad_value_with_one_line_and_exit_2(run_cli, override, message):
    norm = ["norm=group"] if "groups" in override else []
    code, out, err = run_cli("train", *FAST, *norm, override)
    text = out + err
    assert code == 2, text
    assert "Traceback" not in text
    (line,) = [line for line in text.splitlines() if line.strip()]
    assert message in line


@pytest.mark.parametrize("multirun", [False, True])
def test_cli_never_creates_a_directory_outside_runs(
    run_cli, tmp_path, monkeypatch, capsys, multirun
):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)  # runs/../../x would be tmp_path/x
    argv = ["train", *(["-m"] if multirun else []), "name=../../x", *FAST]
    try:
        code, out, err = run_cli(*argv)
    except Exception as exc:  # Hydra re-raises the resolver's error: Python would exit 1
        captured = capsys.readouterr()
        code, out, err = 1, captured.out, f"{captured.err}\n{exc}"
    assert code != 0
    assert "choose e.g. name=my_study" in out + err
    outside = [p for p in tmp_path.rglob("*") if p != work and not p.is_relative_to(work / "runs")]
    assert outside == []
    assert not (tmp_path / "x").exists() and not (tmp_path.parent / "x").exists()
    assert not list(tmp_path.rglob(".hydra"))  # Hydra never got as far as the run directory
