"""Specs are frozen dataclasses and pure factories; their YAML files cannot drift from them.

Every registered variant: its dataclass fields are the options ``build_norm_spec`` accepts
(names, types, did-you-mean), ``configs/norm/<name>.yaml`` has exactly those keys with the
same defaults, and one spec builds the same modules however many times it is asked.
"""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from normbench.errors import ConfigError
from normbench.models import build_model
from normbench.norms import VARIANTS, NormSpec, build_norm_spec, known_norms
from normbench.norms.normprop import ACTIVATION_MOMENTS

pytestmark = pytest.mark.usefixtures("one_thread")

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs" / "norm"
#: Group counts dividing every channel count of the small models below (4 … 128).
SMALL = {"group": {"num_groups": 4}, "ws_group": {"num_groups": 4}, "evonorm": {"groups": 4}}
MODES = [(name, SMALL.get(name, {})) for name in known_norms()] + [
    ("batch", {"impl": "closed_form"}),
    ("evonorm", {"groups": 4, "version": "B0"}),
    ("weight", {"mean_only_bn": True}),
    ("mean_batch", {"affine": False, "detached": True}),
    ("normprop", {"affine": False}),
]
MODE_IDS = [
    name + "".join(f"-{k}={v}" for k, v in o.items() if k not in SMALL.get(name, {}))
    for name, o in MODES
]


def fields(cls: type[NormSpec]) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(cls)}


@pytest.mark.parametrize("name", known_norms())
def test_yaml_keys_and_defaults_are_the_dataclass_fields(name):
    cls = VARIANTS[name]
    assert dataclasses.is_dataclass(cls) and cls.__dataclass_params__.frozen
    yaml = OmegaConf.to_container(OmegaConf.load(CONFIG_DIR / f"{name}.yaml"))
    assert yaml.pop("name") == name == cls.name
    assert set(yaml) == set(fields(cls))
    for key, field in fields(cls).items():
        assert field.default is not dataclasses.MISSING, f"{name}.{key} has no default"
        assert yaml[key] == field.default, (
            f"{name}.{key}: yaml {yaml[key]!r}, spec {field.default!r}"
        )
        assert type(yaml[key]) is type(field.default), f"{name}.{key}: {yaml[key]!r}"


@pytest.mark.parametrize("name", known_norms())
def test_options_come_from_the_dataclass(name):
    spec = build_norm_spec({"name": name})
    assert spec == VARIANTS[name]()  # the YAML-less default is the dataclass default
    assert list(spec.options()) == list(fields(type(spec)))
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.extra = 1
    for key, value in spec.options().items():
        if isinstance(value, str):
            continue  # choices: checked below
        if isinstance(value, bool) or value is None:
            other = not value if isinstance(value, bool) else None
        else:
            other = value + 1
        changed = spec.with_options(**{key: other})
        assert changed.options() == {**spec.options(), key: other} and spec.options()[key] == value
    with pytest.raises(TypeError):
        spec.with_options(not_an_option=1)


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("batch", "impl"),
        ("ghost_batch", "impl"),
        ("evonorm", "version"),
        ("normprop", "activation"),
    ],
)
def test_with_options_checks_choices_again(name, key):
    with pytest.raises(ConfigError, match=f"{key}='bogus'"):
        build_norm_spec({"name": name}).with_options(**{key: "bogus"})


@pytest.mark.parametrize("name", [n for n in known_norms() if dataclasses.fields(VARIANTS[n])])
def test_a_misspelt_option_suggests_the_field(name):
    key = dataclasses.fields(VARIANTS[name])[0].name
    with pytest.raises(ConfigError, match=rf"did you mean norm\.{key}\?"):
        build_norm_spec({"name": name, key + "x": 1})


def wrong_value(hint: object) -> tuple[object, str] | None:
    """A value of the wrong type for an option annotated ``hint``, and the error's words."""
    types = set(typing.get_args(hint) or (hint,)) - {type(None)}
    if types == {bool}:
        return 3, "true or false"
    if types == {int}:
        return 1.5, "integer"
    if types == {float}:
        return "x", "a number"
    return None


@pytest.mark.parametrize("name", known_norms())
def test_option_types_come_from_the_field_annotations(name):
    hints = typing.get_type_hints(VARIANTS[name])
    for key in fields(VARIANTS[name]):
        wrong = wrong_value(hints[key])
        if wrong is None:
            continue
        with pytest.raises(ConfigError, match=rf"norm\.{key} must be .*{wrong[1]}"):
            build_norm_spec({"name": name, key: wrong[0]})


# --- pure factories ------------------------------------------------------------------------------


