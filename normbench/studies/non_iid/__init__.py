"""Batch Renormalization's non-i.i.d. minibatches (Ioffe 2017; docs/papers.md §3.2, §11): BN,
BRN and GN trained on batches of 2 classes x 16 images (``batching.classes=2``) against the same
norm trained on i.i.d. batches (``batching.classes=null``), same batch size (32) and steps
(experiment=non_iid: ResNet-50 width 0.125 on Fashion-MNIST, 1,500 steps, 3 seeds; about an
hour on 2 cores).

Variant ``full``: 5,000 steps (2.7 epochs) instead of 1,500, its own runs and results folder
(about 3 h on 2 cores).

Evaluation phases, on the 10,000 test images: ``test`` (every run: the running statistics) and
``test_batch`` (runs whose summary.json says their norm uses batch statistics: each test batch's
own statistics at the training batch size, the test batches i.i.d.: a fixed random order of the
test images, whatever the training batches were).
"""

from __future__ import annotations

from normbench.studies.study import (
    Phase,
    ReportInput,
    ReportOutput,
    Study,
    Variant,
    uses_batch_statistics,
)

SPLIT = "test"
TEST = Phase(
    "test",
    {"mode": "running", "data.val_split": SPLIT},
    about="every run: the final weights on the 10,000 test images, running statistics",
)
TEST_BATCH = Phase(
    "test_batch",
    {"mode": "batch", "data.val_split": SPLIT},
    select=uses_batch_statistics,
    about="runs using batch statistics: each test batch's own statistics at the training batch "
    "size (i.i.d. test batches: the test images in a fixed random order)",
)

VARIANTS = {
    "full": Variant(
        "full",
        (
            "name=non_iid_full",
            "trainer.steps=5000",
            "trainer.eval_every=500",
            "trainer.ckpt_every=1000",
        ),
        "results/non_iid_full",
        about="5,000 steps of 32 (2.7 epochs) instead of 1,500 (about 3 h on 2 cores)",
    )
}


def report(given: ReportInput) -> ReportOutput:
    """The setting's README and claims."""
    from normbench.studies.non_iid.report import non_iid_report

    text, claims = non_iid_report(given.runs, given.out_dir, SPLIT)
    return ReportOutput(text, claims)


STUDY = Study(
    name="non_iid",
    title="Batch Renorm paper: BN, BRN, GN trained on non-i.i.d. batches (2 classes x 16) vs "
    "i.i.d.; moving averages vs test-batch statistics",
    experiment="non_iid",
    report=report,
    phases=(TEST, TEST_BATCH),
    variants=VARIANTS,
    results="results/non_iid",
    scale="Fashion-MNIST (10,000 test images), ResNet-50 width 0.125, 1,500 steps of 32, "
    "non-i.i.d. = 2 classes x 16, 3 seeds",
)
