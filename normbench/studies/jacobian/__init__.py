"""Layer Jacobians (issue 20 §4; docs/papers.md §12): the singular values of the Jacobians
between consecutive norm-slot outputs of experiment=bn_fig1's sigmoid MLP, without a norm and
with BN, at initialisation and along training (``probes.jacobian``; jacobian.csv).

experiment=jacobian: 2 norms x 3 seeds = 6 runs of 5,000 steps. The claims (one per map,
:mod:`.claims`): the median |ln σ| (distance of the singular values from 1) is smaller with BN.
"""

from __future__ import annotations

from normbench.studies.study import ReportInput, ReportOutput, Study

SCALE = "Fashion-MNIST, sigmoid MLP 784-100-100-100-10, 5,000 steps of 60, no norm and BN, 3 seeds"


def report(given: ReportInput) -> ReportOutput:
    """The README and claims."""
    from normbench.studies.jacobian.report import jacobian_report

    text, claims = jacobian_report(given.runs, given.out_dir, SCALE)
    return ReportOutput(text, claims)


STUDY = Study(
    name="jacobian",
    title="BN paper §3.4: layer Jacobians' singular values stay nearer 1 with BN",
    experiment="jacobian",
    report=report,
    results="results/jacobian",
    scale=SCALE,
)
