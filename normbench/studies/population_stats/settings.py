"""Which setting of the population-statistics study a run is, from what its config records
(never its directory name), and the steps whose models the settings keep."""

from __future__ import annotations

from normbench.report.collect import Run
from normbench.studies.study import recorded

#: the MLP settings: (batch, lr, momentum) -> name; the reference is "mlp"
MLP_SETTINGS = {
    (60, 0.5, 0.1): "mlp",
    (60, 2.0, 0.1): "mlp_lr_high",
    (960, 8.0, 0.1): "mlp_big_batch",
    (60, 0.5, 0.01): "mlp_momentum_slow",
    (60, 0.5, 0.5): "mlp_momentum_fast",
}
LABELS = {
    "mlp": "MLP, lr 0.5, batch 60, momentum 0.1 (reference)",
    "mlp_lr_high": "MLP, lr 2.0 (high learning rate)",
    "mlp_big_batch": "MLP, batch 960, lr 8.0 (62 steps per epoch)",
    "mlp_momentum_slow": "MLP, EMA momentum 0.01 (slow)",
    "mlp_momentum_fast": "MLP, EMA momentum 0.5 (fast)",
    "resnet_n32": "ResNet-50 w/8, NBS 32",
    "resnet_n4": "ResNet-50 w/8, NBS 4",
    "resnet_n2": "ResNet-50 w/8, NBS 2",
    "resnet_n4_frozen": "ResNet-50 w/8, NBS 4, FrozenBN last 20%",
    "resnet_n2_frozen": "ResNet-50 w/8, NBS 2, FrozenBN last 20%",
}


def setting_of(run: Run) -> str | None:
    """The study setting the run's config is (None: none of them)."""
    model = recorded(run, "model.name")
    if model == "mlp":
        key = (
            recorded(run, "dataset.batch_size"),
            float(recorded(run, "optim.lr", 0.0)),
            float(recorded(run, "norm.momentum", 0.0)),
        )
        return MLP_SETTINGS.get(key)
    if model == "resnet50":
        nbs = recorded(run, "per_device.images")
        frozen = recorded(run, "trainer.freeze_norm_stats_at") is not None
        if nbs in (32, 4, 2) and not (frozen and nbs == 32):
            return f"resnet_n{nbs}" + ("_frozen" if frozen else "")
    return None


def is_setting(*names: str):
    """A phase selector: the runs of these settings."""

    def select(run: Run) -> bool:
        return setting_of(run) in names

    select.__name__ = f"is_{'_or_'.join(names)}"
    return select
