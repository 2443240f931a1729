"""BN's learned scale and shift (issue 20 §3; docs/papers.md §12): BN with and without γ/β
(``norm.affine``) in experiment=bn_fig1's sigmoid MLP and ResNet-50 width 0.125; the error, and
how far the learned γ and β move from 1 and 0 (params.csv, ``probes.params``).

experiment=gamma_beta: 4 settings (configs/sweep/gamma_beta_setting/) x 3 seeds = 12 runs.
No evaluation phase: the runs validate on the 10,000 test images (nothing is tuned on them).
"""

from __future__ import annotations

from normbench.studies.study import ReportInput, ReportOutput, Study

SCALE = (
    "Fashion-MNIST (10,000 test images), sigmoid MLP 784-100-100-100-10 (5,000 steps of 60) and "
    "ResNet-50 width 0.125 (1,500 steps of 64), BN with and without γ/β, 3 seeds"
)


def report(given: ReportInput) -> ReportOutput:
    """The README and claims."""
    from normbench.studies.gamma_beta.report import gamma_beta_report

    text, claims = gamma_beta_report(given.runs, given.out_dir, SCALE)
    return ReportOutput(text, claims)


STUDY = Study(
    name="gamma_beta",
    title="BN's γ and β: does removing them cost error, and do they move from 1 and 0?",
    experiment="gamma_beta",
    report=report,
    results="results/gamma_beta",
    scale=SCALE,
)
