"""``norm=none``: no normalization; plain weight layers and an identity slot."""

from __future__ import annotations

from dataclasses import dataclass

from normbench.norms.spec import NormSpec


@dataclass(frozen=True, kw_only=True)
class NoNormSpec(NormSpec):
    """The unnormalized baseline (Fig. 1 of Ioffe & Szegedy 2015, 'without BN'). No options."""

    name = "none"
