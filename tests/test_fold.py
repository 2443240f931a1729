"""Folding BN into the weight layer before it (normbench/models/fold.py): the folded model's
outputs equal the unfolded model's in eval mode, in float64, on ResNet-50, VGG-16 and the MLP,
with every foldable BN gone; BN's eval map is written out here as the reference of one layer;
norms whose eval forward is another function are left in place."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from normbench.models import build_model
from normbench.models.fold import fold_norms
from normbench.norms import build_norm_spec

pytestmark = pytest.mark.usefixtures("one_thread")

MODELS = {
    "resnet50": ({"name": "resnet50", "width": 0.125, "stem": "cifar"}, (3, 16, 16)),
    "vgg16": ({"name": "vgg16", "width": 0.125}, (3, 32, 32)),
    "mlp": ({"name": "mlp", "hidden": [12, 12], "activation": "sigmoid"}, (1, 6, 6)),
}


def model_of(name: str, norm: str) -> nn.Module:
    cfg, in_shape = MODELS[name]
    model = build_model(OmegaConf.create(cfg), build_norm_spec({"name": norm}), 7, in_shape)
    torch.manual_seed(1)
    with torch.no_grad():  # statistics and affine parameters far from their init
        for m in model.modules():
            if isinstance(m, _BatchNorm):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0.0, 0.3)
                m.running_mean.normal_(0.0, 0.5)
                m.running_var.uniform_(0.3, 3.0)
    return model.double().eval()


def norms_in(model: nn.Module) -> int:
    return sum(isinstance(m, _BatchNorm) for m in model.modules())


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("norm", ["batch", "batch_renorm"])
def test_folded_outputs_equal_the_model_in_float64(name, norm):
    model = model_of(name, norm)
    before = norms_in(model)
    folded = fold_norms(model)
    assert folded.folded == before and folded.left == 0 and norms_in(folded.model) == 0
    x = torch.randn(5, *MODELS[name][1], dtype=torch.float64)
    torch.testing.assert_close(folded.model(x), model(x), rtol=1e-10, atol=1e-10)
    assert norms_in(model) == before  # the model itself is untouched


def test_one_folded_layer_is_the_formula():
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 4, 3, padding=1, bias=False).double()
    bn = nn.BatchNorm2d(4).double().eval()
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([1.5, -0.5, 2.0, 0.1]))
        bn.bias.copy_(torch.tensor([0.3, 0.0, -1.0, 0.2]))
        bn.running_mean.copy_(torch.tensor([0.1, -0.4, 0.0, 2.0]))
        bn.running_var.copy_(torch.tensor([0.5, 1.0, 4.0, 0.05]))
    folded = fold_norms(nn.Sequential(conv, bn)).model
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    fused = [m for m in folded.modules() if isinstance(m, nn.Conv2d)]
    assert len(fused) == 1
    torch.testing.assert_close(fused[0].weight, conv.weight * scale.view(-1, 1, 1, 1))
    torch.testing.assert_close(fused[0].bias, bn.bias - bn.running_mean * scale)


@pytest.mark.parametrize("norm", [{"name": "group", "num_groups": 4}, "layer", "frn"])
def test_norms_without_running_statistics_are_left(norm):
    norm = {"name": norm} if isinstance(norm, str) else norm
    model = build_model(
        OmegaConf.create(MODELS["vgg16"][0]), build_norm_spec(norm), 7, (3, 32, 32)
    ).eval()
    folded = fold_norms(model)
    assert folded.folded == 0
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(folded.model(x), model(x))


def test_a_norm_with_another_eval_map_is_left():
    model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.Linear(3, 2)).eval()
    model[1].__class__ = type("OtherNorm", (nn.BatchNorm1d,), {})  # unknown eval forward
    folded = fold_norms(model)
    assert (folded.folded, folded.left) == (0, 1)


@pytest.mark.parametrize("name", ["resnet50", "mlp"])  # VGG-16 without a norm has no slots
def test_empty_norm_slots_are_dropped_and_the_outputs_kept(name):
    """norm=none through fold_norms: an fx graph without its IdentitySlot calls, same outputs."""
    from normbench.norms.spec import IdentitySlot

    model = model_of(name, "none")
    slots = sum(type(m) is IdentitySlot for m in model.modules())
    assert slots > 0
    folded = fold_norms(model)
    assert folded.folded == 0 and folded.left == 0
    calls = [n for n in folded.model.graph.nodes if n.op == "call_module"]
    modules = dict(folded.model.named_modules())
    assert not any(type(modules[n.target]) is IdentitySlot for n in calls)
    x = torch.randn(5, *MODELS[name][1], dtype=torch.float64)
    torch.testing.assert_close(folded.model(x), model(x), rtol=1e-10, atol=1e-10)
