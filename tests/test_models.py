"""The BN paper's MLP: structure, bias rule, initialization, and every registered norm in it."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from normbench.errors import ConfigError
from normbench.models import build_model
from normbench.models.mlp import MLP
from normbench.norms import build_norm_spec, known_norms


def test_paper_mlp_shape_and_bias_rule():
    for norm, has_bias in (("none", True), ("batch", False)):
        model = MLP(build_norm_spec({"name": norm}), 784, 10, [100, 100, 100])
        linears = [layer.linear for layer in model.hidden]
        assert [(m.in_features, m.out_features) for m in linears] == [
            (784, 100),
            (100, 100),
            (100, 100),
        ]
        assert all((m.bias is not None) == has_bias for m in linears)
        assert model.head.out_features == 10 and model.head.bias is not None
        assert model(torch.rand(5, 1, 28, 28)).shape == (5, 10)


def test_small_gaussian_initialization():
    model = MLP(build_norm_spec({"name": "none"}), 784, 10, [100, 100, 100], init_std=0.1)
    w = model.hidden[0].linear.weight.detach()
    assert abs(w.mean().item()) < 0.003 and w.std().item() == pytest.approx(0.1, rel=0.03)
    assert torch.count_nonzero(model.hidden[0].linear.bias) == 0


# Instance norm needs spatial positions; on (N, C) features it refuses with a clear error.
CNN_ONLY = {"instance"}
# NormProp's input correction must be for the model's own nonlinearity (sigmoid here).
MLP_OPTIONS = {"normprop": {"activation": "sigmoid"}}


@pytest.mark.parametrize("norm", sorted(set(known_norms()) - CNN_ONLY))
def test_every_registered_norm_trains_the_mlp(norm):
    torch.manual_seed(0)
    cfg = OmegaConf.create(
        {"name": "mlp", "hidden": [32, 32], "activation": "sigmoid", "init_std": 0.1}
    )
    spec = build_norm_spec({"name": norm, **MLP_OPTIONS.get(norm, {})})
    model = build_model(cfg, spec, 3, (1, 4, 4))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(8, 1, 4, 4), torch.randint(0, 3, (8,))
    for _ in range(2):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        for name, p in model.named_parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all(), name
        opt.step()


@pytest.mark.parametrize(
    "model",
    [
        {"name": "mlp", "hidden": [4], "activation": "sigmoid"},
        {"name": "convpool", "width": 0.125},
        {"name": "vgg16", "width": 0.125, "stem": "cifar"},
    ],
)
def test_normprop_refuses_a_model_with_another_nonlinearity(model):
    """The default correction is ReLU's: the sigmoid MLP and leaky-ReLU ConvPool-CNN-C refuse it
    (naming the fix), and build with their own; VGG-16 (ReLU) refuses sigmoid's."""
    own = {"mlp": "sigmoid", "convpool": "leaky_relu", "vgg16": "relu"}[model["name"]]
    other = "sigmoid" if own == "relu" else "relu"
    cfg = OmegaConf.create(model)
    with pytest.raises(ConfigError, match=f"Set norm.activation={own}"):
        build_model(cfg, build_norm_spec({"name": "normprop", "activation": other}), 3, (1, 32, 32))
    build_model(cfg, build_norm_spec({"name": "normprop", "activation": own}), 3, (1, 32, 32))


def test_unknown_model_and_activation_are_clear_errors():
    spec = build_norm_spec({"name": "none"})
    with pytest.raises(ConfigError, match="Known models: mlp"):
        build_model(OmegaConf.create({"name": "resnet1000"}), spec, 10, (1, 28, 28))
    with pytest.raises(ConfigError, match="model.activation='swish'"):
        build_model(
            OmegaConf.create({"name": "mlp", "hidden": [4], "activation": "swish"}),
            spec,
            10,
            (1, 2, 2),
        )


def test_slot_with_its_own_nonlinearity_replaces_the_activation():
    model = MLP(build_norm_spec({"name": "frn"}), 8, 2, [16])
    assert isinstance(model.hidden[0].act, torch.nn.Identity)
    model = MLP(build_norm_spec({"name": "batch"}), 8, 2, [16])
    assert isinstance(model.hidden[0].act, torch.nn.Sigmoid)


@pytest.mark.parametrize(
    "model",
    [
        {"name": "mlp", "hidden": [6, 5], "activation": "sigmoid", "init_std": 0.1},
        {"name": "vgg16", "width": 0.0625, "stem": "cifar"},
        {"name": "resnet50", "width": 0.0625, "stem": "cifar"},
    ],
    ids=["mlp", "vgg16", "resnet50"],
)
def test_bias_before_norm_keeps_every_weight_layer_bias_in_front_of_a_shifting_slot(model):
    """model.bias_before_norm: the weight layers feeding a norm slot keep their bias b even when
    the slot has its own shift β (the BN paper's §2 setting); by default BN's β replaces b."""
    spec = build_norm_spec(OmegaConf.create({"name": "batch"}))
    in_shape = (8,) if model["name"] == "mlp" else (3, 32, 32)

    def feeding_norm(net: torch.nn.Module) -> list[torch.nn.Module]:
        layers = [m for m in net.modules() if isinstance(m, torch.nn.Linear | torch.nn.Conv2d)]
        return (
            [m for m in layers if m.out_features != 10]
            if model["name"] == "mlp"
            else [m for m in layers if isinstance(m, torch.nn.Conv2d)]
        )

    plain = build_model(OmegaConf.create(model), spec, 10, in_shape)
    kept = build_model(OmegaConf.create({**model, "bias_before_norm": True}), spec, 10, in_shape)
    assert all(m.bias is None for m in feeding_norm(plain))
    assert feeding_norm(kept) and all(m.bias is not None for m in feeding_norm(kept))
    extra = sum(
        m.out_features if hasattr(m, "out_features") else m.out_channels for m in feeding_norm(kept)
    )
    count = lambda net: sum(p.numel() for p in net.parameters())  # noqa: E731
    assert count(kept) - count(plain) == extra
