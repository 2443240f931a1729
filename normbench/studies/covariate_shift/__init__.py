"""Internal covariate shift and the landscape along the step (issue 20 §6; docs/papers.md §12):
no norm, BN and noisy BN (``norm=noisy_batch``: shift injected on purpose, Santurkar et al.
2018) in experiment=bn_fig1's sigmoid MLP and VGG-16 width 0.125; the error, the gradient's
change and the loss range along the step, and each layer's input shift per step
(``probes.smoothness``).

experiment=covariate_shift: 2 models x 3 norms x 3 seeds = 18 runs of 3,000 steps. No evaluation
phase: the runs validate on the 10,000 test images (nothing is tuned on them). The claims:
:mod:`.claims`.

Variant ``cifar``: the paper's setting, VGG-16 at full width on CIFAR-10 (batch 128, 50 epochs;
probes every 500 steps), no norm / BN / noisy BN, 3 seeds: a GPU's work (9 runs).
"""

from __future__ import annotations

from normbench.studies.study import ReportInput, ReportOutput, Study, Variant

SCALE = (
    "Fashion-MNIST (10,000 test images), sigmoid MLP 784-100-100-100-10 and VGG-16 width 0.125, "
    "3,000 steps of 60, no norm / BN / noisy BN, 3 seeds"
)
SCALE_CIFAR = (
    "CIFAR-10 (10,000 test images), VGG-16 at full width, 19,550 steps of 128 (50 epochs), "
    "no norm / BN / noisy BN, 3 seeds"
)
#: The scale table's rows: (network, data and steps, step sizes) per setting.
ROWS = {
    None: (
        "experiment=bn_fig1's sigmoid MLP (SGD lr 0.5); VGG-16 width 0.125, CIFAR stem (SGD lr "
        "0.01 momentum 0.9)",
        "Fashion-MNIST, batch 60, 3,000 steps (3 epochs); the error on the 10,000 test images",
        "MLP 0.5, 1, 2, 4 × lr; VGG 1, 3, 10, 30 × lr (momentum 0.9: a steady step is about "
        "10 × lr × g)",
    ),
    "cifar": (
        "VGG-16 at full width, CIFAR stem (SGD lr 0.01 momentum 0.9)",
        "CIFAR-10, batch 128, 19,550 steps (50 epochs); the error on the 10,000 test images",
        "1, 3, 10, 30 × lr (momentum 0.9: a steady step is about 10 × lr × g)",
    ),
}


def report(given: ReportInput) -> ReportOutput:
    """The README and claims."""
    from normbench.studies.covariate_shift.report import covariate_shift_report

    variant = given.variant.name if given.variant is not None else None
    scale = SCALE_CIFAR if variant == "cifar" else SCALE
    text, claims = covariate_shift_report(given.runs, given.out_dir, scale, ROWS[variant])
    return ReportOutput(text, claims)


VARIANTS = {
    "cifar": Variant(
        "cifar",
        (
            "name=covariate_shift_cifar",
            "dataset=cifar10",
            "dataset.batch_size=128",
            "sweep/covariate_shift_model=vgg",
            "model.width=1.0",
            "trainer.steps=19550",
            "trainer.eval_every=1955",
            "trainer.log_every=391",
            "trainer.ckpt_every=1955",
            "probes.every=500",
            "probes.smoothness=500",
        ),
        "results/covariate_shift_cifar",
        about="the paper's setting: VGG-16 at full width on CIFAR-10, batch 128, 50 epochs "
        "(19,550 steps), probes every 500 steps; no norm, BN, noisy BN, 3 seeds (GPU)",
    )
}

STUDY = Study(
    name="covariate_shift",
    title="Santurkar et al.: noisy BN trains like BN; BN makes the gradient more predictive",
    experiment="covariate_shift",
    report=report,
    results="results/covariate_shift",
    scale=SCALE,
    variants=VARIANTS,
)
