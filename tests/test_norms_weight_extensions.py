"""Weight Normalization's extensions (log-scale gain, bound on ‖v‖) and its data-init limits,
against float64 formulas written here."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from normbench.errors import ConfigError
from normbench.models import build_model
from normbench.norms import build_norm_spec


def _wn(kind: str, **options):
    spec = build_norm_spec({"name": "weight", **options})
    if kind == "linear":
        return spec.linear(5, 3).double()
    return spec.conv(2, 3, 3, padding=1).double()


def _formula(layer, x: torch.Tensor, gain: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """y = g · v/‖v‖ · x + b per output unit, written out."""
    rows = v.reshape(v.shape[0], -1)
    w = (gain.reshape(-1, 1) * rows / rows.norm(dim=1, keepdim=True)).reshape(v.shape)
    if x.dim() == 2:
        return x @ w.T + layer.bias
    return torch.nn.functional.conv2d(x, w, layer.bias, padding=1)


@pytest.mark.parametrize("kind", ["linear", "conv"])
def test_log_scale_gain_is_exp_of_c_times_s_in_value_and_gradient(kind):
    torch.manual_seed(0)
    layer = _wn(kind, log_scale=3.0, data_init=False)
    params = layer.parametrizations.weight
    with torch.no_grad():
        params.original0.normal_(0.0, 0.3)
    x = (
        torch.randn(4, 5, dtype=torch.float64)
        if kind == "linear"
        else torch.randn(4, 2, 5, 5, dtype=torch.float64)
    )
    s = params.original0.detach().clone().requires_grad_(True)
    v = params.original1.detach().clone().requires_grad_(True)
    expected = _formula(layer, x, torch.exp(3.0 * s), v)
    out = layer(x)
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)
    dy = torch.randn_like(out)
    (out * dy).sum().backward()
    (expected * dy).sum().backward()
    torch.testing.assert_close(params.original0.grad, s.grad, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(params.original1.grad, v.grad, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("log_scale", [None, 3.0])
def test_data_init_standardizes_the_first_batch_with_either_gain(log_scale):
    torch.manual_seed(1)
    layer = _wn("conv", log_scale=log_scale).train()
    x = torch.randn(6, 2, 5, 5, dtype=torch.float64) * 2 + 1
    with torch.no_grad():
        y = layer(x)
    mean = y.mean(dim=(0, 2, 3))
    std = y.var(dim=(0, 2, 3), correction=0).sqrt()
    torch.testing.assert_close(mean, torch.zeros(3, dtype=torch.float64), atol=1e-10, rtol=0)
    torch.testing.assert_close(std, torch.ones(3, dtype=torch.float64), atol=1e-8, rtol=0)


def test_max_v_norm_projects_long_directions_only_and_leaves_the_output_unchanged():
    torch.manual_seed(2)
    layer = _wn("linear", max_v_norm=1.0, data_init=False).train()
    v = layer.parametrizations.weight.original1
    with torch.no_grad():
        v[0].mul_(5.0 / v[0].norm())  # long: projected to 1
        v[1].mul_(0.5 / v[1].norm())  # short: untouched
    before = v.detach().clone()
    x = torch.randn(4, 5, dtype=torch.float64)
    g = layer.parametrizations.weight.original0.detach().clone()
    expected = _formula(layer, x, g, before)
    out = layer(x)
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)
    norms = v.detach().norm(dim=1)
    assert norms[0].item() == pytest.approx(1.0, rel=1e-12)
    assert norms[1].item() == pytest.approx(0.5, rel=1e-12)
    torch.testing.assert_close(v[0].detach(), before[0] / 5.0)
    # the gradient of v is that of the projected v: (g/‖v‖)(I − v̂v̂ᵀ) ∇_w L, with ‖v‖ = 1 now
    dy = torch.randn_like(out)
    (out * dy).sum().backward()
    grad_w = dy.T @ x
    vhat = v.detach()[0] / norms[0]
    expected_grad = g[0].reshape(()) / norms[0] * (grad_w[0] - vhat * (vhat @ grad_w[0]))
    torch.testing.assert_close(v.grad[0], expected_grad, rtol=1e-10, atol=1e-12)
    # evaluation never projects
    with torch.no_grad():
        v[1].mul_(4.0 / v[1].norm())
    layer.eval()(x)
    assert v.detach()[1].norm().item() == pytest.approx(4.0, rel=1e-12)


def test_data_init_refuses_one_value_per_unit_and_names_the_fix():
    layer = _wn("linear").train()
    with pytest.raises(ConfigError, match="norm.data_init=false"):
        layer(torch.randn(1, 5, dtype=torch.float64))
    conv = _wn("conv").train()
    conv(torch.randn(1, 2, 4, 4, dtype=torch.float64))  # 16 positions: defined at batch 1
    assert bool(conv.wn_initialized)


def test_log_scale_refuses_the_zero_init_of_the_last_norm():
    spec = build_norm_spec({"name": "weight", "log_scale": 3.0})
    cfg = OmegaConf.create({"name": "resnet50", "width": 1 / 16, "stem": "cifar"})
    with pytest.raises(ConfigError, match="model.zero_init_last_norm=false"):
        build_model(cfg, spec, 10, (1, 28, 28))
    build_model(OmegaConf.merge(cfg, {"zero_init_last_norm": False}), spec, 10, (1, 28, 28))


@pytest.mark.parametrize("key", ["log_scale", "max_v_norm"])
@pytest.mark.parametrize("value", [0, -1.0, "big", True])
def test_extension_options_must_be_positive_numbers(key, value):
    with pytest.raises(ConfigError, match=f"{key} must be a (positive )?number"):
        build_norm_spec({"name": "weight", key: value})
