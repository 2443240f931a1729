"""ResNet-50 and VGG-16: torchvision as the reference at width 1, every norm trains, options, errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import torchvision
from omegaconf import OmegaConf
from torch import nn

from normbench.config import config_dir
from normbench.errors import ConfigError
from normbench.models import CNNS, MODELS, build_model
from normbench.norms import build_norm_spec, known_norms
from normbench.probes.activations import ActivationProbe

TORCHVISION_RESNET50_PARAMS = 25_557_032


pytestmark = pytest.mark.usefixtures("one_thread")


@torch.no_grad()
def randomize_norm_state(model: nn.Module) -> None:
    """Non-trivial BN γ, β and running statistics, so that a wrong mapping would show."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.weight.uniform_(0.5, 1.5)
            m.bias.normal_(0.0, 0.1)
            m.running_mean.normal_(0.0, 0.1)
            m.running_var.uniform_(0.5, 2.0)


def cnn(
    name: str, norm: dict | str, num_classes: int = 10, in_shape=(3, 32, 32), **opts
) -> nn.Module:
    """Build ``name`` through ``build_model`` (the one way in) from a norm config."""
    norm_cfg = {"name": norm} if isinstance(norm, str) else norm
    cfg = OmegaConf.create({"name": name, **opts})
    return build_model(cfg, build_norm_spec(norm_cfg), num_classes, in_shape)


# --- torchvision is the reference at width 1 --------------------------------------------------


def test_resnet50_is_torchvision_resnet50_at_width_1():
    torch.manual_seed(0)
    ours = cnn("resnet50", "batch", 1000, (3, 224, 224))  # defaults: width 1, imagenet stem
    reference = torchvision.models.resnet50(weights=None)
    count = sum(p.numel() for p in ours.parameters())
    assert count == TORCHVISION_RESNET50_PARAMS == sum(p.numel() for p in reference.parameters())
    randomize_norm_state(reference)
    ours.load_state_dict(reference.state_dict(), strict=True)  # same names, shapes and buffers
    ours.eval(), reference.eval()
    x = torch.randn(2, 3, 224, 224)
    with torch.inference_mode():
        torch.testing.assert_close(ours(x), reference(x), rtol=0, atol=1e-5)


@torch.no_grad()
def test_vgg16_without_norm_is_torchvision_vgg16():
    ours = cnn("vgg16", "none", 1000, (3, 224, 224))
    reference = torchvision.models.vgg16(weights=None)
    assert sum(p.numel() for p in ours.parameters()) == sum(
        p.numel() for p in reference.parameters()
    )
    ours.load_state_dict(reference.state_dict(), strict=True)
    ours.eval(), reference.eval()
    x = torch.randn(2, 3, 32, 32)  # the 7x7 adaptive pool makes any size ≥ 32 valid
    torch.testing.assert_close(ours(x), reference(x), rtol=0, atol=1e-5)


@torch.no_grad()
def test_vgg16_with_batch_norm_is_torchvision_vgg16_bn_without_redundant_conv_biases():
    ours = cnn("vgg16", "batch", 1000, (3, 224, 224))
    reference = torchvision.models.vgg16_bn(weights=None)
    randomize_norm_state(reference)
    state = reference.state_dict()
    conv_biases = [
        f"features.{i}.bias" for i, m in enumerate(reference.features) if isinstance(m, nn.Conv2d)
    ]
    # Our bias rule drops a conv bias when the slot has a shift (BN's β); torchvision keeps it.
    # In eval mode a conv bias b before BN is the same as running_mean − b: fold it there.
    for key in conv_biases:
        bn_index = int(key.split(".")[1]) + 1
        state[f"features.{bn_index}.running_mean"] = (
            state[f"features.{bn_index}.running_mean"] - state[key]
        )
    result = ours.load_state_dict(state, strict=False)
    assert result.missing_keys == [] and sorted(result.unexpected_keys) == sorted(conv_biases)
    count = sum(p.numel() for p in ours.parameters())
    assert count == sum(p.numel() for p in reference.parameters()) - sum(
        state[k].numel() for k in conv_biases
    )
    ours.eval(), reference.eval()
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(ours(x), reference(x), rtol=0, atol=1e-5)


# --- every model trains with every registered norm ----------------------------------------------

