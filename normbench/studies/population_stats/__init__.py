"""BN's population statistics (Wu & Johnson 2021, docs/papers.md §10): the moving average (EMA)
against Precise BN along training, the samples Precise BN needs, the EMA momentum, and the
train-test inconsistency at a small normalization batch with FrozenBN as its fix
(experiment=population_stats: the settings of configs/sweep/population_stats_setting/).

The settings keep their model every K steps (``trainer.keep_every``); the phases evaluate kept
models (``normbench eval RUN step=S``) with the moving average (``mode=running``), Precise BN
(``mode=precise``: population statistics of training samples, the weights frozen) and the
evaluated batch's own statistics (``mode=batch``, at the training batch and its ghost groups).
Each phase selects its runs by the setting their config records
(:func:`~normbench.studies.population_stats.settings.setting_of`).
"""

from __future__ import annotations

from normbench.studies.population_stats.settings import MLP_SETTINGS, is_setting
from normbench.studies.study import KEPT, Phase, ReportInput, ReportOutput, Study, Variant

MLP = tuple(MLP_SETTINGS.values())
RESNET = ("resnet_n32", "resnet_n4", "resnet_n2", "resnet_n4_frozen", "resnet_n2_frozen")
SAMPLES = "10,100,1000,10000"  # Precise BN's samples: the paper's 10^3-10^4 and fewer
RESNET_PRECISE = "1000"  # Precise BN on the ResNet's kept models (cost: one forward per image)

PHASES = (
    Phase(
        "mlp_track",
        {"step": KEPT, "mode": "running,precise,batch"},
        is_setting(*MLP),
        "every MLP run at every kept step (250 ... 5,000): EMA, Precise BN over the whole "
        "training set, batch statistics (batches of 60 or 960), on the 10,000 test images",
    ),
    Phase(
        "mlp_samples",
        {"mode": "precise", "samples": SAMPLES},
        is_setting("mlp"),
        "the reference MLP, final model: Precise BN from 10 to 10,000 samples",
    ),
    Phase(
        "resnet_track",
        {"step": KEPT, "mode": "running,precise", "samples": RESNET_PRECISE},
        is_setting("resnet_n32"),
        "the ResNet at NBS 32 at every kept step (25 ... 250): EMA and Precise BN (1,000 "
        "samples), on the 1,000 held-out images",
    ),
    Phase(
        "resnet_final",
        {"mode": "running,precise,batch", "samples": RESNET_PRECISE},
        is_setting(*RESNET),
        "every ResNet run, final model: EMA, Precise BN (1,000 samples) and batch statistics "
        "over ghost groups of its NBS",
    ),
    Phase(
        "resnet_samples",
        {"mode": "precise", "samples": SAMPLES},
        is_setting("resnet_n32"),
        "the ResNet at NBS 32, final model: Precise BN from 10 to 10,000 samples",
    ),
)


def _report(given: ReportInput) -> ReportOutput:
    """The study's report (imported when asked for: it draws with matplotlib)."""
    from normbench.studies.population_stats.report import population_stats_report

    return population_stats_report(given)


SCALE = (
    "Fashion-MNIST; sigmoid MLP 3x100, 5,000 steps (test images); ResNet-50 at width 0.125, "
    "250 steps of 64 (1,000 held-out images); 3 seeds"
)
FULL = Variant(
    "full",
    (
        "name=population_stats_full",
        "sweep/population_stats_setting=" + ",".join(RESNET),
        "dataset=imagefolder",
        "dataset.val_split=test",
        "dataset.batch_size=256",
        "model.width=1.0",
        "model.stem=imagenet",
        "optim.lr=0.1",
        "trainer.steps=500400",
        "trainer.eval_every=5004",
        "trainer.keep_every=5004",
        "trainer.ckpt_every=5004",
        "trainer.eval_batch_size=250",
    ),
    "results/population_stats_full",
    about="the paper's scale: ResNet-50 at width 1 on ImageNet (image folders), 100 epochs of "
    "256 with NBS 32, 4, 2 and FrozenBN over the last 20 epochs, the model kept every epoch "
    "(needs GPUs: not run on this machine)",
)

STUDY = Study(
    name="population_stats",
    title="Moving average against Precise BN, Precise BN's samples, and NBS with FrozenBN "
    "(Wu & Johnson 2021)",
    experiment="population_stats",
    phases=PHASES,
    report=_report,
    results="results/population_stats",
    scale=SCALE,
    variants={"full": FULL},
)
