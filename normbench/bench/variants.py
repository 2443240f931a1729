"""Norm variants as the benches build them: the shipped config with its group count fitted to
the channels at hand, whether a variant acts on weights, and a spec that remembers the modules
the variant adds (``normbench bench train``)."""

from __future__ import annotations

from typing import Any

import yaml
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


def split_variants(text: str) -> list[str]:
    """``--variants`` split at the commas outside brackets: ``batch,weight[a=1,b=2]`` →
    ``["batch", "weight[a=1,b=2]"]``."""
    items, depth, current = [], 0, ""
    for char in text:
        depth += {"[": 1, "]": -1}.get(char, 0)
        if char == "," and depth == 0:
            items.append(current.strip())
            current = ""
        else:
            current += char
    items.append(current.strip())
    return [item for item in items if item]


def parse_variant(text: str) -> tuple[str, dict[str, Any]]:
    """``normprop[activation=leaky_relu]`` → ``("normprop", {"activation": "leaky_relu"})``:
    a variant's name and the options that replace its shipped config's (values read as YAML
    scalars, safely: ``true``, ``3.0``, ``null``).

    Raises:
        ConfigError: an unknown name or an option not written ``key=value``.
    """
    name, _, rest = text.partition("[")
    name = name.strip()
    if name not in known_norms():
        raise ConfigError(
            f"unknown variant {name!r} in --variants; known variants: {', '.join(known_norms())}."
        )
    if rest and not rest.endswith("]"):
        raise ConfigError(
            f"--variants: {text!r} must end with ']' (e.g. weight[mean_only_bn=true])."
        )
    opts: dict[str, Any] = {}
    for item in filter(None, (i.strip() for i in rest[:-1].split(","))) if rest else ():
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise ConfigError(f"--variants: option {item!r} of {name} must be key=value.")
        opts[key.strip()] = yaml.safe_load(value) if value.strip() else None
    return name, opts


def variant_config(text: str, model: str, width: float) -> tuple[dict[str, Any], str]:
    """The shipped ``configs/norm/<name>.yaml`` with the variant's options (``name[k=v,...]``)
    and its group count fitted to the model's channels at ``width``, and a label (the text, and
    ``[num_groups=8]`` when the count was lowered)."""
    name, opts = parse_variant(text)
    cfg, suffix = fit_groups({**shipped_config(name), **opts}, CNNS[model].channels(width))
    return cfg, text + suffix
