"""Images per device (``spec.per_device``) for every registered variant, and the batch flag.

A variant's ``batch_dependent`` flag says whether a sample's training output depends on the
other samples of its batch; ``per_device(N)`` must then confine that dependence to groups of
N consecutive samples. Both are checked here on every registry entry (and on the modes that
switch batch statistics on: EvoNorm-B0, mean-only BN), for (N, C) and (N, C, H, W) inputs.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from normbench.errors import ConfigError
from normbench.norms import VARIANTS, build_norm_spec, known_norms
from normbench.norms.ghost_batch import GhostBatchNorm
from normbench.norms.spec import NormSpec

D = torch.float64
N, C, GROUP = 12, 8, 4

# Small settings: group counts dividing C = 8, and BRN's r, d relaxed to tight bounds at once
# (unclipped, BRN's output is (x − μ)/σ with running μ, σ: it only depends on the batch
# through clipping).
SMALL = {
    "group": {"num_groups": 4},
    "ws_group": {"num_groups": 4},
    "evonorm": {"groups": 4},
    "ghost_batch": {"group_size": 4},
    "batch_renorm": {
        "warmup_steps": 0,
        "r_max_steps": 1,
        "d_max_steps": 1,
        "r_max": 1.2,
        "d_max": 0.1,
    },
}
CASES = [(name, SMALL.get(name, {})) for name in known_norms()] + [
    ("batch", {"impl": "closed_form"}),
    ("evonorm", {"groups": 4, "version": "B0"}),
    ("weight", {"mean_only_bn": True}),
]
IDS = [
    name + "".join(f"-{k}={v}" for k, v in o.items() if k in ("impl", "version", "mean_only_bn"))
    for name, o in CASES
]
#: Variants whose ``per_device`` keeps statistics over the whole batch, on purpose.
SYNCHRONIZED = {"sync_batch"}


pytestmark = pytest.mark.usefixtures("one_thread")


def block(spec: NormSpec, dims: int) -> nn.Module:
    """Weight layer (where the variant acts) followed by the norm slot, in float64."""
    weight = spec.linear(C, C, bias=not spec.has_shift) if dims == 1 else spec.conv(C, C, 1)
    torch.manual_seed(1)
    model = nn.Sequential(weight, spec.layer(C, dims)).double()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return model.train()


def inputs(dims: int) -> torch.Tensor:
    shape = (N, C) if dims == 1 else (N, C, 3, 2)
    return torch.randn(shape, dtype=D) * 1.5 + 0.3


def build(name: str, options: dict, dims: int, images: int | None = None) -> nn.Module | None:
    spec = build_norm_spec({"name": name, **options}, images_per_device=images)
    try:
        return block(spec, dims)
    except ConfigError as err:  # instance norm on (N, C): documented, tested in test_norms.py
        assert name == "instance" and dims == 1, err
        return None


def run(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """One training-mode forward from the model's current state (buffers untouched)."""
    with torch.no_grad():
        return copy.deepcopy(model)(x)


@pytest.mark.parametrize("dims", [1, 2])
@pytest.mark.parametrize(("name", "options"), CASES, ids=IDS)
def test_per_device_confines_the_batch_dependence_to_each_group(name, options, dims):
    model = build(name, options, dims, images=GROUP)
    if model is None:
        return
    x = inputs(dims)
    with torch.no_grad():
        model(x)  # Weight Normalization's data-dependent init happens on this first batch
    changed = x.clone()
    changed[GROUP : 2 * GROUP] = torch.randn_like(changed[GROUP : 2 * GROUP]) * 3 - 1
    y, y_changed = run(model, x), run(model, changed)
    others = torch.cat([torch.arange(GROUP), torch.arange(2 * GROUP, N)])
    if name in SYNCHRONIZED:  # statistics over every (simulated) device: all outputs move
        assert not torch.allclose(y[others], y_changed[others])
        return
    torch.testing.assert_close(y_changed[others], y[others], rtol=1e-12, atol=1e-12)
    # Each group is normalized as if it were the whole batch (same parameters and buffers).
    whole = build(name, options, dims)
    whole.load_state_dict(model.state_dict())
    for start in range(0, N, GROUP):
        part = x[start : start + GROUP]
        torch.testing.assert_close(
            y[start : start + GROUP], run(whole, part), rtol=1e-9, atol=1e-12
        )


