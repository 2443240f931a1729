"""Online learning (issue 19, part 3): batches that arrive one at a time or in groups of changing
size (experiment=online: BN, Batch Renorm, GN, LN, FRN x a fixed batch of 32, sizes uniform in
[2, 64], a stream of small batches [2, 8] x 3 seeds; the MLP of experiment=bn_fig1, every run
on the same 1,180,000 images, lr scaled with each batch's size).

Variants (each its own results folder, the same claim keys):

- ``with_one``: adds sizes [1, 8] (15 runs; the main setting's 45 are reused, same run name):
  BN's and BRN's batches of one image are skipped and counted.
- ``fixed_lr``: ``batching.lr_scaling=fixed`` (the schedule's lr whatever the batch size), its
  own runs (``runs/online_fixed_lr``).
- ``resnet``: the full-scale setting, experiment=online_resnet: the width-0.125 ResNet-50 with
  the CIFAR stem of experiment=small_batch, the four batchings, 118,000 images per run (about
  7-8 h on 2 cores).

Evaluation phase ``test``: every run's final weights on the 10,000 test images (running
statistics), the claims' number.
"""

from __future__ import annotations

from normbench.studies.study import Phase, ReportInput, ReportOutput, Study, Variant

TEST = Phase(
    "test",
    {"mode": "running", "data.val_split": "test"},
    about="every run: error on the 10,000 test images of the final weights (the claims' number)",
)

VARIANTS = {
    "with_one": Variant(
        "with_one",
        ("sweep/online_batching=fixed,varying,small,with_one",),
        "results/online_with_one",
        about="adds sizes [1, 8] (batches of one image: skipped for BN and BRN); reuses the main "
        "setting's 45 runs, 15 new (about 45 min on 2 cores)",
    ),
    "fixed_lr": Variant(
        "fixed_lr",
        ("name=online_fixed_lr", "batching.lr_scaling=fixed"),
        "results/online_fixed_lr",
        about="the lr of the schedule whatever the batch size (batching.lr_scaling=fixed), "
        "45 runs of their own (about an hour on 2 cores)",
    ),
    "resnet": Variant(
        "resnet",
        (
            "experiment=online_resnet",
            "name=online_resnet",
            "sweep/online_batching=resnet_fixed,resnet_varying,resnet_small,resnet_with_one",
        ),
        "results/online_resnet",
        about="full scale: ResNet-50 width 0.125 (CIFAR stem), sizes 32 / [2, 64] / [2, 8] / "
        "[1, 8], 118,000 images per run, 60 runs (about 7-8 h on 2 cores)",
    ),
}


def report(given: ReportInput) -> ReportOutput:
    """The setting's README and claims (imported when asked for: it draws with matplotlib)."""
    from normbench.studies.online.report import online_report

    if not given.runs:
        return ReportOutput("# Online study: no run of this setting\n")
    text, claims = online_report(given.runs, given.out_dir)
    return ReportOutput(text, claims)


STUDY = Study(
    name="online",
    title="Online learning: BN, BRN, GN, LN, FRN under batches of changing or small size",
    experiment="online",
    report=report,
    phases=(TEST,),
    variants=VARIANTS,
    results="results/online",
    scale="Fashion-MNIST (10,000 test images), 3x100 sigmoid MLP, 1,180,000 images per run "
    "(20 epochs), lr scaled with the batch size, 3 seeds",
)
