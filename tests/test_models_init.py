"""The CNNs' shared initialization (``normbench.models.layers.init_weights``) against its formulas.

The random state at the moment a model calls ``init_weights`` is recorded; from it the test
draws, layer by layer in module order, N(0, 2 / fan_out) for every plain convolution (fan_out =
out_channels · k_h · k_w) and N(0, 0.01²) for every plain linear layer, and the model's weights
must be exactly those draws.
"""

from __future__ import annotations

import math

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn
from torch.nn.utils import parametrize

from normbench.models import build_model, layers, resnet, vgg
from normbench.norms import build_norm_spec

pytestmark = pytest.mark.usefixtures("one_thread")


def build_recording_rng(
    monkeypatch: pytest.MonkeyPatch, model: str, norm: dict, **options: object
) -> tuple[nn.Module, torch.Tensor]:
    """Build ``model`` (width 1/16, CIFAR stem); also return the RNG state ``init_weights`` saw."""
    states: list[torch.Tensor] = []

    def recording(module: nn.Module) -> None:
        states.append(torch.get_rng_state())
        layers.init_weights(module)

    monkeypatch.setattr({"resnet50": resnet, "vgg16": vgg}[model], "init_weights", recording)
    torch.manual_seed(0)
    cfg = OmegaConf.create({"name": model, "width": 1 / 16, "stem": "cifar", **options})
    built = build_model(cfg, build_norm_spec(norm), 10, (3, 32, 32))
    assert len(states) == 1
    return built, states[0]


def expected_weights(model: nn.Module, state: torch.Tensor) -> dict[str, torch.Tensor]:
    """The weights of the plain conv and linear layers drawn from ``state`` by the formulas."""
    torch.set_rng_state(state)
    expected = {}
    for name, module in model.named_modules():
        if parametrize.is_parametrized(module):
            continue
        if isinstance(module, nn.Conv2d):
            out_channels, _, kh, kw = module.weight.shape
            std = math.sqrt(2.0 / (out_channels * kh * kw))
            expected[name] = torch.empty(module.weight.shape).normal_(0.0, std)
        elif isinstance(module, nn.Linear):
            expected[name] = torch.empty(module.weight.shape).normal_(0.0, 0.01)
    return expected


@pytest.mark.parametrize(
    ("model", "norm"),
    [
        ("resnet50", {"name": "batch"}),
        ("resnet50", {"name": "none"}),
        ("resnet50", {"name": "ws_group", "num_groups": 4}),
        ("vgg16", {"name": "batch"}),
        ("vgg16", {"name": "none"}),
        ("vgg16", {"name": "weight"}),
    ],
)
def test_plain_weight_layers_follow_the_init_formulas(monkeypatch, model, norm):
    built, state = build_recording_rng(monkeypatch, model, norm)
    expected = expected_weights(built, state)
    modules = dict(built.named_modules())
    if norm["name"] in ("batch", "none"):  # every weight layer is plain
        plain = [n for n, m in modules.items() if isinstance(m, nn.Conv2d | nn.Linear)]
        assert sorted(expected) == sorted(plain)
    else:
        assert len(expected) < sum(isinstance(m, nn.Conv2d | nn.Linear) for m in modules.values())
    for name, weight in expected.items():
        torch.testing.assert_close(modules[name].weight.detach(), weight, rtol=1e-6, atol=0)
        bias = modules[name].bias
        assert bias is None or not bias.detach().any(), name


def test_kaiming_fan_out_std_on_a_large_conv():
    torch.manual_seed(1)
    conv = nn.Conv2d(64, 128, 3)
    layers.init_weights(conv)
    std = math.sqrt(2.0 / (128 * 3 * 3))
    assert conv.weight.std().item() == pytest.approx(std, rel=0.02)  # 73 728 draws
    assert conv.weight.mean().abs().item() < 3 * std / math.sqrt(conv.weight.numel())
    assert not conv.bias.any()


@pytest.mark.parametrize("zero", [True, False])
def test_zero_init_sets_only_each_blocks_last_gamma(monkeypatch, zero):
    built, _ = build_recording_rng(
        monkeypatch, "resnet50", {"name": "batch"}, zero_init_last_norm=zero
    )
    last = {id(block.bn3) for block in built.blocks()}
    assert len(last) == 16
    for module in built.modules():
        if isinstance(module, nn.BatchNorm2d):
            gamma = 0.0 if zero and id(module) in last else 1.0
            assert torch.equal(module.weight.detach(), torch.full_like(module.weight, gamma))
            assert not module.bias.detach().any()


def test_init_weights_leaves_a_parametrized_layer_alone():
    torch.manual_seed(2)
    conv = nn.utils.parametrizations.weight_norm(nn.Conv2d(4, 8, 3))
    linear = nn.Linear(8, 3, bias=False)
    before = [p.detach().clone() for p in conv.parameters()]
    layers.init_weights(nn.Sequential(conv, linear))
    assert all(torch.equal(a, b) for a, b in zip(before, conv.parameters(), strict=True))
    assert linear.weight.std().item() == pytest.approx(0.01, rel=0.5)  # a bias-free linear is fine
