"""Statistics procedures: Precise BN (population), EMA, AdaBN and prediction-time BN."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from normbench.errors import ConfigError
from normbench.norms import build_norm_spec
from normbench.norms.stats import (
    UndefinedStatisticsError,
    batch_stats_problem,
    bn_layers,
    recompute_bn_stats,
    use_batch_stats_at_eval,
    use_prior_weighted_stats,
)

pytestmark = pytest.mark.usefixtures("one_thread")


D = torch.float64
BN_VARIANTS = [
    {"name": "batch"},
    {"name": "batch", "impl": "closed_form"},
    {"name": "batch_detached"},
    {"name": "batch_renorm", "warmup_steps": 0, "r_max_steps": 2, "d_max_steps": 2},
    {"name": "ghost_batch", "group_size": 5},
    {"name": "sync_batch"},
    {"name": "evonorm", "version": "B0"},
]
IDS = ["-".join(map(str, cfg.values())) for cfg in BN_VARIANTS]


def assert_rel(actual: torch.Tensor, expected: torch.Tensor, tol: float = 1e-6) -> None:
    err = ((actual - expected).norm() / expected.norm()).item()
    assert err < tol, f"relative error {err:.3g}"


def model_for(cfg: dict) -> nn.Sequential:
    """conv → norm → ReLU → dropout → conv → norm: the first norm's input is data-only."""
    spec = build_norm_spec(cfg)
    return nn.Sequential(
        spec.conv(3, 4, 3, padding=1),
        spec.layer(4, dims=2),
        nn.ReLU(),
        nn.Dropout(0.5),
        spec.conv(4, 4, 1),
        spec.layer(4, dims=2),
    ).double()


def splits(data: torch.Tensor, sizes: list[int]) -> list[torch.Tensor]:
    return list(torch.split(data, sizes))


