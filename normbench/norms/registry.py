"""String → normalization spec. The one place a variant name is looked up.

Adding a variant: one dataclass spec in ``normbench/norms/`` (its fields are its options), one
line in ``VARIANTS``, one ``configs/norm/<name>.yaml`` with the same keys and defaults, one
test parametrization. Its options are checked here before the spec is built: their names and
types from its dataclass fields, the range of every option named in ``RANGES`` (``eps``,
``momentum`` ...), whichever variant takes it; a new kind of ranged option is one more line there.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf

from normbench.config import shown, unknown_key_message
from normbench.errors import ConfigError
from normbench.norms.batch import BatchNormSpec
from normbench.norms.batch_detached import DetachedBatchNormSpec
from normbench.norms.batch_renorm import BatchRenormSpec
from normbench.norms.evonorm import EvoNormSpec
from normbench.norms.frn import FilterResponseNormSpec
from normbench.norms.ghost_batch import GhostBatchNormSpec
from normbench.norms.group import GroupNormSpec, InstanceNormSpec, LayerNormSpec
from normbench.norms.mean_batch import MeanBatchNormSpec
from normbench.norms.noisy_batch import NoisyBatchNormSpec
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
    "mean_batch": MeanBatchNormSpec,
    "noisy_batch": NoisyBatchNormSpec,
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


@dataclass(frozen=True)
class Range:
    """The values a numeric norm option may take.

    Attributes:
        low: smallest allowed value (``None``: no lower bound).
        high: largest allowed value (``None``: no upper bound).
        low_open: ``low`` itself is excluded (``> low`` rather than ``>= low``).
        null: what ``null`` means, for variants whose signature admits ``None``.
    """

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    null: str = ""

    def contains(self, value: float) -> bool:
        """Whether ``value`` lies in the range."""
        if isinstance(value, float) and not math.isfinite(value):
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or value <= self.high

    def describe(self, integer: bool) -> str:
        """The range in words: ``> 0``, ``in [0, 1]``, ``a positive integer``, ``an integer >= 0``."""
        if integer and self.low == 1 and self.high is None and not self.low_open:
            return "a positive integer"
        if self.low is not None and self.high is not None:
            text = f"in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}]"
        elif self.low is not None:
            text = f"{'>' if self.low_open else '>='} {self.low:g}"
        else:
            text = f"<= {self.high:g}"
        return f"an integer {text}" if integer else text


#: Option name -> its range, for whichever variant takes an option of that name.
RANGES: dict[str, Range] = {
    "eps": Range(low=0, low_open=True),
    "ws_eps": Range(low=0, low_open=True),
    "momentum": Range(low=0, high=1, null="the cumulative average"),
    "num_groups": Range(low=1),
    "groups": Range(low=1),
    "group_size": Range(low=1, null="the whole batch"),
    "r_max": Range(low=1),
    "d_max": Range(low=0),
    "warmup_steps": Range(low=0),
    "r_max_steps": Range(low=0),
    "d_max_steps": Range(low=0),
    "noise_mean": Range(low=0),
    "noise_scale": Range(low=1),
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
        ConfigError: unknown variant name, an option the variant does not take, or an option
            value of the wrong type or out of its range.
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
    accepted = option_names(cls)
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ConfigError(unknown_key_message("norm", unknown[0], accepted, owner=f"norm={name}"))
    check_options(cls, options)
    spec = cls(**options)
    return spec if images_per_device is None else spec.per_device(images_per_device)


def option_names(cls: type[NormSpec]) -> list[str]:
    """The options variant ``cls`` takes: its dataclass fields, in declaration order."""
    return [f.name for f in dataclasses.fields(cls) if f.init]


def check_options(cls: type[NormSpec], options: Mapping[str, Any]) -> None:
    """Check ``options`` of variant ``cls``: types from its fields' annotations, ranges from
    :data:`RANGES`.

    Raises:
        ConfigError: naming the key as the user types it (``norm.eps``), the allowed values
            and the value given.
    """
    try:
        hints = typing.get_type_hints(cls)
    except (NameError, TypeError):  # an annotation that does not evaluate: types unchecked
        hints = {}
    for key, value in options.items():
        hint = hints.get(key)
        types = typing.get_args(hint) or (hint,)
        nullable = type(None) in types
        if value is None and (nullable or hint is None):
            continue
        message = _option_problem(value, set(types) - {type(None)}, RANGES.get(key))
        if message:
            null = RANGES[key].null if key in RANGES else ""
            also = f", or null for {null}" if nullable and null else ""
            raise ConfigError(f"norm.{key} must be {message}{also}, got {_shown(value, types)}.")


def _option_problem(value: Any, types: set[Any], allowed: Range | None) -> str:
    """What ``value`` should be, or ``""`` when it is fine."""
    if types == {bool}:
        return "" if isinstance(value, bool) else "true or false"
    integer = types == {int}
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if integer and not (number and isinstance(value, int)):
        return allowed.describe(integer=True) if allowed else "an integer"
    if types == {float} and not number:
        return f"a number {allowed.describe(integer=False)}" if allowed else "a number"
    if allowed is None or not number or allowed.contains(value):
        return ""
    if isinstance(value, float) and not math.isfinite(value):
        return f"a finite number {allowed.describe(integer)}"
    return allowed.describe(integer)


def _shown(value: Any, types: tuple[Any, ...]) -> str:
    """``value`` as typed, a whole number of a float option as a float (``-1.0``)."""
    if float in types and type(value) is int and abs(value) < 2**53:
        return str(float(value))
    return shown(value)