@pytest.mark.parametrize("dims", [1, 2])
@pytest.mark.parametrize(("name", "options"), CASES, ids=IDS)
def test_batch_dependent_flag_says_whether_a_sample_depends_on_the_others(name, options, dims):
    spec = build_norm_spec({"name": name, **options})
    model = build(name, options, dims)
    if model is None:
        return
    x = inputs(dims)
    with torch.no_grad():
        model(x)  # data-dependent init, once
    full = run(model, x)
    alone = torch.cat([run(model, x[i : i + 2]) for i in range(0, N, 2)])
    if spec.batch_dependent:  # a pair of samples alone is normalized differently
        assert not torch.allclose(alone, full, rtol=1e-6, atol=1e-9)
    else:
        torch.testing.assert_close(alone, full, rtol=1e-10, atol=1e-12)
        assert spec.per_device(GROUP) is spec


def test_every_registered_variant_is_covered():
    assert {name for name, _ in CASES} == set(VARIANTS)


def test_batch_dependent_variants_are_the_batch_statistics_ones():
    dependent = {
        (name, tuple(options.items()))
        for name, options in CASES
        if build_norm_spec({"name": name, **options}).batch_dependent
    }
    assert {name for name, _ in dependent} == {
        "batch",
        "batch_detached",
        "batch_renorm",
        "ghost_batch",
        "mean_batch",
        "noisy_batch",
        "sync_batch",
        "evonorm",
        "weight",
    }
    assert not build_norm_spec({"name": "evonorm", "version": "S0"}).batch_dependent
    assert not build_norm_spec({"name": "weight"}).batch_dependent


@pytest.mark.parametrize(
    ("impl", "ghost_impl"), [("native", "auto"), ("closed_form", "closed_form")]
)
def test_batch_norm_per_device_keeps_its_implementation(impl, ghost_impl):
    spec = build_norm_spec({"name": "batch", "impl": impl}, images_per_device=GROUP)
    layer = spec.layer(C, 2).double().train()
    assert isinstance(layer, GhostBatchNorm) and layer.group_size == GROUP
    assert layer.impl == ghost_impl
    y = layer(torch.randn(N, C, 3, 2, dtype=D, requires_grad=True))
    if impl == "closed_form":  # honoured on every device and size
        assert type(y.grad_fn).__name__ == "GroupedBatchNormFunctionBackward"


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("batch_renorm", {}),
        ("batch_detached", {}),
        ("evonorm", {"version": "B0"}),
        ("weight", {"mean_only_bn": True}),
        ("ghost_batch", {}),
    ],
)
def test_per_device_sets_the_group_size_and_nothing_else(name, options):
    spec = build_norm_spec({"name": name, **options})
    grouped = spec.per_device(GROUP)
    assert grouped is not spec and grouped.group_size == GROUP
    assert {k: v for k, v in grouped.options().items() if k != "group_size"} == {
        k: v for k, v in spec.options().items() if k != "group_size"
    }


@pytest.mark.parametrize("name", ["batch_renorm", "batch_detached", "evonorm", "weight"])
def test_bad_group_size_is_a_clear_error(name):
    with pytest.raises(ConfigError, match="group_size must be a positive integer"):
        build_norm_spec({"name": name, "group_size": 0})


def test_group_of_one_value_per_channel_is_a_clear_error():
    layer = build_norm_spec({"name": "batch_renorm"}, images_per_device=1).layer(C, 1)
    with pytest.raises(ConfigError, match="in each group of 1 samples"):
        layer.train()(torch.randn(N, C))
