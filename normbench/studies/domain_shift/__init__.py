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

Two sizes of the same grid (``normbench study plan domain_shift [--variant full]`` prints the
counts):

- the main setting, sized for about an hour on 2 CPU cores: three source models (ResNet-50 BN,
  VGG-16 BN, ResNet-50 GN) x 3 seeds; severities 1, 3 and 5; Tent and its test-batch reference
  at severity 5; the k and N curves on one corruption of each family (noise, blur, weather,
  digital) at fewer points;
- ``full``: the six source models (and LN, FRN, Batch Renorm) x 3 seeds, every severity 1..5,
  the curves on all 15 corruptions, and Tent's comparison on the 10,000 test images at severity
  5 with 79 updates per corruption (about 7 h on 2 cores). Its runs are its own
  (``runs/domain_shift_full/``): the main report never reads evaluations it did not ask for.
"""

from __future__ import annotations

from normbench.data.corruptions.names import CORRUPTIONS
from normbench.report.collect import Run
from normbench.studies.study import (
    Phase,
    ReportInput,
    ReportOutput,
    Study,
    Variant,
    uses_batch_statistics,
)

ALL = ",".join(CORRUPTIONS)
SEVERITIES = "1,2,3,4,5"
K_SAMPLES = "1,2,4,8,16,32,64,128,256,512,1000"  # AdaBN's k curve (severity 3)
N_PRIORS = "0,1,2,4,8,16,32,64,128,256"  # partial adaptation's N curve (batch 8, severity 3)
# The main setting's smaller grid (the full one is the variant `full`)
MAIN_SEVERITIES = "1,3,5"
MAIN_K_SAMPLES = "1,4,16,64,256,1000"
MAIN_N_PRIORS = "0,1,4,16,64,256"
ONE_PER_FAMILY = "gaussian_noise,defocus_blur,fog,contrast"  # noise, blur, weather, digital
# the full variant's source models (the main setting's three: configs/experiment/domain_shift.yaml)
ALL_SOURCES = "resnet_batch,vgg_batch,resnet_group,resnet_layer,resnet_frn,resnet_batch_renorm"
KL_DATA = "none,gaussian_noise,contrast,fog"
TENT_BATCH = "128"  # Tent's batch size on small datasets (normbench/evaluation/tent.py)
TEST_SPLIT = {"data.val_split": "test"}  # the official 10,000-image test split


def batch_free(run: Run) -> bool:
    """The runs whose norm uses no batch statistics (GN, LN, FRN), as summary.json records."""
    return not uses_batch_statistics(run)


def corrupted(
    modes: str, severity: str = SEVERITIES, corruptions: str = ALL, **knobs: str
) -> dict[str, str]:
    """The eval grid of ``modes`` (and ``knobs``) on ``corruptions`` at ``severity``."""
    return {"mode": modes, **knobs, "corruption": corruptions, "severity": severity}


BN = uses_batch_statistics
HELD_OUT = "the 1,000 held-out images"
FULL_PHASES = (
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


PHASES = (
    FULL_PHASES[0],  # clean
    Phase(
        "bn",
        corrupted("running,adapt,partial", MAIN_SEVERITIES),
        BN,
        f"runs with batch statistics: source, AdaBN and partial statistics on every corruption "
        f"at severities {MAIN_SEVERITIES}, {HELD_OUT}",
    ),
    Phase(
        "batch_free",
        corrupted("running,adapt", MAIN_SEVERITIES),
        batch_free,
        "runs without batch statistics: running and adapt (recorded as not applied)",
    ),
    Phase(
        "tent",
        corrupted("tent", "5", batch_size=TENT_BATCH),
        about="every run: Tent at severity 5 (batch 128, 8 updates per corruption)",
    ),
    Phase(
        "tent_reference",
        corrupted("batch", "5", batch_size=TENT_BATCH),
        BN,
        "test-batch statistics at Tent's batch size, severity 5: Tent's own baseline",
    ),
    Phase(
        "k_curve",
        corrupted("adapt", "3", ONE_PER_FAMILY, samples=MAIN_K_SAMPLES),
        BN,
        "AdaBN against the number of target samples k, at severity 3, one corruption per family",
    ),
    Phase(
        "n_curve",
        corrupted("partial", "3", ONE_PER_FAMILY, prior=MAIN_N_PRIORS, batch_size="8"),
        BN,
        "partial adaptation against the prior strength N, batches of 8, at severity 3, one "
        "corruption per family",
    ),
    FULL_PHASES[5],  # kl
    FULL_PHASES[7],  # test_clean
)
assert [p.name for p in (FULL_PHASES[0], FULL_PHASES[5], FULL_PHASES[7])] == [
    "clean",
    "kl",
    "test_clean",
]

FULL = Variant(
    "full",
    ("name=domain_shift_full", f"sweep/domain_shift_source={ALL_SOURCES}"),
    "results/domain_shift_full",
    about="six source models (+ LN, FRN, Batch Renorm), every severity 1..5, the curves on "
    "all 15 corruptions, Tent's comparison also on the 10,000 test images (about 7 h on 2 cores)",
    phases=FULL_PHASES,
)


STUDY = Study(
    name="domain_shift",
    title="AdaBN, partial adaptation (Schneider et al.) and Tent under common corruptions",
    experiment="domain_shift",
    phases=PHASES,
    variants={"full": FULL},
    report=_report,
    results="results/domain_shift",
    scale="Fashion-MNIST, ResNet-50/VGG-16 at width 0.125, 1,000 steps of 64; 15 corruptions "
    "x severities 1, 3, 5 on 1,000 held-out images (clean: also the 10,000 test images)",
)
