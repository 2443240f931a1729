"""The optim group: SGD and Adam built from their configs, checked against their update formulas."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from normbench.config import config_dir
from normbench.engine.optim import build_optimizer
from normbench.errors import ConfigError


def _optim(name: str, **changes):
    cfg = OmegaConf.load(config_dir() / "optim" / f"{name}.yaml")
    return OmegaConf.merge(cfg, changes)


def _one_step(cfg, w0: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    model = nn.Linear(w0.shape[1], w0.shape[0], bias=False).double()
    with torch.no_grad():
        model.weight.copy_(w0)
    opt = build_optimizer(cfg, model)
    model.weight.grad = grad.clone()
    opt.step()
    return model.weight.detach()


def test_adam_first_step_is_lr_times_the_gradient_sign():
    # Adam's first step, bias-corrected: m = g, v = g^2, so w -= lr * (g + wd*w) / (|g + wd*w| + eps)
    torch.manual_seed(0)
    w0, grad = torch.randn(3, 4, dtype=torch.float64), torch.randn(3, 4, dtype=torch.float64)
    cfg = _optim("adam", lr=0.01, weight_decay=0.1, eps=1e-8)
    g = grad + 0.1 * w0
    torch.testing.assert_close(_one_step(cfg, w0, grad), w0 - 0.01 * g / (g.abs() + 1e-8))


def test_sgd_momentum_step_matches_the_formula():
    torch.manual_seed(1)
    w0, grad = torch.randn(2, 5, dtype=torch.float64), torch.randn(2, 5, dtype=torch.float64)
    cfg = _optim("sgd", lr=0.1, momentum=0.9, weight_decay=0.01)
    torch.testing.assert_close(_one_step(cfg, w0, grad), w0 - 0.1 * (grad + 0.01 * w0))


@pytest.mark.parametrize("betas", [[0.9], [0.9, 1.0], [-0.1, 0.999]])
def test_bad_adam_betas_name_the_key(betas):
    with pytest.raises(ConfigError, match="optim.betas"):
        build_optimizer(_optim("adam", betas=betas), nn.Linear(2, 2))


def _lrs(cfg, steps: int) -> list[float]:
    from normbench.engine.optim import build_scheduler

    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=cfg.lr)
    sched = build_scheduler(cfg, opt, steps)
    lrs = []
    for _ in range(steps):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return lrs


@pytest.mark.parametrize("milestones", [[], [6]])
def test_linear_schedule_holds_then_decays_to_zero_at_the_last_step(milestones):
    cfg = _optim("adam", lr=0.003, schedule="linear", milestones=milestones)
    start = milestones[0] if milestones else 0
    expected = [0.003 * (1.0 if t <= start else (10 - t) / (10 - start)) for t in range(10)]
    assert _lrs(cfg, 10) == pytest.approx(expected, rel=1e-12)


def test_warmup_multiplies_the_schedule_for_its_first_steps():
    cfg = _optim("sgd", lr=0.1, schedule="step", milestones=[3], gamma=0.5, warmup_steps=4)
    base = [0.1, 0.1, 0.1, 0.05, 0.05, 0.05]
    expected = [b * min(1.0, (t + 1) / 4) for t, b in enumerate(base)]
    assert _lrs(cfg, 6) == pytest.approx(expected, rel=1e-12)
    assert _lrs(_optim("sgd", lr=0.1), 3) == pytest.approx([0.1] * 3)  # warmup_steps: 0


def test_a_checkpoint_from_before_an_added_key_resumes_only_at_its_neutral_value():
    from normbench.engine.checkpoint import config_changes

    old = {"optim": {"lr": 0.1}, "norm": {"name": "weight", "data_init": True}}
    same = {"optim": {"lr": 0.1, "warmup_steps": 0}, "norm": {**old["norm"], "log_scale": None}}
    assert config_changes(old, same) == []
    other = {"optim": {"lr": 0.1, "warmup_steps": 5}, "norm": {**old["norm"], "max_v_norm": 1.0}}
    assert config_changes(old, other) == ["norm.max_v_norm", "optim.warmup_steps"]
