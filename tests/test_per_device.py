"""Images per device (GN paper): ghost groups for batch statistics, or true small batches."""

from __future__ import annotations

import json

import pytest
from omegaconf import OmegaConf

from normbench.engine.per_device import apply_per_device, resolve_per_device
from normbench.errors import ConfigError
from normbench.norms import build_norm_spec
from normbench.norms.ghost_batch import GhostBatchNorm

from .test_train_cli import FAST


def _cfg(images, mode="ghost", batch=32, lr=0.1, steps=100, devices=1):
    return OmegaConf.create(
        {
            "per_device": {"images": images, "mode": mode, "devices": devices},
            "dataset": {"batch_size": batch},
            "optim": {"lr": lr, "milestones": [30, 60]},
            "norm": {"name": "batch_renorm", "warmup_steps": 5, "r_max": 3.0},
            "trainer": {"steps": steps, "eval_every": 10},
        }
    )


def test_ghost_mode_keeps_batch_lr_and_steps():
    r = resolve_per_device(_cfg(4))
    assert (r.images, r.batch_size, r.lr, r.steps) == (4, 32, 0.1, 100)


def test_true_mode_scales_lr_linearly_and_keeps_epochs():
    cfg = _cfg(4, "real", batch=32, lr=0.1, steps=100)
    r = apply_per_device(cfg)
    assert (r.batch_size, r.steps) == (4, 800)
    assert r.lr == pytest.approx(0.1 * 4 / 32)
    assert (cfg.dataset.batch_size, cfg.trainer.steps) == (4, 800)
    assert cfg.optim.lr == pytest.approx(0.0125)
    assert list(cfg.optim.milestones) == [240, 480]  # step counts scale with the steps
    assert cfg.trainer.eval_every == 80  # same number of evaluations
    assert (cfg.norm.warmup_steps, cfg.norm.r_max) == (40, 3.0)


def test_real_mode_scales_step_counts_given_relative_to_the_run_length_once():
    from normbench.config import register_resolvers

    register_resolvers()
    cfg = _cfg(4, "real", batch=32, steps=100)
    cfg.optim.milestones = ["${nb_step_at:${trainer.steps},0.5}"]
    cfg.norm.warmup_steps = "${nb_step_at:${trainer.steps},0.1}"
    apply_per_device(cfg)
    assert cfg.trainer.steps == 800
    assert list(cfg.optim.milestones) == [400] and cfg.norm.warmup_steps == 80  # not 3200 / 640


def test_ghost_mode_leaves_step_counts_alone():
    cfg = _cfg(4)
    apply_per_device(cfg)
    assert list(cfg.optim.milestones) == [30, 60] and cfg.norm.warmup_steps == 5


def test_null_images_changes_nothing():
    r = resolve_per_device(_cfg(None, "real"))
    assert (r.images, r.batch_size, r.lr, r.steps) == (None, 32, 0.1, 100)


@pytest.mark.parametrize(
    "images,mode,devices,message",
    [
        (5, "ghost", 1, "does not divide dataset.batch_size=32"),
        (0, "ghost", 1, "positive integer"),
        (4, "fake", 1, "per_device.mode='fake'"),
        (4, "real", 0, "per_device.devices must be a positive integer"),
        (4, "real", 3, "= 12 does not divide dataset.batch_size=32"),
        (4, "ghost", 3, "applies to per_device.mode=real"),
    ],
)
def test_bad_per_device_is_a_clear_error(images, mode, devices, message):
    with pytest.raises(ConfigError, match=message):
        resolve_per_device(_cfg(images, mode, devices=devices))


def test_real_mode_with_devices_is_the_gn_papers_setting():
    """8 GPUs x N images, lr 0.1 * N / 32, same epochs: from batch 256 at lr 0.1."""
    cfg = _cfg(2, "real", batch=256, lr=0.1, steps=1000, devices=8)
    r = apply_per_device(cfg)
    assert (r.images, r.devices, r.batch_size, r.steps) == (2, 8, 16, 16000)
    assert r.lr == pytest.approx(0.1 * 2 / 32)
    assert list(cfg.optim.milestones) == [480, 960]
    layer = build_norm_spec({"name": "batch"}, images_per_device=r.images).layer(8, 2)
    assert isinstance(layer, GhostBatchNorm) and layer.group_size == 2


def test_batch_norm_per_device_is_ghost_batch_and_group_norm_is_unchanged():
    layer = build_norm_spec({"name": "batch"}, images_per_device=4).layer(8, 2)
    assert isinstance(layer, GhostBatchNorm) and layer.group_size == 4
    spec = build_norm_spec({"name": "group", "num_groups": 2}, images_per_device=4)
    assert spec == spec.per_device(4)


def test_train_with_images_per_device_records_it(run_cli, tmp_path):
    code, out, err = run_cli(
        "train",
        "experiment=bn_fig1",
        "norm=batch",
        *FAST,
        "per_device.images=4",
        "per_device.mode=real",
    )
    assert code == 0, out + err
    (run,) = (tmp_path / "runs" / "bn_fig1").iterdir()
    summary = json.loads((run / "summary.json").read_text())
    assert summary["per_device"] == {
        "images": 4,
        "mode": "real",
        "batch_size": 4,
        "devices": 1,
        "lr": pytest.approx(0.5 * 4 / 16),
        "steps": 160,
    }
    assert summary["step"] == 160
