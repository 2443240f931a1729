"""GN paper Figure 1 / Table 2 at reduced scale: error against images per device N
(experiment=small_batch: BN, GN, LN, IN, Batch Renorm; N = 32 … 2; 3 seeds).

Variants (each its own run name and results folder, the same claim keys):

- ``long``: experiment small_batch_long, 2,000 steps (2.2 epochs) instead of 250 (0.27), BN and
  GN at N = 32 and 2 (about an hour on 2 cores; the whole 5 x 5 grid is about 10 h: give the
  axes on the command line, see configs/experiment/small_batch_long.yaml).
- ``real``: per_device.mode=real with 2 simulated devices: the batch is 2N, lr and steps scale
  with it (equal epochs), as the paper's 8 GPUs x N; BN and GN at N = 32, 8, 2.
- ``ddp``: N images on each of 2 torchrun processes (per_device.mode=ddp) beside the same on one
  process (per_device.mode=real, 2 simulated devices), BN and synchronized BN, N = 32, 16, 8.

Evaluation phases: ``test`` (every run: the final weights on the 10,000 test images, the
claims' number) and ``bn_stats`` (runs whose summary.json says their norm uses batch
statistics: running, Precise-BN and batch statistics on the held-out images).
"""

from __future__ import annotations

from normbench.report.collect import Run
from normbench.studies.small_batch.points import device_mode
from normbench.studies.study import (
    CLAIMS_HERE,
    Phase,
    ReportInput,
    ReportOutput,
    Study,
    Variant,
    uses_batch_statistics,
)

TEST = Phase(
    "test",
    {"mode": "running", "data.val_split": "test"},
    about="every run: error on the 10,000 test images of the final weights (the claims' number)",
)
BN_STATS = Phase(
    "bn_stats",
    {"mode": "running,precise,batch", "samples": "10000"},
    select=uses_batch_statistics,
    about="runs using batch statistics: running vs Precise BN (10,000 training images) vs the "
    "evaluated batch's own statistics at the training batch size",
)

VARIANTS = {
    "long": Variant(
        "long",
        (
            "experiment=small_batch_long",
            "name=small_batch_long",
            "sweep/small_batch_norm=batch,group",
            "per_device.images=32,2",
        ),
        "results/small_batch_long",
        about="experiment small_batch_long: 2,000 steps (2.2 epochs) instead of 250, BN and GN "
        "at N = 32 and 2",
    ),
    "real": Variant(
        "real",
        (
            "name=small_batch_real",
            "per_device.mode=real",
            "per_device.devices=2",
            "sweep/small_batch_norm=batch,group",
            "per_device.images=32,8,2",
        ),
        "results/small_batch_real",
        about="2 simulated devices of N images: batch 2N, lr and steps scaled (equal epochs), "
        "BN and GN at N = 32, 8, 2",
    ),
    "ddp": Variant(
        "ddp",
        (
            "name=small_batch_ddp",
            "per_device.mode=ddp,real",
            "per_device.devices=2",
            "sweep/small_batch_norm=batch,sync_batch",
            "per_device.images=32,16,8",
        ),
        "results/small_batch_ddp",
        about="N images on each of 2 torchrun processes (mode=ddp) beside 2 simulated devices "
        "on one process (mode=real); BN and synchronized BN at N = 32, 16, 8",
        processes=lambda job: 2 if job.get("per_device.mode") == "ddp" else 1,
    ),
}
#: The per_device.mode each setting's report takes (runs of another mode are left out).
MODES = {None: ("ghost",), "long": ("ghost",), "real": ("real",), "ddp": ("ddp", "real")}


def run_name(study: Study, variant: Variant | None) -> str:
    """The ``name`` the runs of a setting record."""
    if variant is None:
        return study.name
    return next(o.split("=", 1)[1] for o in variant.overrides if o.startswith("name="))


def belongs(run: Run, study: Study, variant: Variant | None) -> bool:
    """Whether ``run`` is of this setting: its recorded name and per_device.mode."""
    key = variant.name if variant else None
    return run.name == run_name(study, variant) and device_mode(run) in MODES[key]


def report(given: ReportInput) -> ReportOutput:
    """The setting's README and claims, and what the other settings found for the same claims."""
    from normbench.studies.small_batch.ddp import ddp_report
    from normbench.studies.small_batch.report import small_batch_report
    from normbench.studies.small_batch.scales import other_scale_lines

    runs = [r for r in given.runs if belongs(r, given.study, given.variant)]
    left_out = [
        f"- {r.path} (name={r.name}, per_device.mode={device_mode(r)})"
        for r in given.runs
        if not belongs(r, given.study, given.variant)
    ]
    if not runs:
        text = f"# Small-batch study ({run_name(given.study, given.variant)}): no run of this setting\n"
        return ReportOutput(text + "\n".join(["", *left_out]) + "\n")
    make = (
        ddp_report
        if given.variant is not None and given.variant.name == "ddp"
        else small_batch_report
    )
    text, claims = make(runs, given.out_dir, left_out)
    others = "\n".join(other_scale_lines(given.study, given.out_dir, claims))
    return ReportOutput(text.replace(CLAIMS_HERE, f"{CLAIMS_HERE}\n{others}\n"), claims)


STUDY = Study(
    name="small_batch",
    title="GN paper Fig. 1 / Table 2: error vs images per device for BN, GN, LN, IN, Batch Renorm",
    experiment="small_batch",
    report=report,
    phases=(TEST, BN_STATS),
    variants=VARIANTS,
    results="results/small_batch",
    scale="Fashion-MNIST (10,000 test images), ResNet-50 width 0.125, 3 seeds",
)
