"""Recurrent networks (issue 22; docs/papers.md §13): BN across time steps against Layer Norm in
an LSTM reading Fashion-MNIST row by row (``model=lstm``): no norm (torch.nn.LSTM), BN vertical
only, BN horizontal with shared or per-step statistics, LN; the test error against steps, the
gradient ‖∂L/∂h_t‖ against t (``probes.hidden_grads``), the spread over seeds and the time per
step.

experiment=recurrent: 5 options (configs/sweep/recurrent_option/) x 3 seeds = 15 runs of 10,000
steps. No evaluation phase: the runs validate on the 10,000 test images (nothing is tuned on
them). The claims: :mod:`.claims`.

Variant ``full``: the paper's harder setting, permuted Fashion-MNIST pixel by pixel (784 steps),
128 hidden units, 30,000 steps: a GPU's work (15 runs).
"""

from __future__ import annotations

from normbench.studies.study import ReportInput, ReportOutput, Study, Variant

SCALE = (
    "Fashion-MNIST row by row (28 steps of 28 values; 10,000 test images), LSTM 100 hidden "
    "units, 10,000 steps of 64 (Adam lr 1e-3), 5 norm options, 3 seeds"
)
SCALE_FULL = (
    "Fashion-MNIST pixel by pixel in a fixed random order (784 steps of 1 value; 10,000 test "
    "images), LSTM 128 hidden units, 30,000 steps of 64 (Adam lr 1e-3), 5 norm options, 3 seeds"
)
#: The scale table's (network, data) cells per setting.
ROWS = {
    None: (
        "LSTM, 1 layer of 100 hidden units, classifier on h_T",
        "Fashion-MNIST row by row: 28 steps of 28 values, batch 64, 10,000 steps (10.7 epochs); "
        "the error on the 10,000 test images",
    ),
    "full": (
        "LSTM, 1 layer of 128 hidden units, classifier on h_T",
        "Fashion-MNIST pixel by pixel in a fixed random order (permute_seed 0): 784 steps of 1 "
        "value, batch 64, 30,000 steps (32 epochs); the error on the 10,000 test images",
    ),
}


def report(given: ReportInput) -> ReportOutput:
    """The README and claims."""
    from normbench.studies.recurrent.report import recurrent_report

    variant = given.variant.name if given.variant is not None else None
    scale = SCALE_FULL if variant == "full" else SCALE
    text, claims = recurrent_report(given.runs, given.out_dir, scale, ROWS[variant])
    return ReportOutput(text, claims)


VARIANTS = {
    "full": Variant(
        "full",
        (
            "name=recurrent_full",
            "model.sequence=pixels",
            "model.permute=true",
            "model.hidden=128",
            "trainer.steps=30000",
            "trainer.eval_every=1000",
            "trainer.log_every=500",
            "trainer.ckpt_every=2000",
            "trainer.threads=null",
            "probes.every=5000",
            "probes.hidden_grads=5000",
        ),
        "results/recurrent_full",
        about="permuted Fashion-MNIST pixel by pixel (784 steps), 128 hidden units, 30,000 "
        "steps; the same 5 options, 3 seeds (GPU: per-step BN took 1.2 s a step on the 2-core "
        "CPU, about 10 h a run)",
    )
}

STUDY = Study(
    name="recurrent",
    title="Recurrent BN: per-step statistics (Cooijmans) against shared, vertical-only and LN",
    experiment="recurrent",
    report=report,
    results="results/recurrent",
    scale=SCALE,
    variants=VARIANTS,
)