# Tiny size: width 1/16 gives ResNet-50 slots of 4..128 channels and VGG-16 slots of 4..32, so
# grouped variants get 4 groups instead of their default 32; ghost batches of 2 in a batch of 4.
TINY_NORM_OPTIONS = {
    "group": {"num_groups": 4},
    "ws_group": {"num_groups": 4},
    "evonorm": {"groups": 4},
    "ghost_batch": {"group_size": 2},
}
# Every registered variant applies to both CNNs (instance norm refuses only (N, C) inputs), so
# none is excluded; a few non-default forms are added.
NORM_CONFIGS = [{"name": n, **TINY_NORM_OPTIONS.get(n, {})} for n in known_norms()] + [
    {"name": "evonorm", "version": "B0"},
    {"name": "weight", "mean_only_bn": True},
    {"name": "batch", "impl": "closed_form"},
]


@pytest.mark.parametrize("model_name", ["resnet50", "vgg16"])
@pytest.mark.parametrize(
    "norm",
    NORM_CONFIGS,
    ids=lambda c: c["name"] + "".join(f"[{k}={v}]" for k, v in c.items() if k != "name"),
)
def test_every_model_trains_with_every_norm(model_name, norm):
    torch.manual_seed(0)
    model = cnn(model_name, norm, 10, (3, 32, 32), width=1 / 16, stem="cifar")
    trains_two_steps(model, (3, 32, 32))


def trains_two_steps(model: nn.Module, in_shape: tuple[int, ...]) -> None:
    """Two SGD steps on a batch of 4: a finite loss and a finite gradient for every parameter."""
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x, y = torch.randn(4, *in_shape), torch.randint(0, 10, (4,))
    for _ in range(2):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        assert torch.isfinite(loss)
        loss.backward()
        for name, p in model.named_parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all(), name
        opt.step()


def test_every_registered_norm_is_covered():
    assert {c["name"] for c in NORM_CONFIGS} == set(known_norms())
    assert set(MODELS) == {"mlp", "lstm", *CNNS}


# --- ResNet-50 structure -------------------------------------------------------------------------


@pytest.mark.parametrize("norm", ["batch", {"name": "group", "num_groups": 4}, "frn", "normprop"])
@torch.no_grad()
def test_zero_init_makes_every_block_start_as_relu_of_its_shortcut(norm):
    model = cnn("resnet50", norm, 10, (3, 32, 32), width=1 / 16, stem="cifar")
    blocks = model.blocks()
    assert len(blocks) == 16
    assert all(torch.count_nonzero(b.bn3.weight) == 0 for b in blocks)
    x = torch.randn(4, 16, 8, 8)  # layer1's output channels at width 1/16
    for block in (model.layer2[0], model.layer2[1]):  # with and without a downsample shortcut
        shortcut = x if block.downsample is None else block.downsample(x)
        torch.testing.assert_close(block(x), F.relu(shortcut))
        x = block(x)


def test_zero_init_is_optional_and_a_no_op_without_a_scale():
    model = cnn("resnet50", "batch", 10, width=1 / 16, stem="cifar", zero_init_last_norm=False)
    assert all(torch.all(b.bn3.weight == 1) for b in model.blocks())
    for norm in ("none", "weight"):  # identity slot: nothing to zero, the block is untouched
        model = cnn("resnet50", norm, 10, width=1 / 16, stem="cifar")
        assert all(isinstance(b.bn3, nn.Identity) for b in model.blocks())


@torch.no_grad()
def test_zero_init_with_weight_norm_zeroes_each_blocks_last_gain_at_the_data_init():
    model = cnn("resnet50", "weight", 10, (1, 28, 28), width=1 / 16, stem="cifar").train()
    logits = model(torch.randn(8, 1, 28, 28))  # the data-dependent init runs on this batch
    for block in model.blocks():
        assert torch.count_nonzero(block.conv3.parametrizations.weight.original0) == 0
        assert torch.count_nonzero(block.conv3.bias) == 0
    h = torch.randn(4, 16, 7, 7)  # layer1's output channels at width 1/16
    torch.testing.assert_close(model.layer1[1](h), F.relu(h))
    # the zero came first: the classifier was initialized on the zeroed branches' features,
    # so its data-dependent init holds (unit std per class over the init batch)
    torch.testing.assert_close(logits.std(0, correction=0), torch.ones(10), atol=1e-4, rtol=0)
    plain = cnn(
        "resnet50", "weight", 10, (1, 28, 28), width=1 / 16, stem="cifar", zero_init_last_norm=False
    ).train()
    plain(torch.randn(8, 1, 28, 28))
    assert all(torch.all(b.conv3.parametrizations.weight.original0 > 0) for b in plain.blocks())


