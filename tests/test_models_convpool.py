"""ConvPool-CNN-C (model=convpool): the Weight Normalization paper's table, every norm, options."""

from __future__ import annotations

import math

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from normbench.errors import ConfigError
from normbench.models import build_model
from normbench.models.convpool import GaussianNoise, convpool_parameters
from normbench.norms import build_norm_spec, known_norms
from tests.test_models_cnn import TINY_NORM_OPTIONS, trains_two_steps

pytestmark = pytest.mark.usefixtures("one_thread")

# The paper's appendix table (Salimans & Kingma 2016): (out channels, kernel, padding) of the nine
# convolutions, and the dense output layer; written out here, not taken from the model.
PAPER_CONVS = [(96, 3, 1)] * 3 + [(192, 3, 1)] * 3 + [(192, 3, 0), (192, 1, 0), (192, 1, 0)]


def convpool(norm: dict | str = "none", in_shape=(3, 32, 32), **opts) -> nn.Module:
    norm_cfg = {"name": norm} if isinstance(norm, str) else norm
    cfg = OmegaConf.create({"name": "convpool", **opts})
    return build_model(cfg, build_norm_spec(norm_cfg), 10, in_shape)


def test_width_1_is_the_papers_network_layer_by_layer():
    model = convpool()
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size[0], c.padding[0]) for c in convs] == PAPER_CONVS
    assert [c.in_channels for c in convs] == [3, 96, 96, 96, 192, 192, 192, 192, 192]
    assert isinstance(model.classifier, nn.Linear) and model.classifier.in_features == 192
    acts = [m for m in model.modules() if isinstance(m, nn.LeakyReLU)]
    assert len(acts) == 9 and all(a.negative_slope == 0.1 for a in acts)
    assert [m.p for m in model.modules() if isinstance(m, nn.Dropout)] == [0.5, 0.5]
    assert len([m for m in model.modules() if isinstance(m, nn.MaxPool2d)]) == 2
    expected, c_in = 0, 3
    for c_out, k, _ in PAPER_CONVS:
        expected += c_in * c_out * k * k + c_out
        c_in = c_out
    expected += 192 * 10 + 10
    assert sum(p.numel() for p in model.parameters()) == expected == convpool_parameters(1.0)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    # on 28×28 the unpadded conv leaves 5×5 maps (7 − 2)
    small = convpool(in_shape=(1, 28, 28), width=0.25)
    feats = small.features(torch.randn(2, 1, 28, 28))
    assert feats.shape == (2, 48, 5, 5)


def test_plain_convs_get_the_leaky_relu_he_gain():
    torch.manual_seed(0)
    conv = [m for m in convpool().modules() if isinstance(m, nn.Conv2d)][4]  # 192·96·9 weights
    std = math.sqrt(2.0 / (1 + 0.1**2)) / math.sqrt(192 * 9)  # fan-out
    assert conv.weight.std().item() == pytest.approx(std, rel=0.02)


def test_input_noise_only_in_training():
    noise = GaussianNoise(0.15)
    x = torch.zeros(20000)
    assert noise.train()(x).std().item() == pytest.approx(0.15, rel=0.03)
    assert torch.equal(noise.eval()(x), x)
    model = convpool(in_shape=(1, 28, 28), width=0.125, input_noise=0.0, dropout=0.0).train()
    x = torch.randn(2, 1, 28, 28)
    torch.testing.assert_close(model(x), model(x))  # no noise, no dropout: deterministic


NORMS = [
    {
        "name": n,
        **TINY_NORM_OPTIONS.get(n, {}),
        **({"activation": "leaky_relu"} if n == "normprop" else {}),
    }
    for n in known_norms()
] + [
    {"name": "weight", "mean_only_bn": True},
    {"name": "weight", "log_scale": 3.0, "max_v_norm": 1.0},
]


@pytest.mark.parametrize("norm", NORMS, ids=lambda c: "-".join(f"{v}" for v in c.values()))
def test_every_norm_trains_convpool(norm):
    trains_two_steps(convpool(norm, (1, 28, 28), width=1 / 8), (1, 28, 28))


def test_bad_inputs_and_options_are_clear_errors():
    with pytest.raises(ConfigError, match="at least 12×12"):
        convpool(in_shape=(1, 8, 8))
    with pytest.raises(ConfigError, match="model=convpool has no option stem"):
        convpool(stem="cifar")
    with pytest.raises(ConfigError, match="model.width"):
        convpool(width=0)
    with pytest.raises(ConfigError, match="norm.activation=leaky_relu"):
        convpool("normprop")