def small_cnn(spec: NormSpec) -> nn.Module:
    """A CNN built as normbench's models build: the input layer marked, slots after convs."""
    act = nn.Identity if spec.includes_activation else nn.ReLU
    return nn.Sequential(
        spec.conv(3, 8, 3, padding=1, bias=not spec.has_shift, input_layer=True),
        spec.layer(8, dims=2),
        act(),
        spec.conv(8, 16, 3, stride=2, padding=1, bias=not spec.has_shift),
        spec.layer(16, dims=2),
        act(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        spec.classifier(16, 3),
    )


def assert_same_modules(a: nn.Module, b: nn.Module, x: torch.Tensor) -> None:
    """Same structure, settings, parameters, buffers and outputs (training mode, twice)."""
    assert repr(a) == repr(b)
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key
    for step in range(2):  # the same random state for both (norm=noisy_batch draws noise)
        torch.manual_seed(step)
        ya = a.train()(x)
        torch.manual_seed(step)
        assert torch.equal(ya, b.train()(x))
    assert torch.equal(a.eval()(x), b.eval()(x))


@pytest.mark.parametrize(("name", "options"), MODES, ids=MODE_IDS)
def test_one_spec_builds_the_same_model_twice(name, options):
    spec = build_norm_spec({"name": name, **options})
    before = spec.options()
    torch.manual_seed(3)
    first = small_cnn(spec)
    torch.manual_seed(3)
    second = small_cnn(spec)
    assert spec.options() == before
    assert_same_modules(first, second, torch.randn(6, 3, 8, 8))


@pytest.mark.parametrize("model", ["resnet50", "mlp"])
@pytest.mark.parametrize(
    ("name", "options"),
    [(n, o) for n, o in MODES],
    ids=MODE_IDS,
)
def test_build_model_twice_from_one_spec_gives_identical_models(model, name, options):
    spec = build_norm_spec({"name": name, **options})
    if model == "mlp":
        if name == "instance":
            pytest.skip("norm=instance refuses (N, C) features (tested in test_norms.py)")
        cfg, shape = (
            {"name": "mlp", "hidden": [16, 8], "activation": "relu", "init_std": 0.1},
            (12,),
        )
    else:
        cfg, shape = {"name": "resnet50", "width": 1 / 16, "stem": "cifar"}, (3, 8, 8)
    built = []
    for _ in range(2):
        torch.manual_seed(5)
        built.append(build_model(OmegaConf.create(cfg), spec, 3, shape))
    assert_same_modules(*built, torch.randn(4, *shape))


@pytest.mark.parametrize("activation", sorted(ACTIVATION_MOMENTS))
def test_normprop_layers_depend_on_their_arguments_only(activation):
    spec = build_norm_spec({"name": "normprop", "activation": activation})
    calls = [
        lambda: spec.conv(3, 8, 3, padding=1, input_layer=True),
        lambda: spec.conv(8, 8, 3, padding=1, input_layer=False),
        lambda: spec.linear(8, 4, input_layer=False),
        lambda: spec.classifier(4, 2, input_layer=False),
    ]
    forward = [repr(call()) for call in calls]
    backward = [repr(call()) for call in reversed(calls)][::-1]
    assert forward == backward
    first, *rest = (call() for call in calls)
    c1, c2 = ACTIVATION_MOMENTS[activation]
    assert first.shift == 0.0 and first.parametrizations.weight[0].gain == 1.0
    for layer in rest:
        assert layer.shift == c1 and layer.parametrizations.weight[0].gain == 1.0 / c2


def test_normprop_layers_are_corrected_unless_marked_as_the_input_layer():
    """No build order: an unmarked weight layer is always corrected, however many were built."""
    spec = build_norm_spec({"name": "normprop"})
    shifts = [spec.linear(4, 4).shift for _ in range(3)]
    assert shifts == [ACTIVATION_MOMENTS["relu"][0]] * 3


@pytest.mark.parametrize("name", known_norms())
def test_weight_layers_take_their_arguments_through_the_one_signature(name):
    """``conv`` and ``linear`` are written once (NormSpec); a variant changes the layer through
    ``weight_layer`` alone, and every argument reaches the layer it builds."""
    cls = VARIANTS[name]
    assert cls.conv is NormSpec.conv and cls.linear is NormSpec.linear
    spec = build_norm_spec({"name": name, **SMALL.get(name, {})})
    conv = spec.conv(4, 8, 3, stride=2, padding=1, bias=False, groups=2)
    assert isinstance(conv, nn.Conv2d)
    assert (conv.in_channels, conv.out_channels, conv.kernel_size) == (4, 8, (3, 3))
    assert (conv.stride, conv.padding, conv.groups, conv.bias) == ((2, 2), (1, 1), 2, None)
    assert conv.weight.shape == (8, 2, 3, 3)
    linear = spec.linear(5, 3, bias=True)
    assert isinstance(linear, nn.Linear) and linear.weight.shape == (3, 5)
    assert linear.bias is not None and linear.bias.shape == (3,)
    assert spec.linear(5, 3, bias=False).bias is None


def test_the_batch_statistics_variants_extend_one_base_spec():
    """BN's options, the slot built from them and the shift live in BatchStatsSpec once; the
    six batch-statistics variants extend it and their modules get every option."""
    from normbench.norms.batch_base import BatchStatsSpec

    extending = {n for n, cls in VARIANTS.items() if issubclass(cls, BatchStatsSpec)}
    assert extending == {
        "batch",
        "batch_detached",
        "batch_renorm",
        "ghost_batch",
        "noisy_batch",
        "sync_batch",
    }
    for name in sorted(extending):
        spec = VARIANTS[name](momentum=0.25, eps=1e-3)
        assert spec.batch_dependent and spec.has_shift
        assert not spec.with_options(affine=False).has_shift
        layer = spec.layer(6, dims=2)
        assert isinstance(layer, spec.norm_module) and layer.dims == 2
        assert (layer.num_features, layer.momentum, layer.eps) == (6, 0.25, 1e-3), name
        assert spec.with_options(affine=False).layer(6, dims=1).weight is None
