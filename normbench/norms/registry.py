"""String → normalization spec. The one place a variant name is looked up.

Adding a variant: one module in ``normbench/norms/``, one line in ``VARIANTS``, one
``configs/norm/<name>.yaml``, one test parametrization.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from omegaconf import DictConfig, OmegaConf

from normbench.errors import ConfigError
from normbench.norms.batch import BatchNormSpec
from normbench.norms.none import NoNormSpec
from normbench.norms.spec import NormSpec

VARIANTS: dict[str, type[NormSpec]] = {
    "none": NoNormSpec,
    "batch": BatchNormSpec,
}


def known_norms() -> list[str]:
    """Names of every registered normalization variant, sorted."""
    return sorted(VARIANTS)


def build_norm_spec(cfg: Mapping[str, Any] | DictConfig) -> NormSpec:
    """Build the spec of the variant named by ``cfg['name']`` from the rest of ``cfg``.

    Raises:
        ConfigError: unknown variant name, or an option the variant does not take.
    """
    options = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)
    name = options.pop("name", None)
    if name not in VARIANTS:
        raise ConfigError(
            f"Unknown normalization {name!r}. Known variants: {', '.join(known_norms())}. "
            "Choose one with norm=<name>."
        )
    cls = VARIANTS[name]
    accepted = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ConfigError(
            f"norm={name} has no option {', '.join(unknown)}; its options are: "
            f"{', '.join(accepted) or '(none)'}."
        )
    return cls(**options)
