"""FrozenBN (``trainer.freeze_norm_stats_at=S``): after S steps the BN layers' statistics stop
changing, and the training forward normalizes with them (checked against the formula in
float64), through evaluations that restore the model's train mode, and across a resume."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from normbench.engine.frozen_norms import FrozenNormStats
from normbench.errors import ConfigError

COMMON = [
    "dataset=fashion_mnist",
    "dataset.download=false",
    "dataset.batch_size=20",
    "model.hidden=[16,16]",
    "trainer.steps=8",
    "trainer.eval_every=2",
    "trainer.ckpt_every=100",
    "probes.every=2",
    "probes.batch_size=20",
    "logging.tensorboard=false",
]


def bn_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 5), nn.BatchNorm1d(5), nn.Sigmoid(), nn.Linear(5, 3))


def test_the_training_forward_uses_the_frozen_statistics_in_float64():
    model = bn_model().double()
    bn = model[1]
    bn.running_mean.copy_(torch.tensor([0.5, -1.0, 2.0, 0.0, 0.3], dtype=torch.float64))
    bn.running_var.copy_(torch.tensor([2.0, 0.5, 1.5, 3.0, 0.7], dtype=torch.float64))
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([1.5, 0.5, -1.0, 2.0, 1.0]))
        bn.bias.copy_(torch.tensor([0.1, -0.2, 0.3, 0.0, 1.0]))
    frozen = FrozenNormStats(model, at=3, steps=10)
    model.train()
    frozen.apply(2)
    assert bn.training  # before S: batch statistics
    frozen.apply(3)
    assert not bn.training and model[0].training
    x = torch.randn(7, 6, dtype=torch.float64)
    u = model[0](x)
    out = model[1](u)
    want = (u - bn.running_mean) / torch.sqrt(bn.running_var + bn.eps) * bn.weight + bn.bias
    torch.testing.assert_close(out, want, rtol=1e-12, atol=1e-12)
    before = (bn.running_mean.clone(), bn.running_var.clone())
    model(x).sum().backward()
    assert bn.weight.grad is not None and bn.weight.grad.abs().sum() > 0  # γ, β still train
    # dL/du through a frozen BN is γ / sqrt(σ² + ε), not BN's batch-statistics gradient
    u = u.detach().requires_grad_(True)
    model[1](u).sum().backward()
    torch.testing.assert_close(
        u.grad, (bn.weight / torch.sqrt(bn.running_var + bn.eps)).expand(7, 5)
    )
    assert torch.equal(before[0], bn.running_mean) and torch.equal(before[1], bn.running_var)
    model.train()  # an evaluation restores train mode; the next step freezes again
    frozen.apply(4)
    assert not bn.training


def test_bad_settings_are_one_clear_error():
    with pytest.raises(ConfigError, match="outside the run's 0..10 steps"):
        FrozenNormStats(bn_model(), at=11, steps=10)
    no_bn = nn.Sequential(nn.Linear(3, 3), nn.LayerNorm(3))
    with pytest.raises(ConfigError, match="no layer with running statistics"):
        FrozenNormStats(no_bn, at=2, steps=10)
    assert not FrozenNormStats(no_bn, at=None, steps=10).frozen(5)


def bn_buffers(run) -> dict[str, torch.Tensor]:
    state = torch.load(run / "ckpt" / "last.pt", weights_only=True)
    model = state["model"]
    return {k: v for k, v in model.items() if "running_" in k}


def test_a_run_keeps_its_statistics_after_s_through_evals_probes_and_a_resume(
    run_cli, data_root, tmp_path
):
    root = [f"dataset.root={data_root}"]
    frozen = [*COMMON, *root, "trainer.freeze_norm_stats_at=4", "hydra.run.dir=frozen"]
    code, out, err = run_cli("train", *frozen, "trainer.stop_after=5")
    assert code == 0, out + err
    at5 = bn_buffers(tmp_path / "frozen")
    code, out, err = run_cli("train", *frozen)  # resumes from step 5, freezes again
    assert code == 0, out + err
    at8 = bn_buffers(tmp_path / "frozen")
    assert at5 and all(torch.equal(at5[k], at8[k]) for k in at5)
    # the same run without FrozenBN keeps updating them: the comparison above can fail
    code, out, err = run_cli("train", *COMMON, *root, "hydra.run.dir=free")
    assert code == 0, out + err
    free = bn_buffers(tmp_path / "free")
    assert any(not torch.equal(free[k], at8[k]) for k in free)
