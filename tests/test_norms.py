"""Every normalization variant behind one slot: configs, training, train/eval behaviour, errors.

The models below are defined here and only ever call ``spec.linear``, ``spec.conv`` and
``spec.layer``, as normbench's models do, and mark their input layer (``input_layer=True``).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from normbench.errors import ConfigError
from normbench.norms import VARIANTS, build_norm_spec, known_norms
from normbench.norms.spec import NormSpec

pytestmark = pytest.mark.usefixtures("one_thread")


CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs" / "norm"

# Small-model settings: group counts that divide 8/16 channels, ghost groups of 4 samples, and
# a BRN schedule that relaxes r/d within the few test steps.
SMALL = {
    "group": {"num_groups": 4},
    "ws_group": {"num_groups": 4},
    "evonorm": {"groups": 4},
    "ghost_batch": {"group_size": 4},
    "batch_renorm": {"warmup_steps": 0, "r_max_steps": 4, "d_max_steps": 4},
}
# Every registry name with its small settings, plus the non-default modes worth training.
CASES = [(name, SMALL.get(name, {})) for name in known_norms()] + [
    ("batch", {"impl": "closed_form"}),
    ("batch", {"affine": False}),
    ("evonorm", {"groups": 4, "version": "B0"}),
    ("weight", {"mean_only_bn": True}),
    ("mean_batch", {"affine": False, "detached": True}),
    ("normprop", {"activation": "sigmoid"}),
    ("frn", {"learnable_eps": True}),
]
CASE_IDS = [
    name + "".join(f"-{k}={v}" for k, v in opts.items() if name not in SMALL)
    for name, opts in CASES
]
BATCH_INDEPENDENT = [
    "group",
    "layer",
    "instance",
    "frn",
    "normprop",
    "evonorm",
    "ws_group",
    "weight",
    "none",
]


def make_spec(name: str, **options: object) -> NormSpec:
    cfg = OmegaConf.load(CONFIG_DIR / f"{name}.yaml")
    return build_norm_spec(OmegaConf.merge(cfg, options))


def activation(spec: NormSpec, act: type[nn.Module]) -> nn.Module:
    return nn.Identity() if spec.includes_activation else act()


def make_mlp(spec: NormSpec, d_in: int = 12, hidden: int = 16, classes: int = 3) -> nn.Module:
    layers: list[nn.Module] = []
    for fan_in in (d_in, hidden):
        layers += [
            spec.linear(fan_in, hidden, bias=not spec.has_shift, input_layer=not layers),
            spec.layer(hidden, dims=1),
            activation(spec, nn.Sigmoid),
        ]
    return nn.Sequential(*layers, spec.linear(hidden, classes))


def make_cnn(spec: NormSpec, classes: int = 3) -> nn.Module:
    return nn.Sequential(
        spec.conv(3, 8, 3, padding=1, bias=not spec.has_shift, input_layer=True),
        spec.layer(8, dims=2),
        activation(spec, nn.ReLU),
        spec.conv(8, 16, 3, stride=2, padding=1, bias=not spec.has_shift),
        spec.layer(16, dims=2),
        activation(spec, nn.ReLU),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        spec.linear(16, classes),
    )


def train_steps(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int) -> list[float]:
    """A few Adam steps on one batch; every parameter must get a finite gradient each step."""
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    model.train()
    for _ in range(steps):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        for pname, p in model.named_parameters():
            assert p.grad is not None, f"{pname} received no gradient"
            assert torch.isfinite(p.grad).all(), f"{pname} has a non-finite gradient"
        opt.step()
        losses.append(loss.item())
    return losses


def test_every_registry_name_has_a_config_and_every_config_builds():
    files = {p.stem for p in CONFIG_DIR.glob("*.yaml")}
    assert files == set(VARIANTS)
    for path in sorted(CONFIG_DIR.glob("*.yaml")):
        cfg = OmegaConf.load(path)
        spec = build_norm_spec(cfg)
        assert spec.name == cfg.name == path.stem
        # the yaml's keys are exactly the spec's options (dataclass fields) plus `name`
        assert set(cfg) - {"name"} == set(spec.options())


def test_unknown_variant_lists_known_ones():
    with pytest.raises(ConfigError) as err:
        build_norm_spec({"name": "batchnorm"})
    for name in known_norms():
        assert name in str(err.value)


def test_unknown_option_is_named():
    with pytest.raises(ConfigError, match="num_groups"):
        build_norm_spec({"name": "batch", "num_groups": 4})


@pytest.mark.parametrize(("name", "options"), CASES, ids=CASE_IDS)
def test_trains_mlp(name, options):
    spec = make_spec(name, **options)
    if name == "instance":
        with pytest.raises(ConfigError, match="spatial"):
            make_mlp(spec)
        return
    model = make_mlp(spec).double()
    x, y = torch.randn(16, 12, dtype=torch.float64), torch.randint(0, 3, (16,))
    losses = train_steps(model, x, y, steps=15)
    assert all(map(torch.isfinite, torch.tensor(losses)))
    assert losses[-1] < losses[0]


@pytest.mark.parametrize(("name", "options"), CASES, ids=CASE_IDS)
def test_trains_cnn(name, options):
    spec = make_spec(name, **options)
    model = make_cnn(spec)
    x, y = torch.randn(8, 3, 8, 8), torch.randint(0, 3, (8,))
    losses = train_steps(model, x, y, steps=8)
    assert losses[-1] < losses[0]


@pytest.mark.parametrize(("name", "options"), CASES, ids=CASE_IDS)
def test_eval_mode_is_batch_independent_and_deterministic(name, options):
    spec = make_spec(name, **options)
    model = make_cnn(spec).double()
    x = torch.randn(32, 3, 8, 8, dtype=torch.float64)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(x)  # move running statistics (and run data-dependent init) away from defaults
    model.eval()
    with torch.no_grad():
        full = model(x)
        alone = torch.cat([model(x[i : i + 1]) for i in range(0, 32, 7)])
        again = model(x)
    torch.testing.assert_close(alone, full[::7], rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(again, full, rtol=0, atol=0)


@pytest.mark.parametrize("name", BATCH_INDEPENDENT)
def test_training_output_of_a_sample_does_not_depend_on_the_batch(name):
    spec = make_spec(name, **SMALL.get(name, {}))
    model = make_cnn(spec).double().train()
    x = torch.randn(32, 3, 8, 8, dtype=torch.float64)
    with torch.no_grad():
        model(x)  # Weight Normalization's data-dependent init happens on this first batch
        full = model(x)
        for i in (0, 13, 31):
            torch.testing.assert_close(model(x[i : i + 1]), full[i : i + 1], rtol=1e-10, atol=1e-12)


def test_batch_statistics_are_used_in_training_and_running_ones_in_eval():
    layer = make_spec("batch").layer(4, dims=2).double()
    x = torch.randn(8, 4, 3, 3, dtype=torch.float64) * 3 + 2
    train_out = layer.train()(x)
    eval_out = layer.eval()(x)
    dims = (0, 2, 3)
    torch.testing.assert_close(
        train_out.mean(dims), torch.zeros(4, dtype=torch.float64), atol=1e-12, rtol=0
    )
    assert not torch.allclose(train_out, eval_out)
    expected = (x - layer.running_mean.view(1, -1, 1, 1)) / torch.sqrt(
        layer.running_var.view(1, -1, 1, 1) + 1e-5
    )
    torch.testing.assert_close(eval_out, expected, rtol=1e-6, atol=0)


BATCH_STATS = [
    ("batch", {}),
    ("batch", {"impl": "closed_form"}),
    ("batch_detached", {}),
    ("batch_renorm", {}),
    ("ghost_batch", {}),
    ("sync_batch", {}),
    ("evonorm", {"version": "B0"}),
]


@pytest.mark.parametrize(("name", "options"), BATCH_STATS, ids=[f"{n}{o}" for n, o in BATCH_STATS])
@pytest.mark.parametrize("shape", [(1, 8), (1, 8, 1, 1)])
def test_batch_of_one_value_per_channel_is_a_clear_error(name, options, shape):
    layer = make_spec(name, **options).layer(8, dims=1 if len(shape) == 2 else 2)
    with pytest.raises(ConfigError) as err:
        layer.train()(torch.randn(shape))
    message = str(err.value)
    for fix in ("norm=group", "norm=layer", "norm=instance", "norm=normprop", "larger batch"):
        assert fix in message
    layer.eval()(torch.randn(shape))  # eval mode uses running statistics: fine at batch 1


def test_mean_only_bn_batch_of_one_is_a_clear_error():
    layer = make_spec("weight", mean_only_bn=True).layer(8, dims=1)
    with pytest.raises(ConfigError, match="larger batch"):
        layer.train()(torch.randn(1, 8))


def test_batch_norm_at_batch_one_with_spatial_positions_is_allowed():
    layer = make_spec("batch").layer(4, dims=2).train()
    assert torch.isfinite(layer(torch.randn(1, 4, 3, 3))).all()


@pytest.mark.parametrize(
    ("name", "key"), [("group", "num_groups"), ("ws_group", "num_groups"), ("evonorm", "groups")]
)
def test_group_count_that_does_not_divide_channels_names_both_numbers(name, key):
    spec = make_spec(name, **{key: 3})
    with pytest.raises(ConfigError) as err:
        spec.layer(8, dims=2)
    assert f"{key}=3" in str(err.value) and "8 channels" in str(err.value)


@pytest.mark.parametrize(
    "bad",
    [
        {"name": "batch", "impl": "cudnn"},
        {"name": "evonorm", "version": "S1"},
        {"name": "normprop", "activation": "gelu"},
        {"name": "ghost_batch", "group_size": 0},
    ],
)
def test_bad_option_values_are_clear_errors(bad):
    with pytest.raises(ConfigError, match=str(list(bad.values())[1])):
        build_norm_spec(bad)


@pytest.mark.parametrize(
    "name",
    [
        "batch",
        "batch_renorm",
        "ghost_batch",
        "group",
        "layer",
        "instance",
        "frn",
        "evonorm",
        "ws_group",
        "sync_batch",
        "batch_detached",
        "normprop",
    ],
)
def test_affine_false_removes_scale_and_shift(name):
    spec = make_spec(name, **SMALL.get(name, {}), affine=False)
    assert not spec.has_shift
    layer = spec.layer(8, dims=2)
    names = {n for n, _ in layer.named_parameters()}
    assert not names & {"weight", "bias"}, names


def test_normprop_trains_at_batch_size_one():
    spec = make_spec("normprop")
    assert spec.standardize_input
    model = make_cnn(spec)
    x, y = torch.randn(1, 3, 8, 8), torch.randint(0, 3, (1,))
    losses = train_steps(model, x, y, steps=5)
    assert losses[-1] < losses[0]


def test_activation_owning_variants_say_so():
    assert make_spec("frn").includes_activation and make_spec("evonorm").includes_activation
    assert not make_spec("batch").includes_activation
