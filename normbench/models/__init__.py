"""Models. ``build_model`` is the one way in; every norm comes from the spec, never imported."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from omegaconf import DictConfig, OmegaConf
from torch import nn

from normbench.errors import ConfigError
from normbench.models.convpool import ConvPoolCNNC, check_convpool_input, convpool_channels
from normbench.models.layers import check_options
from normbench.models.lstm import build_lstm
from normbench.models.mlp import ACTIVATIONS, MLP, mlp_in_features
from normbench.models.resnet import ResNet50, resnet50_channels
from normbench.models.vgg import VGG16, check_vgg16_input, vgg16_channels
from normbench.norms.spec import NormSpec

MODELS = ("mlp", "resnet50", "vgg16", "convpool", "lstm")


class CNN(NamedTuple):
    """A convolutional model: its class, options with defaults, and two checks' helpers."""

    cls: type[nn.Module]
    defaults: dict[str, Any]
    #: Every channel count of the model's norm slots at a width (for group-count errors).
    channels: Callable[[float], list[int]]
    #: Raises ConfigError for an input size (H, W, stem) the model cannot take.
    check_input: Callable[[int, int, str | None], None] | None = None


CNNS: dict[str, CNN] = {
    "resnet50": CNN(
        ResNet50,
        {"width": 1.0, "stem": "imagenet", "zero_init_last_norm": True, "bias_before_norm": False},
        resnet50_channels,
    ),
    "vgg16": CNN(
        VGG16,
        {"width": 1.0, "stem": "imagenet", "dropout": 0.5, "bias_before_norm": False},
        vgg16_channels,
        check_vgg16_input,
    ),
    "convpool": CNN(
        ConvPoolCNNC,
        {"width": 1.0, "input_noise": 0.15, "dropout": 0.5, "bias_before_norm": False},
        convpool_channels,
        check_convpool_input,
    ),
}


def build_model(
    cfg: DictConfig, spec: NormSpec, num_classes: int, in_shape: tuple[int, ...]
) -> nn.Module:
    """Build the model named ``cfg.name`` with its norm slots filled by ``spec``.

    Args:
        cfg: the ``model`` config group.
        spec: the normalization spec (``build_norm_spec(cfg.norm)``).
        num_classes: classifier outputs, from the dataset.
        in_shape: shape of one input example (C, H, W), from the dataset.
    """
    if cfg.name == "mlp":
        if cfg.activation not in ACTIVATIONS:
            raise ConfigError(
                f"model.activation={cfg.activation!r} is not one of {', '.join(ACTIVATIONS)}."
            )
        return MLP(
            spec,
            mlp_in_features(in_shape),
            num_classes,
            list(cfg.hidden),
            activation=cfg.activation,
            init_std=cfg.get("init_std"),
            bias_before_norm=bool(cfg.get("bias_before_norm", False)),
        )
    if cfg.name in CNNS:
        return build_cnn(cfg, spec, num_classes, in_shape)
    if cfg.name == "lstm":
        return build_lstm(cfg, spec, num_classes, in_shape)
    raise ConfigError(
        f"Unknown model {cfg.name!r}. Known models: {', '.join(MODELS)}. Choose one with model=<name>."
    )


def build_cnn(
    cfg: DictConfig | dict[str, Any], spec: NormSpec, num_classes: int, in_shape: tuple[int, ...]
) -> nn.Module:
    """Build ResNet-50, VGG-16 or ConvPool-CNN-C from its config; unknown options and bad shapes are clear errors.

    A group count that does not divide a layer's channels (GN's 32 at a small ``width``) is
    refused by the spec; the error then also lists every channel count of the model at that width.
    """
    options = (
        OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)
    )
    name = options.pop("name")
    cnn = CNNS[name]
    unknown = sorted(set(options) - set(cnn.defaults))
    if unknown:
        raise ConfigError(
            f"model={name} has no option {', '.join(unknown)}; its options are: {', '.join(cnn.defaults)}."
        )
    if len(in_shape) != 3:
        raise ConfigError(
            f"model={name} needs image inputs of shape (C, H, W), but the dataset gives examples "
            f"of shape {tuple(in_shape)}. Use model=mlp_sigmoid for flat features."
        )
    options = {**cnn.defaults, **options}
    check_options(options["width"], options.get("stem"))
    if cnn.check_input is not None:
        cnn.check_input(in_shape[1], in_shape[2], options.get("stem"))
    try:
        return cnn.cls(spec, in_channels=in_shape[0], num_classes=num_classes, **options)
    except ConfigError as err:
        if "does not divide" not in str(err):
            raise
        channels = ", ".join(map(str, cnn.channels(options["width"])))
        raise ConfigError(
            f"{err} model={name} at width={options['width']} has norm slots with {channels} "
            "channels: choose a width or a group count that fits all of them."
        ) from err
