"""Norm variants as the benches build them: the shipped config with its group count fitted to
the channels at hand, whether a variant acts on weights, and a spec that remembers the modules
the variant adds (``normbench bench train``)."""

from __future__ import annotations

from typing import Any

from omegaconf import OmegaConf
from torch import nn
from torch.nn.utils import parametrize

from normbench.config import config_dir
from normbench.errors import ConfigError
from normbench.models import CNNS
from normbench.norms import VARIANTS, NormSpec, known_norms


class RecordingSpec:
    """A norm spec that remembers the modules it builds: norm slots and weight parametrizations."""

    def __init__(self, spec: Any, has_shift: bool | None = None) -> None:
        self._spec = spec
        self.modules: list[nn.Module] = []
        if has_shift is not None:  # shadows the spec's property
            self.has_shift = has_shift

    def __getattr__(self, name: str) -> Any:
        return getattr(self._spec, name)

    def layer(self, *args: Any, **kwargs: Any) -> nn.Module:
        module = self._spec.layer(*args, **kwargs)
        self.modules.append(module)
        return module

    def conv(self, *args: Any, **kwargs: Any) -> nn.Module:
        return self._weights(self._spec.conv(*args, **kwargs))

    def linear(self, *args: Any, **kwargs: Any) -> nn.Module:
        return self._weights(self._spec.linear(*args, **kwargs))

    def _weights(self, module: nn.Module) -> nn.Module:
        if parametrize.is_parametrized(module):
            for plist in module.parametrizations.values():
                self.modules.extend(plist)
        return module

    def __repr__(self) -> str:
        return repr(self._spec)


GROUP_KEYS = ("num_groups", "groups")
GROUP_COUNTS = (32, 16, 8, 4, 2, 1)


def shipped_config(name: str) -> dict[str, Any]:
    """The shipped ``configs/norm/<name>.yaml`` as a dict (``{"name": name}`` without one)."""
    path = config_dir() / "norm" / f"{name}.yaml"
    return OmegaConf.to_container(OmegaConf.load(path)) if path.exists() else {"name": name}


def acts_on_weights(name: str) -> bool:
    """Whether variant ``name`` builds its own weight layers (overrides
    :meth:`~normbench.norms.spec.NormSpec.weight_layer`): Weight Normalization, NormProp,
    Weight Standardization."""
    return VARIANTS[name].weight_layer is not NormSpec.weight_layer


def fit_groups(cfg: dict[str, Any], channels: list[int]) -> tuple[dict[str, Any], str]:
    """``cfg`` with a group count that does not divide every one of ``channels`` lowered to the
    largest power of two below it that does; and ``[key=count]`` when it was lowered, else ``""``.
    """
    cfg, suffix = dict(cfg), ""
    for key in GROUP_KEYS:
        if key in cfg and any(c % cfg[key] for c in channels):
            fitted = next(
                g for g in GROUP_COUNTS if g <= cfg[key] and not any(c % g for c in channels)
            )
            cfg[key] = fitted
            suffix = f"[{key}={fitted}]"
    return cfg, suffix


def variant_config(name: str, model: str, width: float) -> tuple[dict[str, Any], str]:
    """The shipped ``configs/norm/<name>.yaml`` with its group count fitted to the model's
    channels at ``width``, and a label (``group[num_groups=8]`` when the count was lowered)."""
    if name not in known_norms():
        raise ConfigError(
            f"unknown variant {name!r} in --variants; known variants: {', '.join(known_norms())}."
        )
    cfg, suffix = fit_groups(shipped_config(name), CNNS[model].channels(width))
    return cfg, name + suffix
