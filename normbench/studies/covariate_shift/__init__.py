"""Internal covariate shift and the landscape along the step (issue 20 §6; docs/papers.md §12):
no norm, BN and noisy BN (``norm=noisy_batch``: shift injected on purpose, Santurkar et al.
2018) in experiment=bn_fig1's sigmoid MLP and VGG-16 width 0.125; the error, the gradient's
change and the loss range along the step, and each layer's input shift per step
(``probes.smoothness``).

experiment=covariate_shift: 2 models x 3 norms x 3 seeds = 18 runs of 3,000 steps. No evaluation
phase: the runs validate on the 10,000 test images (nothing is tuned on them). The claims:
:mod:`.claims`.
"""

from __future__ import annotations

from normbench.studies.study import ReportInput, ReportOutput, Study

SCALE = (
    "Fashion-MNIST (10,000 test images), sigmoid MLP 784-100-100-100-10 and VGG-16 width 0.125, "
    "3,000 steps of 60, no norm / BN / noisy BN, 3 seeds"
)


def report(given: ReportInput) -> ReportOutput:
    """The README and claims."""
    from normbench.studies.covariate_shift.report import covariate_shift_report

    text, claims = covariate_shift_report(given.runs, given.out_dir, SCALE)
    return ReportOutput(text, claims)


STUDY = Study(
    name="covariate_shift",
    title="Santurkar et al.: noisy BN trains like BN; BN makes the gradient more predictive",
    experiment="covariate_shift",
    report=report,
    results="results/covariate_shift",
    scale=SCALE,
)