def test_weight_norm_resnet_does_not_blow_up_under_momentum_sgd():
    torch.manual_seed(0)
    model = cnn("resnet50", "weight", 10, (1, 28, 28), width=1 / 16, stem="cifar").train()
    x, y = torch.randn(16, 1, 28, 28), torch.randint(0, 10, (16,))
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    losses = []
    for _ in range(15):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    # without the zero g (model.zero_init_last_norm=false) the second loss is about 3e5, then nan
    assert all(torch.isfinite(torch.tensor(losses))) and max(losses) < 100, losses


def test_resnet_width_stem_and_input_channels_set_the_shapes():
    model = cnn("resnet50", "batch", 7, (1, 28, 28), width=0.5, stem="imagenet")
    assert (model.conv1.in_channels, model.conv1.out_channels, model.conv1.kernel_size) == (
        1,
        32,
        (7, 7),
    )
    assert [model.layer1[0].conv1.out_channels, model.layer4[0].conv2.out_channels] == [32, 256]
    assert (model.fc.in_features, model.fc.out_features) == (1024, 7)
    assert isinstance(model.maxpool, nn.MaxPool2d)
    assert model.forward_features(torch.randn(2, 1, 64, 64)).shape == (2, 1024, 2, 2)
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 7)  # Fashion-MNIST-shaped input

    model = cnn("resnet50", "batch", 10, (3, 32, 32), width=0.25, stem="cifar")
    assert (model.conv1.out_channels, model.conv1.kernel_size, model.conv1.stride) == (
        16,
        (3, 3),
        (1, 1),
    )
    assert isinstance(model.maxpool, nn.Identity)
    assert model.forward_features(torch.randn(2, 3, 32, 32)).shape == (2, 512, 4, 4)


def test_resnet_stride_on_the_3x3_conv_and_bias_rule():
    model = cnn("resnet50", "batch", 10, width=1 / 16, stem="cifar")
    block = model.layer2[0]
    assert (block.conv1.stride, block.conv2.stride, block.downsample[0].stride) == (
        (1, 1),
        (2, 2),
        (2, 2),
    )
    assert all(m.bias is None for m in model.modules() if isinstance(m, nn.Conv2d))
    model = cnn("resnet50", "none", 10, width=1 / 16, stem="cifar")
    assert all(m.bias is not None for m in model.modules() if isinstance(m, nn.Conv2d))


def test_he_initialization_of_plain_convs():
    torch.manual_seed(0)
    model = cnn("resnet50", "batch", 10, width=0.5, stem="cifar")
    w = model.layer3[0].conv2.weight.detach()  # 128 → 128, 3×3: fan_out = 128·9
    assert w.std().item() == pytest.approx((2 / (128 * 9)) ** 0.5, rel=0.05)


def test_slots_with_their_own_nonlinearity_replace_the_relu_after_them():
    model = cnn("resnet50", "frn", 10, width=1 / 16, stem="cifar")
    block = model.layer1[0]
    assert isinstance(model.relu, nn.Identity) and isinstance(block.relu1, nn.Identity)
    assert isinstance(block.relu3, nn.ReLU)  # the ReLU after the residual sum is the block's own
    model = cnn("vgg16", "frn", 10, width=1 / 16, stem="cifar")
    assert not any(isinstance(m, nn.ReLU) for m in model.features)


def test_relus_are_separate_in_place_modules_that_the_probes_see_before_activation():
    model = cnn("resnet50", "batch", 10, width=1 / 16, stem="cifar")
    relus = [m for m in model.modules() if isinstance(m, nn.ReLU)]
    assert len(relus) == 1 + 3 * 16 and len({id(m) for m in relus}) == len(relus)
    x = torch.randn(4, 3, 32, 32)
    model.eval()
    with torch.no_grad():
        pre = model.layer1[0].bn1(
            model.layer1[0].conv1(model.maxpool(model.bn1(model.conv1(x)).relu()))
        )
        captured = ActivationProbe(model, x, saturation=4.0, mode="eval").capture()
    # in place as torchvision, yet a watched ReLU keeps its input: the probe sees pre-activations
    assert relus[0].inplace and (captured["layer1.0.relu1"] < 0).any()
    torch.testing.assert_close(captured["layer1.0.relu1"], pre)


