"""Domain-shift study, what each claim says: its text, source, the paper's number and the rule
(the numbers from :mod:`normbench.studies.domain_shift.paper`)."""

from __future__ import annotations

from dataclasses import dataclass

from normbench.studies.domain_shift.paper import (
    SCHNEIDER_MCE,
    SCHNEIDER_SETTING,
    TENT_BATCH,
    TENT_MEAN,
    TENT_SETTING,
    TENT_UPDATES,
    tent_pattern,
)

TENT = f"docs/papers.md §7 (Tent's README, {TENT_SETTING})"
SCHNEIDER = f"docs/papers.md §9 (Schneider et al. 2020, {SCHNEIDER_SETTING})"
OURS = "ours (no paper states it)"
UPDATES = (
    "Tent makes one update per batch: at batch 128, 8 updates on the 1,000 held-out images "
    f"of a cell, 79 on the 10,000 test images (the paper: {TENT_UPDATES} at batch {TENT_BATCH})"
)


@dataclass(frozen=True)
class Spec:
    """What a claim says, where it comes from, the paper's number and the rule."""

    key: str
    claim: str
    source: str
    paper: str
    rule: str


HIGH, LOW = tent_pattern()
SPECS = {
    s.key: s
    for s in (
        Spec(
            "adapt",
            "Re-estimating BN statistics on the target data (AdaBN, mode=adapt) "
            "lowers the error at severity 5 against the source statistics (mode=running)",
            f"{TENT}; docs/papers.md §8 (AdaBN); §9",
            f"source {TENT_MEAN['source']} → norm {TENT_MEAN['norm']} "
            f"({TENT_MEAN['norm'] - TENT_MEAN['source']:+.1f}; norm: each test batch's own "
            f"statistics, batch {TENT_BATCH})",
            "adapt − running at severity 5, mean over the corruptions, paired by seed; < 0",
        ),
        Spec(
            "severity",
            "The gain of adaptation (running − adapt) is larger at severity 5 than at severity 1",
            OURS,
            "–",
            "per seed: gain at severity 5 − gain at severity 1 (each a mean over corruptions); > 0",
        ),
        Spec(
            "pattern",
            "The gain of adaptation is largest for noise and blur, smallest for "
            "brightness and JPEG",
            f"{TENT}; docs/papers.md §9",
            f"gain (source − norm): noise and blur {HIGH:+.1f}, brightness and JPEG {LOW:+.1f}; "
            f"difference {HIGH - LOW:+.1f}",
            "per seed at severity 5: mean gain (running − adapt) over the 7 noise and blur "
            "corruptions − mean gain over brightness and JPEG; > 0",
        ),
        Spec(
            "partial_prior",
            "With few target samples per batch, partial adaptation (the "
            "source statistics as a prior of strength N) beats the batch's statistics alone",
            SCHNEIDER,
            "qualitative: with the prior even very few samples help, unweighted "
            "statistics of 1–8 samples can hurt",
            "partial (prior N, batch n) − partial (prior 0, batch n), paired by seed; < 0",
        ),
        Spec(
            "partial",
            "Partial adaptation lowers the corrupted error against the source statistics",
            SCHNEIDER,
            f"no adaptation {SCHNEIDER_MCE['running']} → partial {SCHNEIDER_MCE['partial']} mCE",
            "partial − running over every corruption and severity, paired by seed; < 0",
        ),
        Spec(
            "clean",
            "Adapting to clean data (no shift) leaves the error unchanged",
            "ours (a control: no shift to adapt to)",
            "–",
            "adapt − running on clean data, paired by seed: the 95% interval inside "
            "± the minimum effect",
        ),
        Spec(
            "tent",
            "Tent lowers the error against test-batch statistics at the same batch "
            "size (Tent's comparison)",
            TENT,
            f"norm {TENT_MEAN['norm']} → tent {TENT_MEAN['tent']} "
            f"({TENT_MEAN['tent'] - TENT_MEAN['norm']:+.1f}; batch {TENT_BATCH}, "
            f"{TENT_UPDATES} updates per corruption)",
            "tent − batch (Tent's batch size) at severity 5, mean over the corruptions, "
            f"paired by seed; < 0. {UPDATES}",
        ),
        Spec(
            "tent_adapt",
            "Tent lowers the error against AdaBN (population statistics of the "
            "target images): a comparison of ours, not the paper's",
            OURS,
            "– (Tent compares with test-batch statistics: the claim above)",
            f"tent − adapt at severity 5, mean over the corruptions, paired by seed; < 0. {UPDATES}",
        ),
        Spec(
            "batch_free",
            "Statistics adaptation changes nothing for norms without batch "
            "statistics (GN, LN, FRN)",
            SCHNEIDER,
            "– (no statistics to adapt)",
            "adapt − running on corrupted data, paired by seed: inside ± the minimum effect; "
            "by construction when adapt is recorded as not applied",
        ),
        Spec(
            "norm_vs_bn",
            "A norm without batch statistics beats unadapted BN (ResNet-50)",
            SCHNEIDER,
            f"GroupNorm {SCHNEIDER_MCE['group']} vs BatchNorm {SCHNEIDER_MCE['running']} mCE",
            "this norm's running − BN's running over every corruption and severity, paired by "
            "seed (different models); < 0",
        ),
        Spec(
            "bn_adapt_vs_norm",
            "Adapted BN beats a norm without batch statistics (ResNet-50)",
            SCHNEIDER,
            f"BN + adaptation {SCHNEIDER_MCE['adapt']} vs GroupNorm {SCHNEIDER_MCE['group']} mCE",
            "BN's adapt − this norm's running over every corruption and severity, paired by "
            "seed (different models); < 0",
        ),
        Spec(
            "kl",
            "The per-layer KL divergence between source and target responses drops after "
            "adaptation (AdaBN's KL analysis)",
            "docs/papers.md §8 (AdaBN)",
            "qualitative: adaptation makes the distributions closer",
            "none: after adapt each domain's norm outputs are normalized by its own statistics, "
            "so their Gaussian fits match at every layer whatever the data",
        ),
    )
}
