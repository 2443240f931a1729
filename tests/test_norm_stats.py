"""Statistics procedures: Precise BN (population), EMA, AdaBN and prediction-time BN."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from normbench.errors import ConfigError
from normbench.norms import build_norm_spec
from normbench.norms.stats import bn_layers, recompute_bn_stats, use_batch_stats_at_eval

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