def test_normprop_layers_are_built_in_forward_order():
    model = cnn("resnet50", "normprop", 10, width=1 / 16, stem="cifar")
    weight_layers = [m for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    assert model.conv1.shift == 0.0  # the first layer sees the standardized input
    assert all(m.shift > 0 for m in weight_layers if m is not model.conv1)


# --- VGG-16 structure ----------------------------------------------------------------------------


def test_vgg_width_stem_and_input_channels_set_the_shapes():
    model = cnn("vgg16", "batch", 5, (3, 64, 64), width=0.25, stem="imagenet", dropout=0.3)
    convs = [m for m in model.features if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [16] * 2 + [32] * 2 + [64] * 3 + [128] * 6
    assert len(convs) == 13 and sum(isinstance(m, nn.MaxPool2d) for m in model.features) == 5
    linears = [m for m in model.classifier if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [
        (128 * 49, 1024),
        (1024, 1024),
        (1024, 5),
    ]
    assert model.classifier[2].p == 0.3
    assert model(torch.randn(2, 3, 64, 64)).shape == (2, 5)

    model = cnn("vgg16", "none", 10, (1, 28, 28), width=0.25, stem="cifar")
    assert model.features[0].in_channels == 1 and len(model.features) == 13 * 2 + 5  # no slots
    assert [(m.in_features, m.out_features) for m in model.classifier] == [(128, 10)]
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)  # ceil-mode pools: 28 → 1


# --- configs and clear errors --------------------------------------------------------------------


@pytest.mark.parametrize("name", ["resnet50", "vgg16"])
def test_shipped_config_has_the_documented_defaults(name):
    cfg = OmegaConf.load(config_dir() / "model" / f"{name}.yaml")
    assert cfg.name == name
    assert {k: v for k, v in cfg.items() if k != "name"} == CNNS[name].defaults
    assert (cfg.width, cfg.stem) == (1.0, "imagenet")
    model = build_model(
        OmegaConf.merge(cfg, {"width": 1 / 16, "stem": "cifar"}),
        build_norm_spec({"name": "batch"}),
        10,
        (3, 32, 32),
    )
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize(
    ("name", "opts", "in_shape", "message"),
    [
        ("resnet50", {"depth": 101}, (3, 32, 32), "model=resnet50 has no option depth"),
        (
            "resnet50",
            {"stem": "tiny"},
            (3, 32, 32),
            "model.stem='tiny' is not one of imagenet, cifar",
        ),
        ("vgg16", {"width": 0}, (3, 32, 32), "model.width=0 must be a positive number"),
        ("vgg16", {}, (784,), r"needs image inputs of shape \(C, H, W\)"),
        (
            "vgg16",
            {"stem": "imagenet"},
            (1, 28, 28),
            "needs inputs of at least 32×32.*model.stem=cifar",
        ),
    ],
)
def test_bad_options_are_clear_errors(name, opts, in_shape, message):
    with pytest.raises(ConfigError, match=message):
        cnn(name, "batch", 10, in_shape, **opts)


@pytest.mark.parametrize("norm", ["group", "ws_group", "evonorm"])
def test_group_count_that_does_not_divide_the_width_names_the_channels(norm):
    with pytest.raises(
        ConfigError,
        match=r"does not divide the 4 channels.*width=0.0625 has norm slots with 4, 8, 16",
    ):
        cnn("resnet50", norm, 10, width=1 / 16, stem="cifar")
    cnn("resnet50", norm, 10, width=0.5, stem="cifar")  # 32 divides every channel count at 0.5


@pytest.mark.parametrize("model_name", ["mlp_sigmoid", "resnet50", "vgg16"])
@pytest.mark.parametrize(
    "norm,head_standardized",
    [({"name": "ws_group", "num_groups": 4}, False), ({"name": "weight"}, True)],
)
def test_output_layer_follows_the_papers(model_name, norm, head_standardized):
    """WS standardizes the convolutions but leaves the classifier plain (Qiao et al.); Weight
    Normalization reparametrizes every layer, the output layer included (Salimans & Kingma)."""
    from torch.nn.utils import parametrize

    spec = build_norm_spec(norm)
    in_shape = (1, 28, 28) if model_name == "mlp_sigmoid" else (3, 32, 32)
    overrides = (
        {"hidden": [8, 8]} if model_name == "mlp_sigmoid" else {"width": 0.0625, "stem": "cifar"}
    )
    cfg = OmegaConf.merge(OmegaConf.load(config_dir() / "model" / f"{model_name}.yaml"), overrides)
    model = build_model(cfg, spec, 10, in_shape)
    head = [m for m in model.modules() if getattr(m, "out_features", None) == 10][-1]
    # A parametrized or weight-normalized layer is a subclass; a plain output layer is nn.Linear.
    assert (type(head) is not nn.Linear) == head_standardized
    if model_name != "mlp_sigmoid" and norm["name"] == "ws_group":
        convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
        assert all(parametrize.is_parametrized(c) for c in convs)
