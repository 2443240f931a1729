"""Weight Normalization and Normalization Propagation against BN (issue 21; docs/papers.md §5,
§5.1, §5.2): the WN paper's CIFAR-10 comparison at reduced scale (ConvPool-CNN-C width 0.125 on
Fashion-MNIST: no norm, BN, WN, WN + mean-only BN, NormProp), WN's data-dependent init on and
off, its log-scale gain and bound on ‖v‖ at the paper's and at 10 × its learning rate, batch
size 1, and WN in ResNet-50 against BN with five changes tried one at a time.

experiment=weightnorm_normprop: 23 settings (configs/sweep/weightnorm_normprop_setting/) × 3
seeds = 69 runs. No evaluation phase: the runs validate on the 10,000 test images (nothing is
tuned on them). The claims: :mod:`.claims`. Per-step cost, interleaved: ``normbench bench
train --model convpool`` (results/bench/convpool).

Variant ``cifar``: the paper's scale for its own comparison (CIFAR-10, ConvPool-CNN-C at full
width, batch 100, 200 epochs = 100,000 steps; the twelve ``cp_*`` settings, 36 runs): a GPU's
work. The batch-1 and ResNet-50 settings are the default's only.
"""

from __future__ import annotations

from normbench.studies.study import ReportInput, ReportOutput, Study, Variant
from normbench.studies.weightnorm_normprop.points import AXIS, LABEL

SCALE = (
    "Fashion-MNIST (10,000 test images); ConvPool-CNN-C width 0.125, 1,200 steps of 100 (Adam), "
    "and 6,000 steps of 1; ResNet-50 width 0.125, 600 steps of 64 (SGD); 3 seeds"
)
SCALE_CIFAR = (
    "CIFAR-10 (10,000 test images); ConvPool-CNN-C at full width, 100,000 steps of 100 (200 "
    "epochs, Adam); 3 seeds"
)
#: The scale table's rows: (networks, data, training) per setting.
ROWS = {
    None: (
        "ConvPool-CNN-C at width 0.125 (12 and 24 channels; input noise, dropout and leaky "
        "ReLU as in the paper); ResNet-50 width 0.125, CIFAR stem",
        "Fashion-MNIST (28×28 grey: maps 28 → 14 → 7 → 5 instead of 32 → 16 → 8 → 6), "
        "standardized; the error on the 10,000 test images",
        "ConvPool: Adam lr 0.003, batch 100, 1,200 steps (2 epochs), linear decay over the "
        "second half; batch 1: lr 0.0003, 6,000 steps; lr × 10: 0.03. ResNet-50: SGD lr 0.025, "
        "momentum 0.9, batch 64, 600 steps, /10 at 50/75/90%",
    ),
    "cifar": (
        "ConvPool-CNN-C at full width (96 and 192 channels)",
        "CIFAR-10, standardized per channel (the paper: ZCA whitening), no augmentation",
        "Adam lr 0.003, batch 100, 100,000 steps (200 epochs), linear decay over the second "
        "half; lr × 10: 0.03",
    ),
}


def report(given: ReportInput) -> ReportOutput:
    """The README and claims."""
    from normbench.studies.weightnorm_normprop.report import weightnorm_normprop_report

    variant = given.variant.name if given.variant is not None else None
    scale = SCALE_CIFAR if variant == "cifar" else SCALE
    text, claims = weightnorm_normprop_report(given.runs, given.out_dir, scale, ROWS[variant])
    return ReportOutput(text, claims)


VARIANTS = {
    "cifar": Variant(
        "cifar",
        (
            "name=weightnorm_normprop_cifar",
            f"{AXIS}={','.join(s for s in LABEL if s.startswith('cp_'))}",
            "dataset=cifar10",
            "model.width=1.0",
            "trainer.steps=100000",
            "trainer.eval_every=5000",
            "trainer.log_every=1000",
            "trainer.ckpt_every=5000",
            "probes.every=5000",
        ),
        "results/weightnorm_normprop_cifar",
        about="the paper's scale: CIFAR-10, ConvPool-CNN-C at full width, 100,000 steps of 100 "
        "(200 epochs); the twelve cp_* settings, 3 seeds (GPU)",
    )
}

STUDY = Study(
    name="weightnorm_normprop",
    title="Salimans & Kingma, Arpit et al.: WN and NormProp against BN, batch 1, ResNet-50",
    experiment="weightnorm_normprop",
    report=report,
    results="results/weightnorm_normprop",
    scale=SCALE,
    variants=VARIANTS,
)