def numpy_stats(features: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and unbiased variance over N, H, W, computed by numpy."""
    a = features.detach().numpy().transpose(1, 0, 2, 3).reshape(features.shape[1], -1)
    return a.mean(axis=1), a.var(axis=1, ddof=1)


@pytest.mark.parametrize("cfg", BN_VARIANTS, ids=IDS)
def test_population_estimator_matches_numpy_and_ignores_the_split(cfg):
    model = model_for(cfg)
    data = torch.randn(60, 3, 5, 5, dtype=D) * 2 + 0.5
    with torch.no_grad():
        mean_np, var_np = numpy_stats(model[0](data))
    results = []
    for sizes in ([60], [7, 13, 40], [10] * 6, [25, 35]):
        used = recompute_bn_stats(model, splits(data, sizes), estimator="population")
        assert used == len(sizes)
        first = model[1]
        assert np.allclose(first.running_mean.numpy(), mean_np, rtol=1e-9, atol=1e-12)
        assert np.allclose(first.running_var.numpy(), var_np, rtol=1e-9, atol=0)
        results.append((first.running_mean.clone(), first.running_var.clone()))
    for mean, var in results[1:]:
        assert_rel(mean, results[0][0], tol=1e-12)
        assert_rel(var, results[0][1], tol=1e-12)


def test_population_estimator_of_a_deeper_layer_is_its_input_statistics():
    model = model_for({"name": "batch"})
    data = torch.randn(40, 3, 4, 4, dtype=D)
    recompute_bn_stats(model, [data], estimator="population")  # one batch: deterministic input
    with torch.no_grad():
        first = model[0](data)
        dims = (0, 2, 3)
        normed = (first - first.mean(dims, keepdim=True)) / torch.sqrt(
            first.var(dims, correction=0, keepdim=True) + 1e-5
        )
        normed = normed * model[1].weight.view(1, -1, 1, 1) + model[1].bias.view(1, -1, 1, 1)
        second_in = model[4](torch.relu(normed))  # dropout is off during the recompute
    mean_np, var_np = numpy_stats(second_in)
    assert np.allclose(model[5].running_mean.numpy(), mean_np, rtol=1e-9, atol=1e-12)
    assert np.allclose(model[5].running_var.numpy(), var_np, rtol=1e-9)


def test_adabn_leaves_exactly_the_target_population_statistics():
    model = model_for({"name": "batch"})
    source = torch.randn(64, 3, 5, 5, dtype=D)
    target = torch.randn(64, 3, 5, 5, dtype=D) * 3 - 2  # shifted and scaled domain
    model.train()
    with torch.no_grad():
        for xs in torch.split(source, 16):
            model(xs)  # source-domain running statistics
    model.eval()
    recompute_bn_stats(model, [(xs, None) for xs in torch.split(target, 8)])  # AdaBN
    with torch.no_grad():
        mean_np, var_np = numpy_stats(model[0](target))
    assert np.allclose(model[1].running_mean.numpy(), mean_np, rtol=1e-9, atol=1e-12)
    assert np.allclose(model[1].running_var.numpy(), var_np, rtol=1e-9)
    assert not model.training and not any(m.training for m in model.modules())


def test_ema_estimator_follows_the_bn_update_rule():
    model = model_for({"name": "batch", "momentum": 0.2})
    layer = model[1]
    with torch.no_grad():
        layer.running_mean.copy_(torch.randn(4, dtype=D))
        layer.running_var.copy_(torch.rand(4, dtype=D) + 0.5)
    mean, var = layer.running_mean.clone(), layer.running_var.clone()
    batches = [torch.randn(6, 3, 4, 4, dtype=D) * (i + 1) for i in range(3)]
    recompute_bn_stats(model, batches, estimator="ema", num_batches=2)
    with torch.no_grad():
        for x in batches[:2]:
            feats = model[0](x)
            mean = 0.8 * mean + 0.2 * feats.mean((0, 2, 3))
            var = 0.8 * var + 0.2 * feats.var((0, 2, 3), correction=1)
    assert_rel(layer.running_mean, mean)
    assert_rel(layer.running_var, var)
    recompute_bn_stats(model, batches[:1], estimator="ema", momentum=1.0)
    with torch.no_grad():
        assert_rel(layer.running_mean, model[0](batches[0]).mean((0, 2, 3)))


def test_recompute_restores_modes_and_touches_only_running_statistics():
    model = model_for(BN_VARIANTS[3])  # batch_renorm: its step counter must not move
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(8, 3, 4, 4, dtype=D))
    model[5].eval()  # mixed modes are restored as they were
    modes = [m.training for m in model.modules()]
    params = {n: p.detach().clone() for n, p in model.named_parameters()}
    steps = [layer.step.clone() for layer in bn_layers(model)]
    tracked = [layer.num_batches_tracked.clone() for layer in bn_layers(model)]
    recompute_bn_stats(model, [torch.randn(8, 3, 4, 4, dtype=D)])
    assert [m.training for m in model.modules()] == modes
    assert all(layer.track_running_stats for layer in bn_layers(model))
    for n, p in model.named_parameters():
        torch.testing.assert_close(p, params[n], rtol=0, atol=0)
    for layer, step, count in zip(bn_layers(model), steps, tracked, strict=True):
        assert layer.step.item() == step.item() and layer.num_batches_tracked.item() == count.item()


def test_unknown_estimator_is_a_clear_error():
    with pytest.raises(ConfigError, match="population"):
        recompute_bn_stats(model_for({"name": "batch"}), [], estimator="median")


@pytest.mark.parametrize(
    "cfg",
    BN_VARIANTS[:2] + [{"name": "weight", "mean_only_bn": True}],
    ids=["native", "closed_form", "mean_only"],
)
def test_prediction_time_bn_uses_batch_statistics_and_restores_everything(cfg):
    model = model_for(cfg).train()
    with torch.no_grad():
        model(torch.randn(16, 3, 4, 4, dtype=D) + 1)
    model.eval()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(10, 3, 4, 4, dtype=D) * 2 - 1
    with torch.no_grad():
        eval_out = model(x)
        with use_batch_stats_at_eval(model) as same:
            assert same is model
            batch_out = model(x)
            first = model[1](model[0](x))
        feats = model[0](x)
        dims = (0, 2, 3)
        centred = feats - feats.mean(dims, keepdim=True)
        if cfg["name"] == "batch":
            expected = centred / torch.sqrt(feats.var(dims, correction=0, keepdim=True) + 1e-5)
            expected = expected * model[1].weight.view(1, -1, 1, 1) + model[1].bias.view(
                1, -1, 1, 1
            )
        else:
            expected = centred + model[1].bias.view(1, -1, 1, 1)
        assert_rel(first, expected)
        assert not torch.allclose(batch_out, eval_out)
        torch.testing.assert_close(model(x), eval_out, rtol=0, atol=0)
    assert not any(m.training for m in model.modules())
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, state[k], rtol=0, atol=0)


def test_prediction_time_bn_restores_even_after_an_error():
    model = model_for({"name": "batch"}).eval()
    with pytest.raises(RuntimeError), use_batch_stats_at_eval(model):
        raise RuntimeError("boom")
    assert not model[1].training and model[1].track_running_stats


def mlp_or_conv(dims: int) -> nn.Sequential:
    """weight → BN → sigmoid → weight → BN in float64, with non-trivial running statistics."""
    spec = build_norm_spec({"name": "batch"})
    if dims == 1:
        layers = [spec.linear(6, 5), spec.layer(5, 1), nn.Sigmoid(), spec.linear(5, 4)]
        layers.append(spec.layer(4, 1))
        shape = (6,)
    else:
        layers = [spec.conv(3, 5, 3, padding=1), spec.layer(5, 2), nn.Sigmoid()]
        layers += [spec.conv(5, 4, 1), spec.layer(4, 2)]
        shape = (3, 4, 4)
    model = nn.Sequential(*layers).double().train()
    with torch.no_grad():
        for _ in range(5):
            model(torch.randn(16, *shape, dtype=D) * 2 + 1)
    for layer in bn_layers(model):
        nn.init.uniform_(layer.weight, 0.5, 1.5)
        nn.init.uniform_(layer.bias, -0.5, 0.5)
    return model.eval()


@pytest.mark.parametrize("dims", [1, 2])
def test_partial_adaptation_is_the_prior_weighted_formula(dims):
    model = mlp_or_conv(dims)
    shape = (6,) if dims == 1 else (3, 4, 4)
    x = torch.randn(8, *shape, dtype=D) * 3 - 2  # a shifted target batch, n = 8
    state = {k: v.clone() for k, v in model.state_dict().items()}
    first = model[1]
    with torch.no_grad():
        running = model(x)
        with use_batch_stats_at_eval(model):
            batch = model(x)
        with use_prior_weighted_stats(model, 0.0):
            prior_zero = model(x)
        with use_prior_weighted_stats(model, 1e12):
            prior_large = model(x)
        with use_prior_weighted_stats(model, 5.0):
            mixed = first(model[0](x))
        feats = model[0](x)
    torch.testing.assert_close(prior_zero, batch, rtol=1e-10, atol=1e-12)  # N = 0: batch mode
    torch.testing.assert_close(prior_large, running, rtol=1e-9, atol=1e-10)  # N → ∞: running
    dims_ = (0,) if dims == 1 else (0, 2, 3)
    mu_t, var_t = feats.mean(dims_), feats.var(dims_, correction=0)
    w_s, w_t = 5 / (5 + 8), 8 / (5 + 8)
    mu = w_s * state["1.running_mean"] + w_t * mu_t
    var = w_s * state["1.running_var"] + w_t * var_t
    view = (1, -1) if dims == 1 else (1, -1, 1, 1)
    expected = (feats - mu.view(view)) / torch.sqrt(var.view(view) + first.eps)
    expected = expected * first.weight.view(view) + first.bias.view(view)
    torch.testing.assert_close(mixed, expected, rtol=1e-10, atol=1e-12)
    for k, v in model.state_dict().items():  # buffers and modes restored
        assert torch.equal(v, state[k]), k
    assert not any(m.training for m in model.modules())


def test_partial_rejects_a_bad_prior_and_undefined_batches():
    model = mlp_or_conv(1)
    with pytest.raises(ConfigError, match=">= 0"), use_prior_weighted_stats(model, -1.0):
        pass
    one = torch.randn(1, 6, dtype=D)
    with pytest.raises(UndefinedStatisticsError, match="1 value per channel"):
        with use_prior_weighted_stats(model, 0.0), torch.no_grad():
            model(one)
    with use_prior_weighted_stats(model, 4.0), torch.no_grad():
        assert torch.isfinite(model(one)).all()  # the prior defines the statistics of one sample


def test_undefined_statistics_follow_the_layer_grouping():
    ghost = build_norm_spec({"name": "ghost_batch", "group_size": 4}).layer(3, 1)
    assert batch_stats_problem(ghost, torch.zeros(8, 3)) is None
    assert "a group of 1 sample" in batch_stats_problem(ghost, torch.zeros(9, 3))  # 4 + 4 + 1
    plain = build_norm_spec({"name": "batch"}).layer(3, 2)
    assert batch_stats_problem(plain, torch.zeros(1, 3, 2, 2)) is None  # 4 values per channel
    assert "batch of 1 sample" in batch_stats_problem(plain, torch.zeros(1, 3, 1, 1))
