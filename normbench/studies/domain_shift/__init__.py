"""The domain-shift study: normalization statistics under common corruptions.

AdaBN (Li et al. 2016), BN adaptation with a source prior (Schneider et al. 2020) and Tent
(Wang et al. 2021) on Fashion-MNIST with the 15 common corruptions of Hendrycks & Dietterich
(2019). The source models are ``configs/experiment/domain_shift.yaml``'s grid; every other
number comes from ``normbench eval`` phases on those runs (one row of ``RUN/evals.csv`` each),
selected by what a run records (``uses_batch_statistics``: summary.json's
``norm_batch_dependent``), never by its directory name.

Which images each phase evaluates on:

- the grid over corruptions × severities 1..5, the k and N curves and the KL: the run's own
  validation split, the 1,000 images held out of the training set (``dataset.val_split=holdout``);
- ``test_clean`` and ``test_severity5``: the official 10,000-image test split
  (``data.val_split=test``), where the claims compare small differences: adapting on clean
  data, and Tent against test-batch statistics at Tent's batch size (Tent's own comparison), at
  severity 5, Tent's setting, with as many Tent updates as the paper made (79 batches of 128
  here, 50 batches of 200 there) instead of 8 on 1,000 images.

``normbench study plan domain_shift`` prints the counts.
"""

from __future__ import annotations

from normbench.data.corruptions.names import CORRUPTIONS
from normbench.report.collect import Run
from normbench.studies.study import (
    Phase,
    ReportInput,
    ReportOutput,
    Study,
    uses_batch_statistics,
)

ALL = ",".join(CORRUPTIONS)
SEVERITIES = "1,2,3,4,5"
K_SAMPLES = "1,2,4,8,16,32,64,128,256,512,1000"  # AdaBN's k curve (severity 3)
N_PRIORS = "0,1,2,4,8,16,32,64,128,256"  # partial adaptation's N curve (batch 8, severity 3)
KL_DATA = "none,gaussian_noise,contrast,fog"
TENT_BATCH = "128"  # Tent's batch size on small datasets (normbench/evaluation/tent.py)
TEST_SPLIT = {"data.val_split": "test"}  # the official 10,000-image test split


def batch_free(run: Run) -> bool:
    """The runs whose norm uses no batch statistics (GN, LN, FRN), as summary.json records."""
    return not uses_batch_statistics(run)


def corrupted(modes: str, severity: str = SEVERITIES, **knobs: str) -> dict[str, str]:
    """The eval grid of ``modes`` (and ``knobs``) on every corruption at ``severity``."""
    return {"mode": modes, **knobs, "corruption": ALL, "severity": severity}


BN = uses_batch_statistics
HELD_OUT = "the 1,000 held-out images"
PHASES = (
    Phase("clean", {"mode": "running,adapt", "corruption": "none"}, about=f"every run, {HELD_OUT}"),
    Phase(
        "bn",
        corrupted("running,adapt,batch,partial,tent"),
        BN,
        f"runs with batch statistics: every statistics mode, every corruption and severity, "
        f"{HELD_OUT}",
    ),
    Phase(
        "batch_free",
        corrupted("running,adapt,tent"),
        batch_free,
        "runs without batch statistics: running, adapt (recorded as not applied) and tent "
        "(which adapts their affine parameters)",
    ),
    Phase(
        "k_curve",
        corrupted("adapt", "3", samples=K_SAMPLES),
        BN,
        "AdaBN against the number of target samples k, at severity 3",
    ),
    Phase(
        "n_curve",
        corrupted("partial", "3", prior=N_PRIORS, batch_size="8"),
        BN,
        "partial adaptation against the prior strength N, batches of 8, at severity 3",
    ),
    Phase(
        "kl",
        {"kl": "true", "mode": "running,adapt", "corruption": KL_DATA, "severity": "3"},
        about="per-layer KL between source and target responses",
    ),
    Phase(
        "tent_reference",
        corrupted("batch", batch_size=TENT_BATCH),
        BN,
        "test-batch statistics at Tent's batch size: Tent's own baseline",
    ),
    Phase(
        "test_clean",
        {**TEST_SPLIT, "mode": "running,adapt", "corruption": "none"},
        BN,
        "the 10,000 test images, clean: adapting without a shift",
    ),
    Phase(
        "test_severity5",
        {**TEST_SPLIT, **corrupted("batch,tent", "5", batch_size=TENT_BATCH)},
        BN,
        "the 10,000 test images at severity 5: Tent against test-batch statistics at its "
        "batch size (Tent's comparison, 79 updates per corruption)",
    ),
)


def _report(given: ReportInput) -> ReportOutput:
    """The study's report (imported when asked for: it draws with matplotlib)."""
    from normbench.studies.domain_shift.report import domain_shift_report

    return domain_shift_report(given)


STUDY = Study(
    name="domain_shift",
    title="AdaBN, partial adaptation (Schneider et al.) and Tent under common corruptions",
    experiment="domain_shift",
    phases=PHASES,
    report=_report,
    results="results/domain_shift",
    scale="Fashion-MNIST, ResNet-50/VGG-16 at width 0.125, 1,000 steps of 64; 15 corruptions "
    "x 5 severities on 1,000 held-out images (severity-5 Tent and clean: 10,000 test images)",
)
