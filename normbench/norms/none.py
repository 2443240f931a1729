"""``norm=none``: no normalization; plain weight layers and an identity slot."""

from __future__ import annotations

from normbench.norms.spec import NormSpec


class NoNormSpec(NormSpec):
    """The unnormalized baseline (Fig. 1 of Ioffe & Szegedy 2015, 'without BN')."""

    name = "none"
