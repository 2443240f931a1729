"""Inference at small batch sizes (docs/papers.md §11): error against the evaluation batch size
b = 1, 2, 4, ..., 256 in eval mode and with each test batch's own statistics, for models trained
with BN, Batch Renorm, GN, LN and FRN (experiment=inference_batch: ResNet-50 width 0.125 on
Fashion-MNIST, 1,000 steps, 3 seeds; about an hour on 2 cores).

Variants (each its own run name and results folder, the same claim keys):

- ``full``: 5,000 steps (5.4 epochs) and every evaluation on the 10,000 test images instead of
  the 1,000 held-out ones (about 5 h on 2 cores).
- ``mlp``: the BN paper's 3x100 sigmoid MLP (experiment=inference_batch_mlp), where train-mode
  BN at b = 1 is undefined (one value per channel): eval records it ``undefined`` and the report
  says so. BN, BRN, GN and LN (FRN, with one value per channel, divides each value by its own
  magnitude and does not train). Minutes.

Evaluation phases: ``eval_mode`` (every run: mode=running at every b), ``batch_stats`` (runs whose
summary.json says their norm uses batch statistics: mode=batch at every b) and ``batch_free``
(the others: mode=batch at b = 1, recorded as not applied: the b = 1 table's "by construction").
The claim on folded BN reads ``normbench bench inference``'s results/bench/inference-cpu.csv;
the study never runs the benchmark.
"""

from __future__ import annotations

from normbench.report.collect import Run
from normbench.studies.inference_batch.points import BATCHES
from normbench.studies.study import (
    Phase,
    ReportInput,
    ReportOutput,
    Study,
    Variant,
    uses_batch_statistics,
)

B = ",".join(map(str, BATCHES))


def batch_free(run: Run) -> bool:
    """The runs whose norm uses no batch statistics (GN, LN, FRN), as summary.json records."""
    return not uses_batch_statistics(run)


def phases(split: str | None = None) -> tuple[Phase, ...]:
    """The evaluation phases, on the run's validation split or on ``split`` (e.g. test)."""
    data = {"data.val_split": split} if split else {}
    where = f"the {split} split" if split else "the run's held-out images"
    return (
        Phase(
            "eval_mode",
            {"mode": "running", "batch_size": B, **data},
            about=f"every run: eval mode (running statistics) in batches of b = {B}, on {where}",
        ),
        Phase(
            "batch_stats",
            {"mode": "batch", "batch_size": B, **data},
            select=uses_batch_statistics,
            about="runs using batch statistics: each test batch of b images normalized by its "
            f"own statistics (i.i.d. batches in a fixed random order), b = {B}",
        ),
        Phase(
            "batch_free",
            {"mode": "batch", "batch_size": "1", **data},
            select=batch_free,
            about="runs without batch statistics: mode=batch at b = 1, recorded as not applied "
            "(their training forward is their eval forward)",
        ),
    )


VARIANTS = {
    "full": Variant(
        "full",
        (
            "name=inference_batch_full",
            "trainer.steps=5000",
            "trainer.eval_every=500",
            "trainer.ckpt_every=1000",
        ),
        "results/inference_batch_full",
        about="5,000 steps (5.4 epochs), every evaluation on the 10,000 test images (about 5 h "
        "on 2 cores)",
        phases=phases("test"),
    ),
    "mlp": Variant(
        "mlp",
        (
            "experiment=inference_batch_mlp",
            "name=inference_batch_mlp",
            "sweep/inference_batch_norm=batch,batch_renorm,group,layer",
        ),
        "results/inference_batch_mlp",
        about="the BN paper's 3x100 sigmoid MLP, 5,000 steps of 60: train-mode BN at b = 1 is "
        "undefined (minutes)",
    ),
}


def report(given: ReportInput) -> ReportOutput:
    """The setting's README and claims."""
    from normbench.studies.inference_batch.report import inference_batch_report

    split = next(
        (
            p.grid["data.val_split"]
            for p in given.study.phases_of(given.variant)
            if p.grid.get("data.val_split")
        ),
        None,
    )
    text, claims = inference_batch_report(given.runs, given.out_dir, split)
    return ReportOutput(text, claims)


STUDY = Study(
    name="inference_batch",
    title="Inference at small batches: error vs evaluation batch size b, eval mode and "
    "test-batch statistics, for BN, BRN, GN, LN, FRN; folded BN at b = 1",
    experiment="inference_batch",
    report=report,
    phases=phases(),
    variants=VARIANTS,
    results="results/inference_batch",
    scale="Fashion-MNIST (1,000 held-out images), ResNet-50 width 0.125, 1,000 steps of 64, "
    "3 seeds",
)
