"""Models. ``build_model`` is the one way in; every norm comes from the spec, never imported."""

from __future__ import annotations

from omegaconf import DictConfig
from torch import nn

from normbench.errors import ConfigError
from normbench.models.mlp import ACTIVATIONS, MLP, mlp_in_features
from normbench.norms.spec import NormSpec

MODELS = ("mlp",)


def build_model(cfg: DictConfig, spec: NormSpec, num_classes: int, in_shape: tuple[int, ...]) -> nn.Module:
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
            spec, mlp_in_features(in_shape), num_classes, list(cfg.hidden),
            activation=cfg.activation, init_std=cfg.get("init_std"),
        )
    raise ConfigError(f"Unknown model {cfg.name!r}. Known models: {', '.join(MODELS)}. Choose one with model=<name>.")
