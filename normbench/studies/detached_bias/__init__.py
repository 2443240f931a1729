"""The BN paper's §2 counter-example (Ioffe & Szegedy 2015; docs/papers.md §12): a learned bias
b in front of a normalization whose batch statistics are constants in the gradient step grows
without bound, while with the statistics inside the gradient it does not move; with the
variance detached too, the weights grow.

experiment=detached_bias: 6 settings (configs/sweep/detached_bias_setting/) x 3 seeds:
one normalized layer and the 3-layer sigmoid MLP with mean-only BN (mean attached / detached),
VGG-16 width 0.125 with BN / BN with detached statistics; every weight layer keeps its bias;
params.csv records |b| and |W| every 100 steps. 11 min at jobs=2 on 2 cores (2026-12-06).

Variant ``full``: 30,000 steps in every setting (about 4.5 h at jobs=2 on 2 cores, VGG's).
No evaluation phase: the runs validate on the 10,000 test images (nothing is tuned on them).
"""

from __future__ import annotations

from normbench.studies.study import ReportInput, ReportOutput, Study, Variant

SCALE = (
    "Fashion-MNIST (10,000 test images), sigmoid MLPs 784-100-10 and 784-100-100-100-10 "
    "(5,000 steps of 60) and VGG-16 width 0.125 (3,000 steps of 60), plain SGD, 3 seeds"
)

VARIANTS = {
    "full": Variant(
        "full",
        (
            "name=detached_bias_full",
            "trainer.steps=30000",
            "trainer.eval_every=1000",
            "trainer.log_every=1000",
            "trainer.ckpt_every=5000",
        ),
        "results/detached_bias_full",
        about="30,000 steps in every setting (6x the MLPs' 5,000, 10x VGG's 3,000)",
    )
}


def report(given: ReportInput) -> ReportOutput:
    """The setting's README and claims."""
    from normbench.studies.detached_bias.report import detached_bias_report

    scale = SCALE if given.variant is None else SCALE + " (" + given.variant.about + ")"
    text, claims = detached_bias_report(given.runs, given.out_dir, scale)
    return ReportOutput(text, claims)


STUDY = Study(
    name="detached_bias",
    title="BN paper §2: a bias before a norm with detached statistics grows without bound; "
    "with them in the gradient it stays",
    experiment="detached_bias",
    report=report,
    variants=VARIANTS,
    results="results/detached_bias",
    scale=SCALE,
)
