"""The VGG-16 feature-distribution claims (Ioffe & Szegedy 2015, Fig. 1(b, c), carried to the
intermediate conv layers of VGG-16; docs/papers.md §12), judged per seed by the shared rule:

- ``stabler_conv<k>``: for conv k (4, 7, 10 of 13), the typical unit's input percentiles move
  less during training with BN than without, relative to the layer's spread at the first probe
  (:mod:`.points`): move(no BN) − move(BN) > 0, paired by seed, by at least MIN_MOVE.
"""

from __future__ import annotations

import pandas as pd

from normbench.report.flags import not_enough
from normbench.report.verdicts import Claim, judge_difference, paired
from normbench.studies.vgg16_activations.points import LAYERS, by_seed

SOURCE = "Ioffe & Szegedy 2015, Fig. 1(b, c) (docs/papers.md §1.1, §12)"
MIN_MOVE = 0.1  # a tenth of the layer's initial 15-85 spread


def stabler(pts: pd.DataFrame, conv: int, scale: str) -> Claim:
    key = f"stabler_conv{conv}"
    text = (
        f"With BN, the input distribution of VGG-16's conv {conv} (of 13) moves less during "
        "training than without BN"
    )
    paper = (
        "BN's sigmoid-input percentiles stay stable, no BN's drift (Fig. 1(b, c), MLP; no number)"
    )
    none, bn = by_seed(pts, "none", conv), by_seed(pts, "batch", conv)
    d = paired(bn, none)
    if d.n < 2:
        return Claim(
            "vgg16_activations",
            key,
            text,
            SOURCE,
            paper,
            "–",
            "–",
            not_enough("runs with and without BN"),
            scale,
        )
    mean = lambda v: sum(v.values()) / len(v)  # noqa: E731
    return Claim(
        "vgg16_activations",
        key,
        text,
        SOURCE,
        paper,
        f"largest percentile move / initial 15-85 spread, no BN − BN, paired by seed: {d.text()} "
        f"(no BN {mean(none):.2f}, BN {mean(bn):.2f})",
        f"> 0, at least {MIN_MOVE}",
        judge_difference(d, +1, MIN_MOVE),
        scale,
    )


def all_claims(pts: pd.DataFrame, scale: str) -> list[Claim]:
    return [stabler(pts, conv, scale) for conv in LAYERS]
