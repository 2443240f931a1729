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
from normbench.norms.batch_detached import DetachedBatchNormSpec
from normbench.norms.batch_renorm import BatchRenormSpec
from normbench.norms.evonorm import EvoNormSpec
from normbench.norms.frn import FilterResponseNormSpec
from normbench.norms.ghost_batch import GhostBatchNormSpec
from normbench.norms.group import GroupNormSpec, InstanceNormSpec, LayerNormSpec
from normbench.norms.none import NoNormSpec
from normbench.norms.normprop import NormPropSpec
from normbench.norms.spec import NormSpec
from normbench.norms.sync_batch import SyncBatchNormSpec
from normbench.norms.weight import WeightNormSpec
from normbench.norms.ws_group import WSGroupNormSpec

VARIANTS: dict[str, type[NormSpec]] = {
    "none": NoNormSpec,
    "batch": BatchNormSpec,
    "batch_detached": DetachedBatchNormSpec,
    "batch_renorm": BatchRenormSpec,
    "ghost_batch": GhostBatchNormSpec,
    "sync_batch": SyncBatchNormSpec,
    "group": GroupNormSpec,
    "layer": LayerNormSpec,
    "instance": InstanceNormSpec,
    "weight": WeightNormSpec,
    "normprop": NormPropSpec,
    "frn": FilterResponseNormSpec,
    "evonorm": EvoNormSpec,
    "ws_group": WSGroupNormSpec,
}


def known_norms() -> list[str]:
    """Names of every registered normalization variant, sorted."""
    return sorted(VARIANTS)


def build_norm_spec(
    cfg: Mapping[str, Any] | DictConfig, images_per_device: int | None = None
) -> NormSpec:
    """Build the spec of the variant named by ``cfg['name']`` from the rest of ``cfg``.

    With ``images_per_device`` set, variants that use batch statistics compute them over
    groups of that many samples (see :meth:`NormSpec.per_device`).

    Raises:
        ConfigError: unknown variant name, or an option the variant does not take.
    """
    options = (
        OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)
    )
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
    spec = cls(**options)
    return spec if images_per_device is None else spec.per_device(images_per_device)
