"""Every config file composes; bad values fail with one clear message."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from normbench.config import config_dir, register_resolvers, run_id, validate
from normbench.errors import ConfigError
from normbench.norms import build_norm_spec

GROUPS = ("dataset", "model", "norm", "optim", "experiment", "sweep")


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (config_dir() / group).glob("*.yaml"))


def _compose(overrides: list[str]):
    register_resolvers()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return compose("train", overrides=overrides)


@pytest.mark.parametrize(("group", "option"), [(g, o) for g in GROUPS for o in _options(g)])
def test_every_config_file_composes(group, option):
    prefix = "+" if group == "sweep" else ""
    cfg = _compose([f"{prefix}{group}={option}"])
    OmegaConf.to_container(cfg, resolve=True)  # every interpolation resolves
    validate(cfg)
    build_norm_spec(cfg.norm)


def test_config_dir_is_the_checkout_tree():
    assert (config_dir() / "train.yaml").is_file()
    assert config_dir().resolve() == (Path(__file__).parents[1] / "configs").resolve()


def test_common_knobs_exist():
    cfg = _compose([])
    for key in ("trainer.steps", "trainer.eval_every", "trainer.device", "dataset.root", "dataset.batch_size", "seed"):
        assert OmegaConf.select(cfg, key, default="MISSING") != "MISSING", key


def test_bn_fig1_is_the_paper_setup():
    cfg = _compose(["experiment=bn_fig1"])
    assert (cfg.trainer.steps, cfg.dataset.batch_size, list(cfg.model.hidden)) == (50000, 60, [100, 100, 100])
    assert cfg.model.activation == "sigmoid"


@pytest.mark.parametrize(("override", "message"), [
    ("trainer.steps=-3", "trainer.steps must be > 0"),
    ("trainer.steps=abc", "bad value for trainer.steps"),
    ("trainer.device=tpu", "trainer.device='tpu' is not one of auto, cpu, cuda"),
    ("optim.lr=0", "optim.lr must be > 0"),
    ("probes.every=-1", "probes.every must be >= 0"),
    ("dataset.batch_size=0", "dataset.batch_size must be > 0"),
])
def test_bad_values_are_clear_errors(override, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        validate(_compose([override]))


def test_run_id():
    assert run_id("") == "default"
    assert run_id("norm=batch,seed=1") == "norm=batch,seed=1"
    assert "/" not in run_id("dataset.root=/a/b")
    long_a, long_b = "x=1," + "a" * 300, "x=2," + "a" * 300
    assert len(run_id(long_a)) <= 200 and run_id(long_a) != run_id(long_b)
    assert run_id(long_a) == run_id(long_a)
