"""Normalization variants behind one slot (see ``registry.py`` and ``spec.py``)."""

from normbench.norms.registry import VARIANTS, build_norm_spec, known_norms
from normbench.norms.spec import NormSpec

__all__ = ["VARIANTS", "NormSpec", "build_norm_spec", "known_norms"]
