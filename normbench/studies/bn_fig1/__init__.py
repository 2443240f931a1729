"""BN paper Figure 1: a 3x100 sigmoid MLP with and without BN (experiment=bn_fig1).

Variant ``lr``: the same network at four learning rates, 10,000 steps (results/bn_fig1_lr),
for the paper's "BN allows a higher learning rate".
"""

from __future__ import annotations

from normbench.report.make import write_generic_report
from normbench.report.output import write_tables
from normbench.studies.bn_fig1.claims import (
    fewer_steps_claim,
    higher_lr_claim,
    higher_throughout_claim,
    stabler_claim,
)
from normbench.studies.bn_fig1.report import lr_figure, write_bn_fig1_report
from normbench.studies.study import CLAIMS_HERE, ReportInput, ReportOutput, Study, Variant

SCALE = "Fashion-MNIST (10,000 test images), 3x100 sigmoid MLP, 50,000 steps of 60, 3 seeds"
LR_SCALE = "Fashion-MNIST (10,000 test images), 3x100 sigmoid MLP, 10,000 steps of 60, 3 seeds"


def report(given: ReportInput) -> ReportOutput:
    """Figure 1 and its three claims (the lr variant: error per learning rate, one claim)."""
    runs = [r for r in given.runs if r.status == "complete"]
    if given.variant is not None:
        claim, table = higher_lr_claim(runs, LR_SCALE)
        write_tables({"lr_errors": table}, given.out_dir)
        lr_figure(table, given.out_dir / "lr_errors.png")
        text = write_generic_report(given.runs, given.dirs, given.out_dir).replace(
            "![](val_error.png)",
            "![final test error against the learning rate](lr_errors.png)\n\n"
            + CLAIMS_HERE
            + "\nValidation error of every run (one line per run):\n\n![](val_error.png)",
            1,
        )
        return ReportOutput(text, [claim])
    text = write_bn_fig1_report(given.runs, given.dirs, given.out_dir)
    speed, per_seed = fewer_steps_claim(runs, SCALE)
    write_tables({"steps_per_seed": per_seed}, given.out_dir)
    claims = [speed, higher_throughout_claim(runs, SCALE), stabler_claim(runs, SCALE)]
    return ReportOutput(text, claims)


STUDY = Study(
    name="bn_fig1",
    title="BN paper Fig. 1: sigmoid MLP with and without BN, test accuracy and activation percentiles",
    experiment="bn_fig1",
    report=report,
    results="results/bn_fig1",
    scale=SCALE,
    variants={
        "lr": Variant(
            "lr",
            (
                "name=bn_fig1_lr",
                "optim.lr=0.1,0.5,1.0,2.0",
                "trainer.steps=10000",
                "trainer.ckpt_every=5000",
            ),
            "results/bn_fig1_lr",
            about="four learning rates x {no BN, BN} x 3 seeds, 10,000 steps",
        )
    },
)
