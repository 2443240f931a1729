"""VGG-16 feature distributions (issue 20 §5; docs/papers.md §12): the BN paper's Figure 1(b, c)
percentile plot for the intermediate conv layers of VGG-16 width 0.125, without and with BN
(experiment=vgg16_activations: 2 norms x 3 seeds = 6 runs of 3,000 steps).
No evaluation phase: the runs validate on the 10,000 test images (nothing is tuned on them).
"""

from __future__ import annotations

from normbench.studies.study import ReportInput, ReportOutput, Study

SCALE = "Fashion-MNIST, VGG-16 width 0.125 (CIFAR stem), 3,000 steps of 60, no BN and BN, 3 seeds"


def report(given: ReportInput) -> ReportOutput:
    """The README and claims."""
    from normbench.studies.vgg16_activations.report import vgg16_activations_report

    text, claims = vgg16_activations_report(given.runs, given.out_dir, SCALE)
    return ReportOutput(text, claims)


STUDY = Study(
    name="vgg16_activations",
    title="VGG-16's intermediate conv inputs: percentiles drift without BN, stay with it",
    experiment="vgg16_activations",
    report=report,
    results="results/vgg16_activations",
    scale=SCALE,
)
