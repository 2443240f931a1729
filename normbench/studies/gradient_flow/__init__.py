"""Gradient flow across depth (issue 20 §2; docs/papers.md §12): the first hidden layer's weight
gradient relative to the last's, in sigmoid MLPs of 3 to 20 layers without a norm and with BN,
LN and GN (the BN paper: BN keeps the gradient from vanishing), and at initialisation in ReLU
and tanh MLPs of 3 to 50 layers with BN (Yang et al. 2019: it explodes with depth).

experiment=gradient_flow: 4 depths x 4 norms x 3 seeds = 48 runs of 3,000 steps; params.csv
records every parameter's gradient norm every 50 steps.

Variant ``init``: ReLU and tanh, 5 depths, BN and no norm, 5 seeds, one step each (100 runs).
No evaluation phase: the runs validate on the 10,000 test images (nothing is tuned on them).
"""

from __future__ import annotations

from normbench.studies.study import ReportInput, ReportOutput, Study, Variant

SCALE = (
    "Fashion-MNIST (10,000 test images), sigmoid MLPs of 3, 6, 10, 20 hidden layers of 100, "
    "3,000 steps of 60, SGD lr 0.5, 3 seeds"
)
INIT_SCALE = (
    "Fashion-MNIST, ReLU and tanh MLPs of 3, 6, 10, 20, 50 hidden layers of 100, the gradient "
    "of one batch of 60 at the initial weights, 5 seeds"
)

VARIANTS = {
    "init": Variant(
        "init",
        (
            "name=gradient_flow_init",
            "trainer.steps=1",
            "trainer.eval_every=1",
            "trainer.log_every=1",
            "probes.every=1",
            "model.activation=relu,tanh",
            "sweep/gradient_flow_depth=d3,d6,d10,d20,d50",
            "sweep/gradient_flow_norm=none,batch",
            "seed=0,1,2,3,4",
        ),
        "results/gradient_flow_init",
        about="the gradient at the initial weights: ReLU and tanh, depths 3-50, BN and no norm, "
        "5 seeds, one step each",
    )
}


def report(given: ReportInput) -> ReportOutput:
    """The setting's README and claims."""
    from normbench.studies.gradient_flow.report import gradient_flow_report

    init = given.variant is not None and given.variant.name == "init"
    text, claims = gradient_flow_report(
        given.runs, given.out_dir, INIT_SCALE if init else SCALE, init
    )
    return ReportOutput(text, claims)


STUDY = Study(
    name="gradient_flow",
    title="Gradient flow: without BN a deep sigmoid MLP's first layers lose their gradient; "
    "with BN they do not; at init BN's gradients explode with depth",
    experiment="gradient_flow",
    report=report,
    variants=VARIANTS,
    results="results/gradient_flow",
    scale=SCALE,
)
