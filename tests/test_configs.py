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


def _compose(overrides: list[str], hydra: bool = False):
    register_resolvers()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return compose("train", overrides=overrides, return_hydra_config=hydra)


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
    for key in (
        "trainer.steps",
        "trainer.eval_every",
        "trainer.device",
        "dataset.root",
        "dataset.batch_size",
        "seed",
    ):
        assert OmegaConf.select(cfg, key, default="MISSING") != "MISSING", key


def test_bn_fig1_is_the_paper_setup():
    cfg = _compose(["experiment=bn_fig1"])
    assert (cfg.trainer.steps, cfg.dataset.batch_size, list(cfg.model.hidden)) == (
        50000,
        60,
        [100, 100, 100],
    )
    assert cfg.model.activation == "sigmoid"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("trainer.steps=-3", "trainer.steps must be > 0"),
        ("trainer.steps=abc", "bad value for trainer.steps"),
        ("trainer.device=tpu", "trainer.device='tpu' is not one of auto, cpu, cuda"),
        ("optim.lr=0", "optim.lr must be > 0"),
        ("probes.every=-1", "probes.every must be >= 0"),
        ("dataset.batch_size=0", "dataset.batch_size must be > 0"),
    ],
)
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


@pytest.mark.parametrize(
    ("steps", "fraction", "expected"),
    [
        (250, 0.5, 125),
        (250, 0.75, 188),
        (250, 0.25, 63),
        (2000, 0.16, 320),
        (10, 0.3, 3),
        (7, 0, 0),
    ],
)
def test_step_at_rounds_a_fraction_of_training_up(steps, fraction, expected):
    cfg = OmegaConf.create({"steps": steps, "at": f"${{nb_step_at:${{steps}},{fraction}}}"})
    register_resolvers()
    assert cfg.at == expected


@pytest.mark.parametrize(
    "bad", ["${nb_step_at:100,1.5}", "${nb_step_at:100,x}", "${nb_step_at:-1,0.5}"]
)
def test_step_at_rejects_bad_arguments(bad):
    register_resolvers()
    with pytest.raises(Exception, match="nb_step_at"):
        OmegaConf.to_container(OmegaConf.create({"at": bad}), resolve=True)


def test_small_batch_schedule_follows_the_run_length():
    short = _compose(["experiment=small_batch", "sweep/small_batch_norm=batch_renorm"])
    long = _compose(
        ["experiment=small_batch", "sweep/small_batch_norm=batch_renorm", "trainer.steps=2000"]
    )
    assert list(short.optim.milestones) == [125, 188, 225]
    assert (short.norm.warmup_steps, short.norm.d_max_steps, short.norm.r_max_steps) == (25, 40, 63)
    assert list(long.optim.milestones) == [1000, 1500, 1800]
    assert (long.norm.warmup_steps, long.norm.d_max_steps, long.norm.r_max_steps) == (200, 320, 500)


SB_NORMS = ("batch", "group", "layer", "instance", "batch_renorm")


@pytest.mark.parametrize("norm", SB_NORMS)
def test_small_batch_experiment_is_the_gn_setup_at_cpu_scale(norm):
    from normbench.models.resnet import resnet50_channels

    cfg = _compose(["experiment=small_batch", f"sweep/small_batch_norm={norm}"], hydra=True)
    validate(cfg)
    assert cfg.norm.name == norm and cfg.per_device.mode == "ghost"
    params = cfg.hydra.sweeper.params
    assert params["sweep/small_batch_norm"].split(",") == list(SB_NORMS)
    images = [int(n) for n in params["per_device.images"].split(",")]
    assert images == [32, 16, 8, 4, 2] and len(params["seed"].split(",")) >= 2
    assert all(cfg.dataset.batch_size % n == 0 for n in images)
    assert (cfg.model.name, cfg.model.stem, cfg.model.zero_init_last_norm) == (
        "resnet50",
        "cifar",
        True,
    )
    assert (cfg.optim.momentum, cfg.optim.weight_decay, cfg.optim.schedule) == (0.9, 1e-4, "step")
    assert cfg.optim.lr == pytest.approx(
        0.1 * cfg.dataset.batch_size / 256
    )  # the paper's linear rule
    assert all(0 < m < cfg.trainer.steps for m in cfg.optim.milestones)
    assert cfg.trainer.steps // cfg.trainer.eval_every >= 5  # median of the last 5 evaluations
    if (
        norm == "group"
    ):  # every channel count splits into G groups, with the paper's channels per group
        channels = resnet50_channels(cfg.model.width)
        assert all(c % cfg.norm.num_groups == 0 for c in channels)
        assert cfg.norm.num_groups == 32 * cfg.model.width
    if norm == "batch_renorm":  # GN paper's tuning; BRN's schedule shrunk to this run length
        n = cfg.norm
        assert (n.r_max, n.d_max) == (1.5, 0.5)
        assert 0 < n.warmup_steps < n.d_max_steps < n.r_max_steps < cfg.trainer.steps
    for n in images:  # builds with its statistics over groups of N
        build_norm_spec(cfg.norm, images_per_device=n)


@pytest.mark.parametrize("norm", SB_NORMS)
def test_gn_paper_imagenet_experiment_is_the_paper_setup(norm):
    cfg = _compose(["experiment=gn_paper_resnet50_imagenet", f"sweep/gn_paper_norm={norm}"])
    validate(cfg)
    assert cfg.norm.name == norm
    assert (cfg.dataset.name, cfg.dataset.size, cfg.dataset.batch_size) == ("imagefolder", 224, 256)
    assert (cfg.model.width, cfg.model.stem, cfg.model.zero_init_last_norm) == (
        1.0,
        "imagenet",
        True,
    )
    assert (cfg.optim.lr, cfg.optim.momentum, cfg.optim.weight_decay) == (0.1, 0.9, 1e-4)
    per_epoch = 1_281_167 // 256
    assert cfg.trainer.steps == 100 * per_epoch and cfg.trainer.eval_every == per_epoch
    assert list(cfg.optim.milestones) == [30 * per_epoch, 60 * per_epoch, 90 * per_epoch]
    assert cfg.per_device.images == 32 and cfg.per_device.mode == "ghost"
    if norm == "group":
        assert cfg.norm.num_groups == 32
    if norm == "batch_renorm":
        assert (cfg.norm.r_max, cfg.norm.d_max) == (1.5, 0.5)
        assert (
            0
            < cfg.norm.warmup_steps
            < cfg.norm.d_max_steps
            < cfg.norm.r_max_steps
            < cfg.trainer.steps
        )
